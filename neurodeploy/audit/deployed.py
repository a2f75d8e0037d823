"""The deployed model as an ``x → logits`` classifier for the attack engine (BPDA).

Forward: the host encodes ``x`` into spikes (the example's own uniform map under the *known
draw* threat model, a fresh draw under *unknown draw*) and the **bit-exact emulator** of the
deployment plan classifies them: the logits are its output spike counts, exactly what the chip
computes.

Backward: the emulator is integer arithmetic without a gradient, so the gradient comes from the
**hardware twin** (``sims/twin.py``: the same integer forward with straight-through rounding and
a surrogate spike) on the same spikes — BPDA (Athalye et al. 2018, "backward pass differentiable
approximation"): ``z = z_twin + (z_emulator − z_twin).detach()``. The twin equals the emulator
spike for spike (tested in tests/test_twin.py), so the correction is zero in practice; the
construction only guarantees that the value every attack and the engine's replay see is the
emulator's. Calls without a gradient (Square's queries, the engine's replays) run the emulator
alone.

Gradient modes: ``bptt:<surrogate>`` replaces the twin layers' spike surrogate (the twin applies
it in float units, as in training). BPTR / RGA are defined on the float neurons' rate, not on the
twin's integer layers: they are refused with a :class:`~neurodeploy.errors.ConfigError`, and the
audit leaves such attack specs out on the deployed side (and records that it did).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurodeploy.encoding import BernoulliEncoder, KnownDrawEncoder, make_generator
from neurodeploy.errors import ConfigError

#: gradient-mode bases the twin supports (see module docstring)
TWIN_GRAD_MODES = ("bptt",)


class _TwinNeuron(nn.Module):
    """A handle on one twin layer for gradient modes: setting ``spike_fn`` installs the new
    surrogate on the layer, cast back to the twin's float64 (snntorch's surrogates return
    float32 spikes, which would break the twin's exact integer arithmetic)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        # the object that holds the layer's surrogate: the layer, or its arithmetic
        # (sims/kernel.py's straight-through arithmetic); not a submodule: the twin owns it
        owner = layer if hasattr(layer, "spike_fn") else layer.arith
        object.__setattr__(self, "_layer", owner)

    @property
    def spike_fn(self) -> Any:
        return self._layer.spike_fn

    @spike_fn.setter
    def spike_fn(self, fn: Any) -> None:
        inner = getattr(fn, "_nd_inner", fn)

        def keep_dtype(v: torch.Tensor) -> torch.Tensor:
            return inner(v).to(v.dtype)

        keep_dtype._nd_inner = inner  # type: ignore[attr-defined]
        self._layer.spike_fn = keep_dtype


class _GuardedNeurons(nn.ModuleList):
    """The twin's layers, exposed to :func:`~neurodeploy.attacks.grad_modes.gradient_mode`:
    their ``spike_fn`` may be swapped (``bptt:<surrogate>``); replacing a layer (BPTR/RGA) is
    refused instead of silently having no effect on the twin."""

    def __setitem__(self, idx: int, module: nn.Module) -> None:  # type: ignore[override]
        raise ConfigError(
            "gradient modes 'bptr' and 'rga' are not available on the deployed model (the "
            "hardware twin's integer layers); use bptt:<surrogate>"
        )


def _emulator_logits(res: Any, twin: nn.Module) -> torch.Tensor:
    """The deployed model's logits: output spike counts, or for a membrane read-out plan
    (``li`` last layer) Σ_t v in float units (v / the layer's v-per-float unit, the twin's
    scale)."""
    if res.meta.get("readout") == "membrane":
        last = twin.layers[-1]
        return res.logits.to(torch.float64) / float(last.data.unit)
    return res.counts


def _twin_logits(trace: Any) -> torch.Tensor:
    """The twin's logits in the emulator's units (see :func:`_emulator_logits`): its output
    spike counts (surrogate spikes), or Σ_t v / unit for a membrane read-out."""
    return trace.logits


