"""Where float-vs-chip spike agreement is lost: per-layer agreement and its dominant cause.

The chip (emulator ≡ Lava) differs from a NIR graph's float reference only through what the
plan rounds or cannot run. Each such *effect* is applied **alone** to the float interpreter
(:class:`~neurodeploy.exporters.nir_interp.NIRModel`) and the spikes compared with the
unchanged float model; the effect whose ablation agrees least in a layer is that layer's
dominant cause. The effects (every one read from the plan itself, never re-derived):

``weights``         W ← W_int·2^weight_exp / k          (k = scale·g·g_syn per neuron row: the
                    compiler's float→integer factor with the input gains it folded in;
                    recurrent matrices from ``neuron_arrays["w_rec"]`` likewise)
``decays``          α ← (2^12 − dv)/2^12, β ← (2^12 − du − 1)/2^12 (per neuron where the
                    plan carries ``du``/``dv`` arrays)
``threshold_bias``  θ ← (vth << 6)/unit, b ← (bias_mant << bias_exp)/unit (unit = scale·2^6),
                    a current bias ← a_bias/k; subtract amounts and floors follow θ
``multi_spike``     graded counts ⌊v/θ⌋ sent as one binary spike (where the plan layer is not
                    graded)
``v_floor``         a lower bound on v the plan does not carry dropped
``initial_v``       v(0) = v_leak (norse) → 0
``spike_op``        v ≥ θ compared as v > θ (where the chip compares ``>``)

Agreement is spike/no-spike, ``mean(1[s_a > 0] = 1[s_b > 0])`` over ``[T, B, N]``. A weight or
bias ablation whose reconstruction does not sit within the rounding step of the float values
(a layout the map below does not follow) is left out (``None``), never guessed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurodeploy.exporters.nir_dgraph import DConv, DGraph, DLinear, DNeuron

EFFECTS = ("weights", "decays", "threshold_bias", "multi_spike", "v_floor", "initial_v",
           "spike_op")
#: The rounding step of a reconstructed mantissa (mixed-sign mantissas are even: step 2),
#: with room for clipping at the range ends; beyond it the map is not trusted.
_MAX_STEP = 2.5


@dataclass
class LayerFidelity:
    """One spiking layer: float ↔ chip agreement, and each effect's agreement alone."""

    layer: str
    node: str
    agreement: float
    effects: dict[str, float | None] = field(default_factory=dict)
    explained: float | None = None
    """Agreement of the float model with *every* effect applied and the chip: near 1 when
    the effects account for the drift; lower when integer state rounding (the per-step
    ``>>₀ 12`` of u and v, not modelled in float) adds to it."""

    @property
    def dominant(self) -> str | None:
        """The effect whose ablation alone agrees least (None: no effect changes a spike)."""
        known = {k: v for k, v in self.effects.items() if v is not None and v < 1.0}
        return min(known, key=lambda k: known[k]) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "node": self.node, "agreement": self.agreement,
                "effects": dict(self.effects), "dominant": self.dominant,
                "explained": self.explained}


def layer_map(g: DGraph, plan: Any) -> list[tuple[str, int]]:
    """(neuron node, plan layer index) pairs: the graph's populations in order, one plan layer
    each (sizes checked); empty where the compiler split or merged populations."""
    names = g.neurons()
    if len(names) != len(plan.layers):
        return []
    pairs = list(zip(names, range(len(names)), strict=True))
    if any(g.nodes[n].size != plan.layers[k].out_size for n, k in pairs):
        return []
    return pairs


def _syn_pred(g: DGraph, name: str) -> tuple[str | None, str | None]:
    """(forward synapse, recurrent synapse) feeding neuron ``name`` (Linear/Conv only)."""
    _, back = g.order()
    fwd = rec = None
    for p in g.preds(name):
        if isinstance(g.nodes[p], DLinear | DConv):
            if (p, name) in back:
                rec = p
            else:
                fwd = p
    return fwd, rec


def _row_factor(n: DNeuron, scale: float, rows: int, conv: bool) -> np.ndarray | None:
    """k per output row (fc) or channel (conv): scale·g·g_syn; None if it varies in a channel."""
    k = np.broadcast_to(np.asarray(n.gain, np.float64), n.alpha.shape) * scale
    if n.beta is not None and n.syn_gain is not None:
        k = k * np.broadcast_to(np.asarray(n.syn_gain, np.float64), n.alpha.shape)
    k = k.reshape(rows, -1) if conv else k.reshape(-1, 1)
    if conv and not np.allclose(k, k[:, :1]):
        return None
    return k[:, 0]


