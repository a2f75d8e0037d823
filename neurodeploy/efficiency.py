"""Efficiency metrics of an SNN — float model and deployed plan — in NeuroBench's definitions,
and chip cost estimates (energy and latency per inference) from a profile's per-operation
figures.

Definitions (NeuroBench 2.x ``neurobench.metrics``; this module re-implements them, and
``tests/test_efficiency.py`` cross-checks the float numbers against the installed
``neurobench`` package when it is present)::

    SynapticOperations  per sample, summed over the T steps and the connection layers:
        Effective_ACs   = Σ_t Σ_{active input i} nnz(W[:, i])   (binary input: spikes × fan-out,
                          counting only nonzero weights; conv: the binary kernel's taps)
        Effective_MACs  = the same count for a layer whose input is not binary (direct coding)
        Dense           = T · (all-ones input through all-ones weights): every synapse, every step
    ActivationSparsity  = 1 − (spikes of all spiking layers) / (neurons · T), over the data
    ParameterCount      = number of parameters (float: model.parameters(); plan: weight and
                          bias mantissas, TA-LIF θ_v / NDS)
    Footprint           = bytes (float: parameters + buffers; plan: synaptic memory from the
                          compiler's resource map + per-neuron state and configuration, modelled)

plus ``neuron_updates = neurons · T`` per sample (every neuron of a time-stepped core is
updated every step; NeuroBench's ``MembraneUpdates`` counts changed membranes instead, not
reported here). Pooling layers: NeuroBench counts only Linear/Conv modules; on the chip a pool
is a grouped-conv synapse, so per-layer rows include pools and ``totals_neurobench`` excludes
them.

Chip cost (``cost_estimate``; APPROXIMATE by construction — per-operation figures from the
profile's ``[cost]`` section, activity from the emulator)::

    E = E_syn · Σ effective synops + E_active · Σ spiking neuron-steps
        + E_inactive · Σ silent neuron-steps + E_spike · Σ spikes
    step time = max over cores (synops_core · t_syn + active · t_act + silent · t_inact)
                + t_barrier;   latency = (T + pipeline latency) · mean step time
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import ConfigError


@dataclass
class LayerActivity:
    """One layer, per sample (averaged over the batch)."""

    name: str
    kind: str
    neurons: int
    params: int
    synapses: int                 # nonzero weights (a conv counts its kernel once)
    input_binary: bool
    effective_ops: float          # ACs if input_binary else MACs
    dense_ops: float
    spikes: float                 # output spikes per sample (over T)
    neuron_updates: int           # neurons · T
    activation_sparsity: float    # 1 − spikes / (neurons · T)
    cores: int | None = None      # plan: cores of this layer (resource map)

    @property
    def effective_acs(self) -> float:
        return self.effective_ops if self.input_binary else 0.0

    @property
    def effective_macs(self) -> float:
        return 0.0 if self.input_binary else self.effective_ops


@dataclass
class EfficiencyReport:
    backend: str                  # "float" or the plan's profile
    samples: int
    steps: int
    layers: list[LayerActivity]
    parameter_count: int
    footprint_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def totals(self, neurobench: bool = False) -> dict[str, float]:
        rows = [L for L in self.layers if not (neurobench and L.kind in ("pool", "avgpool",
                                                                            "sumpool"))]
        spikes = sum(L.spikes for L in self.layers)
        slots = sum(L.neurons * self.steps for L in self.layers)
        return {
            "effective_acs": sum(L.effective_acs for L in rows),
            "effective_macs": sum(L.effective_macs for L in rows),
            "synaptic_operations": sum(L.effective_ops for L in rows),
            "dense_ops": sum(L.dense_ops for L in rows),
            "spikes": spikes,
            "neuron_updates": sum(L.neuron_updates for L in self.layers),
            "activation_sparsity": 1.0 - spikes / slots if slots else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "samples": self.samples, "steps": self.steps,
            "parameter_count": self.parameter_count, "footprint_bytes": self.footprint_bytes,
            "totals": self.totals(), "totals_neurobench": self.totals(neurobench=True),
            "layers": [{**asdict(L), "effective_acs": L.effective_acs,
                        "effective_macs": L.effective_macs} for L in self.layers],
            **self.extra,
        }


# ----------------------------------------------------------------------------- counting


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def count_dense(s_in: torch.Tensor, weight: torch.Tensor) -> tuple[float, float]:
    """``(effective, dense)`` ops of a linear synapse over ``s_in`` ``[T, B, *in]``, summed
    over T and averaged over B (NeuroBench: binarised input and weights, no bias)."""
    T, B = s_in.shape[:2]
    act = (s_in.reshape(T * B, -1) != 0).to(torch.float64)
    fan_out = (weight != 0).to(torch.float64).sum(0)            # nnz per input column
    eff = float((act @ fan_out).sum()) / B
    dense = float(T * weight.shape[0] * weight.shape[1])
    return eff, dense


def count_conv(s_in: torch.Tensor, weight: torch.Tensor, stride, padding, groups: int
               ) -> tuple[float, float]:
    """``(effective, dense)`` ops of a conv synapse (binary copy convolved with the binarised
    input; dense: all-ones input through the all-ones kernel, padding taps excluded)."""
    T, B = s_in.shape[:2]
    x = (s_in.reshape(T * B, *s_in.shape[2:]) != 0).to(torch.float64)
    wb = (weight != 0).to(torch.float64)
    eff = float(F.conv2d(x, wb, None, stride, padding, 1, groups).sum()) / B
    ones = torch.ones(1, *s_in.shape[2:], dtype=torch.float64)
    dense = float(F.conv2d(ones, torch.ones_like(wb), None, stride, padding, 1, groups).sum()) * T
    return eff, dense


def _row(name, kind, neurons, params, synapses, s_in, s_out, eff, dense, T, cores=None):
    B = s_out.shape[1]
    spikes = float(s_out.to(torch.float64).sum()) / B
    slots = neurons * T
    return LayerActivity(name=name, kind=kind, neurons=neurons, params=params,
                         synapses=synapses, input_binary=_is_binary(s_in),
                         effective_ops=eff, dense_ops=dense, spikes=spikes,
                         neuron_updates=slots,
                         activation_sparsity=1.0 - spikes / slots if slots else 0.0,
                         cores=cores)


# ----------------------------------------------------------------------------- float model


def float_efficiency(model, x_seq: torch.Tensor) -> EfficiencyReport:
    """Metrics of a :class:`~neurodeploy.models.SpikingNet` on inputs ``[T, B, *shape]``
    (spikes, or analog values for direct coding)."""
    T = int(x_seq.shape[0])
    with torch.no_grad():
        trace = model.run(x_seq, record=True)
    rows = []
    h = x_seq
    for k, (spec, syn) in enumerate(zip(model.layer_specs, model.synapses, strict=True)):
        out = trace.spikes[k]
        if spec.kind == "fc":
            w = syn.weight.detach()
            eff, dense = count_dense(h, w)
            kind, syn_n = "dense", int((w != 0).sum())
        elif spec.kind == "conv":
            w = syn.weight.detach()
            eff, dense = count_conv(h, w, syn.stride, syn.padding, syn.groups)
            kind, syn_n = "conv", int((w != 0).sum())
        else:  # avg/sum pool: a fixed depthwise kernel (not a NeuroBench connection layer)
            c = spec.in_shape[0]
            w = torch.ones(c, 1, spec.kernel, spec.kernel)
            eff, dense = count_conv(h, w, spec.kernel, 0, c)
            kind, syn_n = "pool", int(w.numel())
        params = sum(int(p.numel()) for p in syn.parameters())
        rows.append(_row(spec.token, kind, int(np.prod(spec.out_shape)), params, syn_n, h, out,
                         eff, dense, T))
        h = out
    n_params = sum(int(p.numel()) for p in model.parameters())
    foot = (sum(p.numel() * p.element_size() for p in model.parameters())
            + sum(b.numel() * b.element_size() for b in model.buffers()))
    return EfficiencyReport("float", int(x_seq.shape[1]), T, rows, n_params, int(foot))


# ----------------------------------------------------------------------------- plan


def plan_parameter_count(plan) -> int:
    n = 0
    for L in plan.layers:
        n += int(np.asarray(L.weights).size) + int(np.asarray(L.bias_mant).size)
        n += sum(int(np.asarray(v).size) for v in L.neuron_arrays.values())
        n += sum(int(np.asarray(w).size) for w in L.skip_weights)
        if L.weights_lo is not None:  # the second synapse group
            n += int(np.asarray(L.weights_lo).size)
    return n


#: neuron_arrays that are synapses (8-bit mantissas each, like the weights): the recurrent
#: matrix and its second group; the fine current bias is a bias mantissa.
SYNAPSE_ARRAYS = ("w_rec", "w_rec_lo")


#: Per-neuron state and configuration bits modelled for the footprint: u and v (state_bits
#: each), bias mantissa (bias_mant_bits) — thresholds/decays are per layer.
def plan_footprint_bytes(plan, profile=None) -> int:
    """Synaptic memory (the compiler's resource map: synapses × bits_per_synapse / 8) plus
    per-neuron state (u, v) and bias mantissa at the profile's widths, plus TA-LIF arrays."""
    res = plan.resources or {}
    syn = sum(sum(r.get("synaptic_memory_bytes_per_core", [])) for r in res.get("layers", []))
    bits = (res.get("limits", {}) or {}).get("bits_per_synapse", 8)
    if not syn:
        syn = sum(int(np.asarray(L.weights).size) for L in plan.layers) * bits // 8
    elif any(L.weights_lo is not None for L in plan.layers):
        # the resource map counts one synapse per (neuron, input); a second group doubles it
        per_layer = [sum(r.get("synaptic_memory_bytes_per_core", []))
                     for r in res.get("layers", [])]
        syn += sum(m for L, m in zip(plan.layers, per_layer, strict=False)
                   if L.weights_lo is not None)
    if not res.get("layers"):
        syn += sum(int(np.asarray(L.weights_lo).size) for L in plan.layers
                   if L.weights_lo is not None) * bits // 8
    # skip edges' synapses (the resource map lists them apart from the per-core memory)
    syn += sum(int(r.get("skip_synapses", 0)) for r in res.get("layers", [])) * bits // 8
    fmt = getattr(plan, "fixed_point", None)
    state_bits = int(getattr(fmt, "state_bits", 24))
    bias_bits = int(getattr(fmt, "bias_mant_bits", 13))
    neurons = sum(L.out_size for L in plan.layers)
    per_neuron_bits = 2 * state_bits + bias_bits
    array_bits = 0
    for L in plan.layers:
        for key, v in L.neuron_arrays.items():
            width = (bits if key in SYNAPSE_ARRAYS else bias_bits if key == "a_bias_mant"
                     else int(getattr(fmt, "talif_state_bits", 24) or 24))
            array_bits += int(np.asarray(v).size) * width
    return int(syn + (neurons * per_neuron_bits + array_bits + 7) // 8)


def plan_efficiency(plan, spikes: torch.Tensor | np.ndarray) -> EfficiencyReport:
    """Metrics of the deployed plan on binary input spikes ``[T, B, *input_shape]``, with the
    activity of the bit-exact emulator and the weights the chip uses (Lava's clipped and
    truncated Dense weights: a mantissa truncated to 0 is no synaptic operation)."""
    from neurodeploy.bounds.plan_ibp import effective_dense_weights, plan_format
    from neurodeploy.sims.emulator import Emulator

    x = torch.as_tensor(spikes)
    res = Emulator(plan).run(x, record=True)
    fmt = plan_format(plan)
    T = int(x.shape[0])
    cores = {int(r.get("layer", i + 1)) - 1: r.get("cores")
             for i, r in enumerate((plan.resources or {}).get("layers", []))}
    rows = []
    h = x.to(torch.float64)
    sources = [h]  # the input, then each layer's spikes (skip edges read them)
    for k, L in enumerate(plan.layers):
        out = res.layer_spikes[k]
        eff, dense, params, synapses = _group_ops(L, L.weights, h, fmt, T)
        params += int(np.asarray(L.bias_mant).size)
        if L.weights_lo is not None:  # the second synapse group: its own operations
            e2, d2, p2, n2 = _group_ops(L, L.weights_lo, h, fmt, T)
            eff, dense, params, synapses = eff + e2, dense + d2, params + p2, synapses + n2
        for key in SYNAPSE_ARRAYS:  # W_rec (and its second group) on last step's spikes
            if key in L.neuron_arrays:
                wr = torch.as_tensor(np.asarray(L.neuron_arrays[key]).astype(np.int64))
                prev = torch.cat([torch.zeros_like(out[:1]), out[:-1]]).to(torch.float64)
                e2, d2 = count_dense(prev.reshape(T, prev.shape[1], -1), wr)
                eff, dense = eff + e2, dense + d2
                params += int(wr.numel())
                synapses += int((wr != 0).sum())
        for j, ws in zip(L.skip_from, L.skip_weights, strict=True):  # skip edges' synapses
            wsk = torch.as_tensor(effective_dense_weights(np.asarray(ws), fmt))
            e2, d2 = count_dense(sources[j + 1], wsk)
            eff, dense = eff + e2, dense + d2
            params += int(np.asarray(ws).size)
            synapses += int((wsk != 0).sum())
        rows.append(_row(L.name, L.kind, L.out_size, params, synapses, h, out,
                         eff, dense, T, cores.get(k)))
        h = out.to(torch.float64)
        sources.append(h)
    rep = EfficiencyReport(plan.profile, int(x.shape[1]), T, rows, plan_parameter_count(plan),
                           plan_footprint_bytes(plan))
    rep.extra["chip_fit"] = chip_fit(plan)
    rep.extra["pipeline_latency_steps"] = int(plan.latency)
    return rep


def _group_ops(L, weights, h: torch.Tensor, fmt, T: int) -> tuple[float, float, int, int]:
    """(effective ops, dense ops, parameters, synapses) of one synapse group of layer ``L``
    (``L.weights`` or its second group ``L.weights_lo``) on the input spikes ``h``."""
    from neurodeploy.bounds.plan_ibp import effective_dense_weights

    if L.kind == "dense":
        w = torch.as_tensor(effective_dense_weights(np.asarray(weights), fmt))
        eff, dense = count_dense(h, w)
    else:
        w = torch.as_tensor(np.asarray(weights).astype(np.int64))
        eff, dense = count_conv(h.reshape(T, h.shape[1], *L.in_shape), w,
                                tuple(L.stride), tuple(L.padding), int(L.groups))
    return eff, dense, int(np.asarray(weights).size), int((w != 0).sum())


def chip_fit(plan) -> dict[str, Any]:
    """Cores and synaptic memory used vs available (the compiler's resource map)."""
    res = plan.resources or {}
    lim = res.get("limits", {}) or {}
    mem_used = sum(sum(r.get("synaptic_memory_bytes_per_core", [])) for r in res.get("layers", []))
    per_core = lim.get("synaptic_memory_bytes_per_core")
    cores_used = res.get("cores_used")
    out = {"cores_used": cores_used, "cores_available": res.get("cores_available"),
           "neurons": res.get("neurons"), "synapses": res.get("synapses"),
           "synaptic_memory_bytes": mem_used or None,
           "synaptic_memory_available_bytes": (per_core * res.get("cores_available"))
           if per_core and res.get("cores_available") else None}
    peak = [max(r.get("synaptic_memory_bytes_per_core", [0]) or [0]) for r in res.get("layers", [])]
    if per_core and peak:
        out["peak_core_memory_fraction"] = max(peak) / per_core
    if cores_used and res.get("cores_available"):
        out["core_fraction"] = cores_used / res["cores_available"]
    return out


# ----------------------------------------------------------------------------- cost


def cost_estimate(rep: EfficiencyReport, profile) -> dict[str, Any] | None:
    """Energy and latency per inference on ``profile`` (its ``[cost]`` figures) from a plan's
    activity report; None when the profile has no cost figures. APPROXIMATE (see module doc)."""
    from neurodeploy.exporters.profiles import load_profile

    p = load_profile(profile)
    if p.energy_per_synop_pj is None:
        return None
    T = rep.steps
    syn = sum(L.effective_ops for L in rep.layers)
    spikes = sum(L.spikes for L in rep.layers)
    slots = sum(L.neurons * T for L in rep.layers)
    e = {
        "synaptic": syn * p.energy_per_synop_pj,
        "neuron_active": spikes * (p.energy_per_neuron_update_active_pj or 0.0),
        "neuron_inactive": (slots - spikes) * (p.energy_per_neuron_update_inactive_pj or 0.0),
        "spike_routing": spikes * (p.energy_per_spike_pj or 0.0),
    }
    total_pj = sum(e.values())
    step_ns = None
    if p.time_per_synop_ns is not None:
        per_core = []
        for L in rep.layers:
            c = max(int(L.cores or 1), 1)
            act = L.spikes / T / c
            silent = L.neurons / c - act
            per_core.append(L.effective_ops / T / c * p.time_per_synop_ns
                            + act * (p.time_per_neuron_update_active_ns or 0.0)
                            + silent * (p.time_per_neuron_update_inactive_ns or 0.0))
        step_ns = max(per_core) + (p.time_barrier_sync_ns or 0.0)
    depth = int(rep.extra.get("pipeline_latency_steps", len(rep.layers)))
    return {
        "profile": p.name,
        "energy_per_inference_nj": total_pj / 1e3,
        "energy_breakdown_nj": {k: v / 1e3 for k, v in e.items()},
        "step_time_ns": step_ns,
        "latency_per_inference_us": None if step_ns is None else (T + depth) * step_ns / 1e3,
        "source": p.cost_source, "approximate": bool(p.cost_approximate),
        "model": "E = E_syn·synops + E_act·spiking neuron-steps + E_inact·silent neuron-steps "
                 "+ E_spike·spikes; step = max over cores (synops·t_syn + neuron updates) + "
                 "barrier; latency = (T + pipeline depth)·step",
    }


def activity_ratio(clean: EfficiencyReport, adv: EfficiencyReport) -> dict[str, float]:
    """Adversarial / clean ratios of the activity totals (attacks can raise activity)."""
    a, b = clean.totals(), adv.totals()
    out = {}
    for k in ("synaptic_operations", "spikes", "effective_acs"):
        out[k] = b[k] / a[k] if a[k] else float("nan")
    out["activation_sparsity_clean"] = a["activation_sparsity"]
    out["activation_sparsity_adversarial"] = b["activation_sparsity"]
    return out


def efficiency_section(model, plan, x_clean: torch.Tensor, x_adv: torch.Tensor | None,
                       encoder, profile=None) -> dict[str, Any]:
    """The audit's efficiency block: float and deployed metrics on clean (and adversarial)
    images, their ratio, and the chip cost estimate. ``encoder(x) -> spikes [T, B, …]`` must
    be deterministic (the host's known draw) so clean and adversarial use one map."""
    if x_adv is not None and x_adv.shape != x_clean.shape:
        raise ConfigError(f"adversarial inputs {tuple(x_adv.shape)} differ from clean "
                          f"{tuple(x_clean.shape)}")
    out: dict[str, Any] = {}
    for name, x in (("clean", x_clean), ("adversarial", x_adv)):
        if x is None:
            continue
        s = encoder(x)
        fl = float_efficiency(model, s) if model is not None else None
        dp = plan_efficiency(plan, s.reshape(s.shape[0], s.shape[1], *plan.input_shape)
                             ) if plan is not None else None
        out[name] = {"float": fl.to_dict() if fl else None, "deployed": dp.to_dict() if dp else None,
                     "_reports": (fl, dp)}
    if "adversarial" in out:
        out["ratio_adversarial_over_clean"] = {
            side: activity_ratio(out["clean"]["_reports"][i], out["adversarial"]["_reports"][i])
            for i, side in enumerate(("float", "deployed"))
            if out["clean"]["_reports"][i] is not None}
    if plan is not None:
        rep = out["clean"]["_reports"][1]
        out["cost_clean"] = cost_estimate(rep, profile or plan.profile)
        if "adversarial" in out:
            out["cost_adversarial"] = cost_estimate(out["adversarial"]["_reports"][1],
                                                    profile or plan.profile)
    for v in out.values():
        if isinstance(v, dict):
            v.pop("_reports", None)
    return out


# ----------------------------------------------------------------------------- report


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def efficiency_table(eff: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows of the audit's efficiency table: one per (side, input), NeuroBench totals."""
    header = ["model", "inputs", "synops (eff. ACs+MACs)", "dense ops", "act. sparsity",
              "spikes", "neuron updates", "params", "footprint (B)"]
    rows = []
    for inp in ("clean", "adversarial"):
        block = eff.get(inp) or {}
        for side in ("float", "deployed"):
            d = block.get(side)
            if not d:
                continue
            t = d.get("totals", {})
            rows.append([side, inp, _num(t.get("synaptic_operations")), _num(t.get("dense_ops")),
                         _num(t.get("activation_sparsity")), _num(t.get("spikes")),
                         _num(t.get("neuron_updates")), _num(d.get("parameter_count")),
                         _num(d.get("footprint_bytes"))])
    return header, rows


def efficiency_sentences(eff: dict[str, Any], certified: dict[str, Any] | None = None
                         ) -> list[str]:
    """The section's sentences: certificate float → deployed, activity change under attack,
    the chip cost estimate and fit."""
    out = []
    if certified and certified.get("deployed_verdict") and not certified.get("deployed"):
        out.append(certified["deployed_verdict"])
    for side, r in (eff.get("ratio_adversarial_over_clean") or {}).items():
        s = r.get("synaptic_operations")
        if s is not None and s == s:
            out.append(f"{side}: adversarial inputs change synaptic operations by ×{s:.2f} and "
                       f"activation sparsity {r['activation_sparsity_clean']:.3f} → "
                       f"{r['activation_sparsity_adversarial']:.3f}")
    c = eff.get("cost_clean")
    if c:
        lat = c.get("latency_per_inference_us")
        line = (f"estimated energy per inference on {c['profile']}: "
                f"{c['energy_per_inference_nj']:.4g} nJ clean")
        ca = eff.get("cost_adversarial")
        if ca:
            line += f", {ca['energy_per_inference_nj']:.4g} nJ adversarial"
        if lat is not None:
            line += f"; latency ≈ {lat:.4g} µs"
        line += f" (APPROXIMATE: {c['source']})"
        out.append(line)
    fit = ((eff.get("clean") or {}).get("deployed") or {}).get("chip_fit") or {}
    if fit.get("cores_used") is not None:
        mem = fit.get("synaptic_memory_bytes")
        out.append(f"chip fit: {fit['cores_used']} of {fit.get('cores_available')} cores"
                   + (f", {mem:,} B synaptic memory" if mem else "")
                   + (f", busiest core at {100 * fit['peak_core_memory_fraction']:.0f} % of its "
                      f"synaptic memory" if fit.get("peak_core_memory_fraction") else ""))
    return out


def efficiency_plot(eff: dict[str, Any]) -> str | None:
    """Base64 PNG: effective synaptic operations per layer, float vs deployed, clean vs
    adversarial (None when there is nothing to plot)."""
    series = []
    for inp in ("clean", "adversarial"):
        for side in ("float", "deployed"):
            d = (eff.get(inp) or {}).get(side)
            if d and d.get("layers"):
                series.append((f"{side}, {inp}",
                               [L["name"] for L in d["layers"]],
                               [L["effective_ops"] for L in d["layers"]]))
    if not series:
        return None
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = max(len(s[1]) for s in series)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(series)
    colours = {"float, clean": "#1f77b4", "deployed, clean": "#d62728",
               "float, adversarial": "#aec7e8", "deployed, adversarial": "#ff9896"}
    for i, (label, _names, vals) in enumerate(series):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(vals))]
        ax.bar(xs, vals, width, label=label, color=colours.get(label))
    ax.set_xticks(range(n_layers))
    ax.set_xticklabels(series[0][1][:n_layers], fontsize=8)
    ax.set_ylabel("effective synaptic ops / inference")
    ax.set_title("Synaptic operations per layer (NeuroBench effective ACs/MACs)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2,
              frameon=False)  # under the axes, never over the bars
    ax.grid(True, axis="y", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def certification_rows(certified: dict[str, Any] | None) -> list[list[str]]:
    """Rows ``[model, bound, verified error, clean accuracy]`` of the float-vs-deployed
    certificate (known draw, same input boxes); empty without a deployed certificate."""
    if not certified or not certified.get("deployed"):
        return []
    names = {"ibp": "S-IBP", "crown": "S-CROWN", "alpha-crown": "α-S-CROWN"}
    rows = []
    for m, r in (certified.get("float_known_draw") or {}).items():
        rows.append(["float", names.get(m, m), f"{r['verified_error']:.4f}",
                     f"{100 * r['clean_accuracy']:.2f} %"])
    d = certified["deployed"]
    rows.append(["deployed", "integer S-IBP (plan)", f"{d['verified_error']:.4f}",
                 f"{100 * d['clean_accuracy']:.2f} %"])
    return rows


def efficiency_markdown(eff: dict[str, Any], certified: dict[str, Any] | None = None
                        ) -> list[str]:
    """Markdown lines of the audit's "Efficiency and chip cost" section."""
    lines: list[str] = []
    crows = certification_rows(certified)
    if crows:
        lines += ["", f"## Certified robustness, float vs deployed (ε = {certified.get('eps')}, "
                  "known draw, same input boxes)", "", f"{certified.get('deployed_verdict', '')}",
                  "", "| model | bound | verified error | clean accuracy |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in crows]
    if not eff:
        return lines
    header, rows = efficiency_table(eff)
    lines += ["", "## Efficiency and chip cost (NeuroBench definitions)", ""]
    lines += [f"- {s}" for s in efficiency_sentences(eff, certified)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def efficiency_html(eff: dict[str, Any], certified: dict[str, Any] | None = None) -> list[str]:
    """HTML parts of the same section (table id ``efficiency``, plot id ``plot-efficiency``)."""
    import html

    e = html.escape
    parts: list[str] = []
    crows = certification_rows(certified)
    if crows:
        parts.append(f"<h2>Certified robustness, float vs deployed (ε = {e(str(certified.get('eps')))}"
                     ", known draw, same input boxes)</h2>")
        parts.append(f"<p class='verdict'>{e(str(certified.get('deployed_verdict', '')))}</p>")
        parts.append("<table id='certified'><tr><th>model</th><th>bound</th><th>verified error"
                     "</th><th>clean accuracy</th></tr>" + "".join(
                         "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in crows)
                     + "</table>")
    if not eff:
        return parts
    header, rows = efficiency_table(eff)
    parts.append("<h2>Efficiency and chip cost (NeuroBench definitions)</h2>")
    sents = efficiency_sentences(eff, certified)
    if sents:
        parts.append("<ul class='meta'>" + "".join(f"<li>{e(s)}</li>" for s in sents) + "</ul>")
    parts.append("<table id='efficiency'><tr>" + "".join(f"<th>{e(h)}</th>" for h in header)
                 + "</tr>" + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                                     for r in rows) + "</table>")
    png = efficiency_plot(eff)
    if png:
        parts.append(f"<img id='plot-efficiency' alt='synaptic operations per layer' "
                     f"src='data:image/png;base64,{png}'>")
    return parts


# ----------------------------------------------------------------------------- audit


def audit_blocks(model, plan, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                 host_seed: int, cert_eps: float | None,
                 adversarial: torch.Tensor | None = None, profile=None,
                 methods: tuple[str, ...] = ("ibp", "crown")) -> tuple[dict, dict]:
    """What the audit adds for issue 15, computed on its own host maps (known draw):

    - ``certificate``: :func:`neurodeploy.bounds.plan_ibp.certify_plan` at ``cert_eps`` —
      deployed (integer S-IBP on the plan) and, for canonical-LIF models, float S-IBP/S-CROWN on
      the same input boxes, with the verdict sentence (empty dict when ``cert_eps`` is None);
    - ``efficiency``: :func:`efficiency_section` on the clean images and on ``adversarial``
      (the audit's worst-case examples, same host maps) with the chip cost estimate.
    """
    from neurodeploy.bounds.plan_ibp import certify_plan
    from neurodeploy.encoding import host_uniform

    T = int(plan.num_steps)
    u = host_uniform(index, host_seed, T, tuple(x.shape[1:]))

    def enc(v: torch.Tensor) -> torch.Tensor:
        return (v.detach().float().cpu().unsqueeze(0) > u).float()

    cert: dict[str, Any] = {}
    if cert_eps is not None:
        lif = getattr(getattr(model, "config", None), "neuron", "lif") == "lif"
        cert = certify_plan(plan, x, y, cert_eps, host_seed, model=model if lif else None,
                            index=index, methods=methods)
    eff = efficiency_section(model, plan, x, adversarial, enc, profile)
    return cert, eff
