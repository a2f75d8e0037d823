"""TA-LIF threshold traces: the float model's adaptive θ against the deployed fixed-point θ.

For every TA-LIF layer k of a model and its deployment plan, on the same input spikes::

    float θ_k[t]  = SpikingNet.run(spikes, record=True).thetas[k]                (membrane units)
    fixed θ_k[t]  = Emulator(plan).run(spikes).layer_theta[k] / (scale_k · 2⁶)   (same units)

Both are ``[T, B, *shape]``. The fixed trace is *not* expected to equal the float one: θ_v and
NDS are quantized (``plan.quantization``), v itself is quantized (weights, bias, decay), and
once a neuron's spike differs between the two models its v — hence its θ — follows another
path. The comparison reports the per-step mean θ of both and their errors, so the audit can
say how closely the chip follows the float model's threshold adaptation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class ThresholdComparison:
    """Float vs fixed-point θ of one TA-LIF layer (float membrane units).

    Attributes
    ----------
    layer : plan layer name (``layer1`` …); ``index`` its 0-based position.
    float_mean, fixed_mean : mean θ over samples and neurons, per step (length T).
    max_abs_err : max over t, samples, neurons of |θ_fixed − θ_float|.
    mean_abs_err : mean of the same.
    trace_max_abs_err : max_t |fixed_mean[t] − float_mean[t]| (error of the mean trace).
    trace_max_rel_err : max_t |fixed_mean[t] − float_mean[t]| / max(|float_mean[t]|, θ_base).
    theta_base : the layer's base threshold θ (float model).
    spike_agreement : fraction of equal spikes of this layer, float model vs emulator.
    """

    layer: str
    index: int
    float_mean: list[float]
    fixed_mean: list[float]
    max_abs_err: float
    mean_abs_err: float
    trace_max_abs_err: float
    trace_max_rel_err: float
    theta_base: float
    spike_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_traces(model: Any, plan: Any, spikes: torch.Tensor,
                     emulator: Any | None = None) -> list[ThresholdComparison]:
    """Compare the float and fixed-point θ traces of every TA-LIF layer.

    Parameters
    ----------
    model : the float :class:`~neurodeploy.models.SpikingNet` (TA-LIF hidden layers).
    plan : its :class:`~neurodeploy.exporters.plan.DeploymentPlan` (``neuron = "talif"`` layers).
    spikes : binary input spikes ``[T, B, *input_shape]``.
    emulator : an :class:`~neurodeploy.sims.emulator.Emulator` of ``plan`` (built if None).

    Returns
    -------
    One :class:`ThresholdComparison` per TA-LIF layer (empty for a plain-LIF model).
    """
    from neurodeploy.sims.emulator import Emulator

    if len(plan.layers) != len(model.neurons):
        raise ConfigError(f"plan has {len(plan.layers)} layers, the model {len(model.neurons)}")
    talif = [k for k, L in enumerate(plan.layers) if L.neuron == "talif"]
    if not talif:
        return []
    emu = emulator if emulator is not None else Emulator(plan)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = next(model.parameters())
            trace = model.run(spikes.to(device=ref.device, dtype=ref.dtype), record=True)
    finally:
        model.train(was_training)
    res = emu.run(spikes, record=True)
    thetas = getattr(res, "layer_theta", None)
    if not thetas:
        raise ConfigError("the emulator returned no TA-LIF threshold traces (layer_theta)")
    out = []
    for k in talif:
        L = plan.layers[k]
        if getattr(model.neurons[k], "kind", None) != "talif":
            raise ConfigError(f"plan layer {L.name} is TA-LIF but model layer {k + 1} is "
                              f"{getattr(model.neurons[k], 'kind', type(model.neurons[k]).__name__)!r}")
        f = trace.thetas[k].detach().double().cpu()
        q = thetas[k].double().cpu() / plan.fixed_point.v_per_float(L.scale)
        err = (q - f).abs()
        fm = f.flatten(1).mean(1)
        qm = q.flatten(1).mean(1)
        base = float(model.neurons[k].theta)
        denom = torch.clamp(fm.abs(), min=base)
        s_float = trace.spikes[k].detach().cpu().to(torch.uint8)
        s_fixed = res.layer_spikes[k].cpu().to(torch.uint8)
        out.append(ThresholdComparison(
            layer=L.name, index=k, float_mean=fm.tolist(), fixed_mean=qm.tolist(),
            max_abs_err=float(err.max()), mean_abs_err=float(err.mean()),
            trace_max_abs_err=float((qm - fm).abs().max()),
            trace_max_rel_err=float(((qm - fm).abs() / denom).max()),
            theta_base=base,
            spike_agreement=float((s_float == s_fixed).double().mean()),
        ))
    return out