class DeployedClassifier(nn.Module):
    """Emulator forward, twin backward, host encoding (module docstring).

    Parameters
    ----------
    emulator, twin : the bit-exact emulator and the hardware twin of one plan.
    encoder : :class:`KnownDrawEncoder` (known draw: deterministic, bound to examples) or
        :class:`BernoulliEncoder` (unknown draw: fresh draws from :attr:`generator`).
    seed : seed of the unknown-draw generator (:meth:`reseed`).
    """

    input_domain = "box"
    batch_dim = 0
    is_spike_input = False

    def __init__(self, emulator: Any, twin: nn.Module, encoder: Any, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(encoder, (KnownDrawEncoder, BernoulliEncoder)):
            raise ConfigError(f"the deployed classifier takes a known-draw or Bernoulli encoder, "
                              f"got {type(encoder).__name__}")
        self.emulator = emulator
        self.twin = twin
        self.encoder = encoder
        self.neurons = _GuardedNeurons([_TwinNeuron(L) for L in twin.layers])
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self.input_grad = "ste"
        self.aux_logits = "none"

    # ------------------------------------------------------------------ protocol
    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.encoder, "stochastic", False))

    @property
    def bound(self) -> bool:
        return hasattr(self.encoder, "select")

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(self.seed, "cpu")
        return self._generator

    def reseed(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator = make_generator(self.seed, "cpu")

    def set_views(self, input_grad: str = "ste", aux_logits: str = "none") -> None:
        """Attack-time views as on :class:`~neurodeploy.classifier.SNNClassifier`: the encoder's
        backward (``ste`` / ``sigmoid:k``) and membrane logits (the twin's mean pre-reset output
        membrane in float units); the forward values never change."""
        from neurodeploy.encoding import parse_input_grad

        parse_input_grad(input_grad)
        if aux_logits not in ("none", "membrane"):
            raise ConfigError(f"aux_logits must be 'none' or 'membrane', got {aux_logits!r}")
        self.input_grad, self.aux_logits = input_grad, aux_logits

    def select(self, idx: torch.Tensor) -> DeployedClassifier:
        """This classifier bound to rows ``idx`` of its known-draw maps (unknown draw: itself)."""
        if not self.bound:
            return self
        out = DeployedClassifier(self.emulator, self.twin, self.encoder.select(idx), self.seed)
        out.input_grad, out.aux_logits = self.input_grad, self.aux_logits
        return out

    # ------------------------------------------------------------------ forward
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        u = self.encoder.uniform(x, self.generator)
        return self.encoder.encode_with(x, u, self.input_grad)

    def emulator_logits(self, spikes: torch.Tensor) -> torch.Tensor:
        res = self.emulator.run(spikes.detach().cpu(), record=False)
        return _emulator_logits(res, self.twin).to(torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.encode(x)
        z_emu = self.emulator_logits(spikes).to(device=x.device, dtype=x.dtype)
        need_grad = torch.is_grad_enabled() and spikes.requires_grad
        if not need_grad and self.aux_logits != "membrane":
            return z_emu
        trace = self.twin.run(spikes)
        z_twin = _twin_logits(trace).to(x.dtype)
        z = z_twin + (z_emu - z_twin).detach()
        if self.aux_logits == "membrane":
            from neurodeploy.classifier import AUX_LOGITS

            last = self.twin.layers[-1]
            unit = float(last.unit if hasattr(last, "unit") else last.data.unit)
            setattr(z, AUX_LOGITS, (trace.v[-1] / unit).mean(0).to(x.dtype))
        return z


class DeployedSpikes(nn.Module):
    """Spike trains ``[T, B, *shape]`` → logits of the deployed model: the emulator's counts as
    the value, the twin's as the gradient (BPDA, module docstring), the twin's mean pre-reset
    output membrane (float units) as the membrane logits the spike-set search breaks ties with."""

    def __init__(self, emulator: Any, twin: nn.Module) -> None:
        super().__init__()
        self.emulator = emulator
        self.twin = twin

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        from neurodeploy.classifier import AUX_LOGITS

        z_emu = _emulator_logits(self.emulator.run(spikes.detach().cpu(), record=False),
                                 self.twin).to(device=spikes.device, dtype=spikes.dtype)
        trace = self.twin.run(spikes)
        z_twin = _twin_logits(trace).to(spikes.dtype)
        z = z_twin + (z_emu - z_twin).detach()
        last = self.twin.layers[-1]
        unit = float(last.unit if hasattr(last, "unit") else last.data.unit)
        setattr(z, AUX_LOGITS, (trace.v[-1] / unit).mean(0).to(spikes.dtype))
        return z


def deployed_spike_set(params: dict[str, Any], label: str) -> Any:
    """The known-draw spike-set search (:mod:`neurodeploy.attacks.spikeset`) on the deployed
    model: the same search over the spike trains the ε-ball can produce under the host map, with
    the emulator's exact forward and the twin's gradient — so both sides of the audit get the
    same cascade. Returns an attack object for the engine, labelled ``label``."""
    from neurodeploy.attacks.spikeset import SpikeSet, SpikeSetConfig

    class DeployedSpikeSet(SpikeSet):
        def _run(self, f, x, y, eps, gen, domain, classifier):  # noqa: ANN001
            if not isinstance(classifier, DeployedClassifier) or not classifier.bound:
                raise ConfigError("the deployed spike-set search needs the deployed classifier "
                                  "under the known draw (host maps bound to the examples)")
            u = classifier.encoder.uniform(x)
            fn = DeployedSpikes(classifier.emulator, classifier.twin)
            return self._gated_search(f, x, y, u, eps, gen, fn, 1.0)

    cfg = dict(params)
    cfg["fused"] = False  # the fused path is for float SNNClassifiers
    atk = DeployedSpikeSet(SpikeSetConfig(**{k: v for k, v in cfg.items()
                                              if k in SpikeSetConfig.__dataclass_fields__}))
    atk.label_override = label
    return atk