def _requant(w: np.ndarray, w_int: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """``w_int / k`` (k per row) if it lies within the rounding step of ``w``, else None."""
    if w_int.shape != w.shape:
        return None
    kk = k.reshape((-1,) + (1,) * (w.ndim - 1))
    if np.any(kk == 0):
        return None
    q = w_int.astype(np.float64) / kk
    return q if np.max(np.abs(q - w) * np.abs(kk), initial=0.0) <= _MAX_STEP else None


def _effective(L: Any, fmt: Any) -> np.ndarray:
    from neurodeploy.sims.kernel import dense_effective_weights

    if L.kind == "dense":
        w = dense_effective_weights(L.weights, fmt).astype(np.float64) * 2.0**L.weight_exp
        if L.weights_lo is not None:  # the second synapse group (exponent 0)
            w = w + dense_effective_weights(L.weights_lo, fmt)
        return w
    w = np.asarray(L.weights, np.float64)
    if L.weights_lo is not None:  # conv: mantissas · 2^weight_exp + the second group
        w = w * 2.0**L.weight_exp + np.asarray(L.weights_lo, np.float64)
    return w


def recurrent_effective(L: Any) -> np.ndarray:
    """The recurrent matrix the neuron process adds, in weight units:
    ``W_rec · 2^w_rec_exp + W_rec_lo`` (one group: ``W_rec``)."""
    w = np.asarray(L.neuron_arrays["w_rec"], np.float64)
    if "w_rec_lo" in L.neuron_arrays:
        w = w * 2.0 ** int(L.neuron_params["w_rec_exp"]) \
            + np.asarray(L.neuron_arrays["w_rec_lo"], np.float64)
    return w


def current_bias_units(L: Any, fmt: Any) -> np.ndarray | None:
    """The bias into the current in weight units: ``a_bias``, or the fine
    ``a_bias_mant · 2^(a_bias_exp − activation_shift)``; None where the layer has none."""
    if "a_bias_mant" in L.neuron_arrays:
        return np.asarray(L.neuron_arrays["a_bias_mant"], np.float64) * 2.0 ** (
            int(L.neuron_params["a_bias_exp"]) - fmt.activation_shift)
    if "a_bias" in L.neuron_arrays:
        return np.asarray(L.neuron_arrays["a_bias"], np.float64)
    return None


def _ablate_weights(g: DGraph, n: DNeuron, name: str, L: Any, fmt: Any) -> bool:
    fwd, rec = _syn_pred(g, name)
    if fwd is None or L.kind == "pool":
        return False
    syn = g.nodes[fwd]
    conv = isinstance(syn, DConv)
    k = _row_factor(n, float(L.scale), syn.weight.shape[0], conv)
    if k is None:
        return False
    q = _requant(syn.weight, _effective(L, fmt), k)
    if q is None:
        return False
    syn.weight = q
    if rec is not None and "w_rec" in L.neuron_arrays and isinstance(g.nodes[rec], DLinear):
        kr = _row_factor(n, float(L.scale), n.size, False)
        qr = _requant(g.nodes[rec].weight, recurrent_effective(L), kr)
        if qr is None:
            return False
        g.nodes[rec].weight = qr
    return True


def _ablate_decays(n: DNeuron, L: Any, fmt: Any) -> bool:
    shape = n.alpha.shape
    dv = np.asarray(L.neuron_arrays.get("dv", L.dv), np.int64)
    n.alpha = np.broadcast_to((fmt.decay_unity - dv - fmt.voltage_decay_offset)
                              / fmt.decay_unity, (n.size,)).reshape(shape).astype(np.float64)
    if n.beta is not None:
        du = np.asarray(L.neuron_arrays.get("du", L.du), np.int64)
        n.beta = np.broadcast_to((fmt.decay_unity - du - fmt.current_decay_offset)
                                 / fmt.decay_unity, (n.size,)).reshape(shape).astype(np.float64)
    return True


def _ablate_threshold_bias(g: DGraph, n: DNeuron, name: str, L: Any, fmt: Any) -> bool:
    if n.theta is None:
        return False
    unit = fmt.v_per_float(float(L.scale))
    theta_q = fmt.vth_scaled(int(L.vth)) / unit
    ratio = theta_q / n.theta
    bias_int = (np.asarray(L.bias_mant, np.int64) << int(L.bias_exp)).astype(np.float64)
    fwd, _ = _syn_pred(g, name)
    syn = g.nodes[fwd] if fwd is not None else None
    b_lin = (np.zeros(n.alpha.shape) if syn is None or syn.bias is None else
             np.broadcast_to(np.asarray(syn.bias, np.float64).reshape(
                 (-1,) + (1,) * (len(n.alpha.shape) - 1)), n.alpha.shape))
    if n.beta is None:  # the chip's v bias holds g·b_lin + b
        want = n.gain * b_lin + n.bias
        got = bias_int.reshape(n.alpha.shape) / unit
        if np.max(np.abs(got - want), initial=0.0) * unit > 2 ** int(L.bias_exp) * _MAX_STEP:
            return False
        n.bias = got
        if syn is not None and syn.bias is not None:
            syn.bias = np.zeros_like(syn.bias)
    elif current_bias_units(L, fmt) is not None and syn is not None and syn.bias is not None \
            and isinstance(syn, DLinear):
        k = _row_factor(n, float(L.scale), n.size, False)
        q = _requant(np.asarray(syn.bias, np.float64).reshape(-1, 1),
                     current_bias_units(L, fmt).reshape(-1, 1), k)
        if q is None:
            return False
        syn.bias = q.reshape(-1)
    for f in ("theta", "reset_amount", "v_floor"):
        if getattr(n, f) is not None:
            setattr(n, f, getattr(n, f) * ratio)
    return True


def ablate(g: DGraph, plan: Any, effect: str | tuple[str, ...]) -> DGraph | None:
    """A copy of ``g`` with ``effect`` (or several, in :data:`EFFECTS` order) applied to every
    mapped layer; None where nothing changes (or the layers cannot be mapped)."""
    effects = (effect,) if isinstance(effect, str) else tuple(effect)
    pairs = layer_map(g, plan)
    if not pairs or not set(effects) <= set(EFFECTS):
        return None
    out = copy.deepcopy(g)
    changed = False
    for e in (e for e in EFFECTS if e in effects):
        changed |= _apply(out, plan, pairs, e)
    return out if changed else None


def _apply(out: DGraph, plan: Any, pairs: list[tuple[str, int]], effect: str) -> bool:
    fmt = plan.fixed_point
    changed = False
    for name, k in pairs:
        n, L = out.nodes[name], plan.layers[k]
        assert isinstance(n, DNeuron)
        graded = "graded_bits" in L.neuron_params
        if effect == "weights":
            changed |= _ablate_weights(out, n, name, L, fmt)
        elif effect == "decays":
            changed |= _ablate_decays(n, L, fmt)
        elif effect == "threshold_bias":
            changed |= _ablate_threshold_bias(out, n, name, L, fmt)
        elif effect == "multi_spike" and n.multi_spike and not graded:
            n.multi_spike, changed = False, True
        elif effect == "v_floor" and n.v_floor is not None and "v_min" not in L.neuron_params:
            n.v_floor, changed = None, True
        elif effect == "initial_v" and n.v_init is not None:
            n.v_init, changed = None, True
        elif effect == "spike_op" and n.spike_op == ">=" and not graded \
                and fmt.spike_comparison == ">":
            n.spike_op, changed = ">", True
    return changed


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spike/no-spike agreement ``mean(1[a > 0] = 1[b > 0])``."""
    a = a.reshape(b.shape) if a.numel() == b.numel() else a
    return float(((a > 0) == (b > 0)).double().mean())


def _float_spikes(g: DGraph, x: torch.Tensor) -> list[torch.Tensor]:
    from neurodeploy.exporters.nir_interp import NIRModel

    return NIRModel(g, dtype=torch.float64).run(x.double(), record=False).spikes


def fidelity_report(g: DGraph, plan: Any, spikes: torch.Tensor,
                    chip_spikes: list[torch.Tensor] | None = None) -> list[LayerFidelity]:
    """Per spiking layer: agreement float ↔ chip (``chip_spikes``, else the emulator's) and
    each effect's agreement alone (module docstring) on ``spikes`` ``[T, B, …]``."""
    from neurodeploy.sims.emulator import Emulator

    x = torch.as_tensor(spikes)
    ref = _float_spikes(g, x)
    if chip_spikes is None:
        chip_spikes = list(Emulator(plan).run(x.to(torch.uint8)).layer_spikes)
    spiking = [n for n in g.neurons() if g.nodes[n].spiking]
    rows = [LayerFidelity(plan.layers[k].name if k < len(plan.layers) else f"layer{k}",
                          g.nodes[spiking[k]].source,
                          agreement(chip_spikes[k].reshape(ref[k].shape).to(torch.float64),
                                    ref[k]))
            for k in range(min(len(ref), len(chip_spikes)))]
    for effect in EFFECTS:
        ab = ablate(g, plan, effect)
        got = _float_spikes(ab, x) if ab is not None else None
        for k, row in enumerate(rows):
            row.effects[effect] = agreement(got[k], ref[k]) if got is not None else None
    every = ablate(g, plan, EFFECTS)
    both = _float_spikes(every, x) if every is not None else ref
    for k, row in enumerate(rows):
        row.explained = agreement(chip_spikes[k].reshape(both[k].shape).to(torch.float64),
                                  both[k])
    return rows


def format_fidelity(rows: list[LayerFidelity]) -> str:
    """A table: per layer the agreement and the dominant cause with its agreement alone."""
    lines = [f"{'layer':<9}{'NIR node':<22}{'agreement':>10}{'explained':>10}  dominant cause "
             f"(agreement with it alone)"]
    for r in rows:
        d = r.dominant
        cause = f"{d} ({r.effects[d]:.4f})" if d is not None else "none (every effect exact)"
        ex = f"{r.explained:.4f}" if r.explained is not None else "-"
        lines.append(f"{r.layer:<9}{r.node[:21]:<22}{r.agreement:>10.4f}{ex:>10}  {cause}")
    lines.append("(spike/no-spike agreement float ↔ chip over [T, B, N]; explained: float with "
                 "every plan rounding applied ↔ chip; causes by ablation in the float model)")
    return "\n".join(lines)


def random_inputs(plan: Any, samples: int = 8, p: float = 0.2, seed: int = 0) -> torch.Tensor:
    """Bernoulli(p) spikes ``[T, samples, *input_shape]`` (uint8) — a data-free probe for
    ``export``; ``simulate`` measures on the data set instead."""
    gen = torch.Generator().manual_seed(int(seed))
    shape = (int(plan.num_steps), int(samples), *(int(v) for v in plan.input_shape))
    return (torch.rand(shape, generator=gen) < p).to(torch.uint8)


#: a layer's weight grid is called coarse (a chip note) when this share of its non-zero
#: float weights round to a zero mantissa, or its step exceeds this share of the median |W|
COARSE_ZERO_SHARE, COARSE_STEP_SHARE = 0.01, 0.1


def precision_notes(g: DGraph, plan: Any) -> list[str]:
    """Chip notes for layers whose single 8-bit mantissa grid is coarse against their own
    weights (the drift the ablation blames on ``weights``)::

        step = 1/k (one mantissa unit in float units, k = scale·g·g_syn per row)
        zero share = #{W ≠ 0 : W_int = 0} / #{W ≠ 0}
    """
    notes = bias_driven_notes(g, plan)
    for name, k in layer_map(g, plan):
        n, L = g.nodes[name], plan.layers[k]
        fwd, _ = _syn_pred(g, name)
        if fwd is None or L.kind == "pool":
            continue
        w = np.asarray(g.nodes[fwd].weight, np.float64)
        w_int = _effective(L, plan.fixed_point)
        kr = _row_factor(n, float(L.scale), w.shape[0], isinstance(g.nodes[fwd], DConv))
        notes += _bias_note(n, L, plan.fixed_point)
        if kr is None or w_int.shape != w.shape:
            continue
        nz = w != 0
        if not nz.any():
            continue
        zero_share = float((nz & (w_int == 0)).sum() / nz.sum())
        step = float(np.median(1.0 / np.abs(kr)))
        med = float(np.median(np.abs(w[nz])))
        if zero_share > COARSE_ZERO_SHARE or step > COARSE_STEP_SHARE * med:
            groups = "two synapse groups" if L.weights_lo is not None else "one synapse group"
            if L.weights_lo is not None:
                tail = ""
            elif L.neuron.endswith("_rec"):
                tail = ("; the recurrent layer keeps one group for W and W_rec (compiled with "
                        "weight_groups='one', or no k ≤ 5 keeps the u / v headroom checks)")
            elif L.skip_from:
                tail = "; a layer with skip edges keeps one group"
            else:
                tail = ("; no second group (compiled with weight_groups='one', or the scale is "
                        "bound by θ, bias or u range, or the headroom checks)")
            notes.append(
                f"node {n.source!r} ({L.name}): {groups} of {plan.fixed_point.weight_bits}-bit "
                f"weight mantissas — the step {step:.3g} is {step / med:.2f}× the median |W| "
                f"({med:.3g}) and {100 * zero_share:.1f}% of the non-zero weights round to 0"
                f"{tail}")
    return notes


#: a bias grid coarser than this share of θ gets a chip note
COARSE_BIAS_SHARE = 0.01


def bias_driven_notes(g: DGraph, plan: Any) -> list[str]:
    """A note per spiking layer whose float neurons fire with no input at all (driven by their
    biases alone, run for the plan's T steps): such a neuron is an oscillator whose phase,
    once slipped, stays slipped, so every rounding the plan keeps shows in its agreement —
    most where its input is sparse (research/fidelity.md; benchmarks/RESULTS_fidelity.md)."""
    pairs = layer_map(g, plan)
    if not pairs:
        return []
    x = torch.zeros((int(plan.num_steps), 1, *(int(v) for v in plan.input_shape)))
    spikes = _float_spikes(g, x)
    spiking = [n for n in g.neurons() if g.nodes[n].spiking]
    notes = []
    for name, k in pairs:
        if name not in spiking or spiking.index(name) >= len(spikes):
            continue
        s = spikes[spiking.index(name)].reshape(int(plan.num_steps), -1)
        firing = (s > 0).any(0)
        if not bool(firing.any()):
            continue
        L = plan.layers[k]
        groups = (f"8 + {int(L.weight_exp)}-bit weights (two groups)"
                  if L.weights_lo is not None else f"{plan.fixed_point.weight_bits}-bit weights")
        notes.append(
            f"node {g.nodes[name].source!r} ({L.name}): {int(firing.sum())} of {firing.numel()} "
            f"neurons fire on their biases alone (no input): oscillators whose phase slips "
            f"with every remaining rounding — the {groups}, the "
            f"{plan.fixed_point.decay_bits}-bit decays and the per-step truncation of u and v — "
            f"so their agreement falls where their input is sparse")
    return notes


def _bias_note(n: DNeuron, L: Any, fmt: Any) -> list[str]:
    """A note where the bias grid is coarse against θ: the v bias steps by
    ``2^bias_exp / (vth << 6)`` of θ, a bias into the current (``a_bias``) by ``1/vth``."""
    if n.theta is None or int(L.vth) <= 0:
        return []
    out = []
    v_step = 2 ** int(L.bias_exp) / fmt.vth_scaled(int(L.vth))
    if np.any(np.asarray(L.bias_mant) != 0) and v_step > COARSE_BIAS_SHARE:
        out.append(f"node {n.source!r} ({L.name}): the v bias steps by {100 * v_step:.2g}% of "
                   f"θ (13-bit mantissa, one bias_exp {int(L.bias_exp)} per layer)")
    a_step = 1.0 / int(L.vth)
    if "a_bias_mant" in L.neuron_arrays:  # the fine current bias: 2^e u units
        a_step = 2.0 ** int(L.neuron_params["a_bias_exp"]) / fmt.vth_scaled(int(L.vth))
    cur = current_bias_units(L, fmt)
    if cur is not None and np.any(cur != 0) and a_step > COARSE_BIAS_SHARE:
        out.append(f"node {n.source!r} ({L.name}): the bias into the current steps by "
                   f"{100 * a_step:.2g}% of θ (a synaptic input on the weight grid; a "
                   f"bias-driven neuron's phase drifts with it)")
    return out
