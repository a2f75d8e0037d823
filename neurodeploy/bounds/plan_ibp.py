"""S-IBP on the deployment plan: integer interval bounds through the chip's exact step.

The float bounds (:mod:`.ibp`) hold for the float model; the model that runs on the chip is the
*plan*, whose arithmetic rounds, truncates, wraps and saturates. This module propagates
intervals through exactly the integer step that the emulator executes (and that equals Lava's
``fixed_pt`` models, see :mod:`neurodeploy.sims.emulator`), per layer k and aligned step t::

    Dense:  W_e = truncate(clip(W, sign mode))           (Lava weightutils; mixed sign ⇒ even)
            a   = wrap32( (W_e · s) << weight_exp )        (>> −weight_exp: floor)
    Conv:   a   = wrap24( conv(s, W) )                     (pool layers are grouped convs)
            (a second synapse group ``weights_lo``: W_e·2^weight_exp + W_e(lo) as one exact
            matrix / kernel, exponent 0, as the kernel folds it)
    LIF:    u   = wrap24₁( wrap32( trunc0(u·(4096 − du − 1) / 4096) + wrap32(a << 6) ) )
            v   = sat24( wrap32( trunc0(v·(4096 − dv) / 4096) + u + (bias_mant << bias_exp) ) )
    TA-LIF: θ   = sat_θ( θ + trunc0(θ_v · (v − NDS[min(t, T_nds − 1)]) / 2^shift) )
            s   = v > θ   (LIF: v > vth << vth_shift);   v ← v·(1 − s)

Every operation is monotone non-decreasing in its interval argument(s) except the wraps and
the reset, which are handled as follows (all in int64, no floating point in the recurrence):

- **linear synapses**: ``W_e⁺·s_U + W_e⁻·s_L`` and ``W_e⁺·s_L + W_e⁻·s_U`` on the effective
  (clipped, truncated) weights; the exponent shift and floor are monotone;
- **two's-complement wraps** (int32 ports, 24-bit conv output): an interval that lies inside
  one wrap period is wrapped end to end; one that *may* cross a period boundary is widened to
  the full signed range (:func:`wrap_interval`) — the only sound choice for a modular map;
- **Lava's single conditional 24-bit wrap of u** (``u − 2²⁴`` above 2²³, ``u + 2²⁴`` at or
  below −2²³): the hull of the images of the three monotone pieces the interval meets
  (:func:`cond_wrap_interval`);
- **decays** ``trunc0(x·f / 4096)`` with ``f ≥ 0``: monotone (rounding toward zero included);
- **saturation**: clamp of both ends;
- **strict threshold**: ``s_L = 1[v_L > θ_U]``, ``s_U = 1[v_U > θ_L]``;
- **hard reset** with an unknown spike: the union of "spiked" (v = 0) and "did not spike"
  (``v ≤ θ``, so ``v ∈ [v_L, min(v_U, θ_U)]``), i.e. ``[min(v_L, 0), max(min(v_U, θ_U), 0)]``;
- **synaptic delays**: the emulator and the Lava runner align layer k's window to its
  pipeline depth (one step per Dense/Conv, staggered resets), so the aligned bounds are the
  bounds of the chip's global time line shifted by each layer's cumulative delay
  (:meth:`PlanBounds.global_step`); the soundness tests check them on the literal
  one-step-delayed Lava transcription (:func:`~neurodeploy.sims.emulator.reference_lava_network`).

The certified property is the deployed model's prediction: output spike counts over the T'
certified steps, ``lb(c_y − c_j) = c_L[y] − c_U[j] > 0`` for every j ≠ y (a tie is not
verified, as for the float bounds). Perturbation sets are those of :mod:`.perturbation`
(Bernoulli ℓ∞ under the known uniform map, spike-flip sets): both give a box of *binary* input
spikes, which is what the plan consumes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.bounds.certify import CertResult, is_verified
from neurodeploy.bounds.ibp import other_classes
from neurodeploy.bounds.perturbation import (
    AnalogLinfSet,
    InputBox,
    PerturbationSet,
    default_set,
)
from neurodeploy.errors import ConfigError, DataError

I64 = torch.int64


# ----------------------------------------------------------------------------- format


@dataclass(frozen=True)
class PlanFormat:
    """The fixed-point rules the bound follows, named as in the plan's format record
    (:class:`neurodeploy.exporters.profiles.FixedPointFormat`, ``DeploymentPlan.fixed_point``).
    Defaults are Lava 0.10's bit-accurate LIF / Dense / Conv."""

    weight_bits: int = 8
    mixed_sign_drops_lsb: bool = True
    weight_exp_rounding: str = "floor"
    synaptic_delay: int = 1
    state_bits: int = 24
    port_bits: int = 32
    conv_output_bits: int = 24
    decay_bits: int = 12
    current_decay_offset: int = 1
    voltage_decay_offset: int = 0
    decay_rounding: str = "toward_zero"
    threshold_shift: int = 6
    activation_shift: int = 6
    u_overflow: str = "wrap_once"
    v_overflow: str = "saturate"
    spike_comparison: str = ">"
    reset: str = "zero"

    def __post_init__(self) -> None:
        for name, allowed in (("weight_exp_rounding", ("floor",)),
                              ("decay_rounding", ("toward_zero",)),
                              ("u_overflow", ("wrap_once", "wrap", "saturate")),
                              ("v_overflow", ("saturate", "wrap")),
                              ("spike_comparison", (">", ">=")), ("reset", ("zero", "subtract"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"plan bounds: fixed-point {name} = {getattr(self, name)!r} "
                                  f"has no interval rule (known: {list(allowed)})")


def plan_format(plan) -> PlanFormat:
    """The plan's fixed-point format: its record ``plan.fixed_point`` (a dataclass or dict;
    older plans: ``source["fixed_point"]``) where present, Lava 0.10's rules otherwise."""
    rec: Any = getattr(plan, "fixed_point", None)
    if rec is None and isinstance(getattr(plan, "source", None), dict):
        rec = plan.source.get("fixed_point")
    if rec is None:
        return PlanFormat()
    get = rec.get if isinstance(rec, dict) else (lambda k, d=None: getattr(rec, k, d))
    vals = {}
    for f in fields(PlanFormat):
        v = get(f.name, None)
        if v is not None:
            vals[f.name] = v if isinstance(v, (str, bool)) else int(v)
    return PlanFormat(**vals)


# ----------------------------------------------------------------------------- interval ops


def wrap_interval(lo: torch.Tensor, hi: torch.Tensor, bits: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two's-complement wrap to ``bits`` of every value in ``[lo, hi]`` (int64).

    Inside one period ``[k·2^b − 2^(b−1), k·2^b + 2^(b−1))`` the wrap is ``x − k·2^b``
    (monotone); an interval that meets two periods may land anywhere, so it becomes the full
    signed range ``[−2^(b−1), 2^(b−1) − 1]``."""
    half = 1 << (bits - 1)
    m = 1 << bits
    klo = torch.div(lo + half, m, rounding_mode="floor")
    khi = torch.div(hi + half, m, rounding_mode="floor")
    same = klo == khi
    return (torch.where(same, lo - klo * m, torch.full_like(lo, -half)),
            torch.where(same, hi - khi * m, torch.full_like(hi, half - 1)))


def cond_wrap_interval(lo: torch.Tensor, hi: torch.Tensor, bits: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lava's single conditional wrap ``f(u) = u − 2^b if u > 2^(b−1); u + 2^b if
    u ≤ −2^(b−1); u otherwise`` on ``[lo, hi]``: the hull of the images of the pieces
    ``(−∞, −M]``, ``(−M, M]``, ``(M, ∞)`` that the interval meets (M = 2^(b−1))."""
    M = 1 << (bits - 1)
    big = torch.iinfo(I64).max // 4
    out_lo = torch.full_like(lo, big)
    out_hi = torch.full_like(hi, -big)
    for p_lo, p_hi, shift in ((-big, -M, 2 * M), (-M + 1, M, 0), (M + 1, big, -2 * M)):
        a = torch.clamp(lo, min=p_lo)
        b = torch.clamp(hi, max=p_hi)
        meet = a <= b
        out_lo = torch.where(meet, torch.minimum(out_lo, a + shift), out_lo)
        out_hi = torch.where(meet, torch.maximum(out_hi, b + shift), out_hi)
    return out_lo, out_hi


def trunc_div(x: torch.Tensor, d: int) -> torch.Tensor:
    """``x / d`` rounded toward zero (int64; Lava's ``sign(x)·(|x| >> k)`` for d = 2^k)."""
    return torch.div(x, d, rounding_mode="trunc")


# ----------------------------------------------------------------------------- layers


def effective_dense_weights(w: np.ndarray, fmt: PlanFormat) -> np.ndarray:
    """The weights a Lava-style Dense actually uses (weightutils clip + truncate), from the
    format: sign mode from the matrix (all ≥ 0 excitatory ``[0, 2^wb − 1]``, all ≤ 0
    inhibitory, else mixed ``[−2^wb, 2^wb − 1]`` with one LSB dropped — floor to even — when
    ``mixed_sign_drops_lsb``)."""
    w = np.asarray(w).astype(np.int64)
    if w.min(initial=0) >= 0:
        mode = "exc"
    elif w.max(initial=0) <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    x = -w if mode == "inh" else w
    nb = int(fmt.weight_bits)
    x = np.clip(x, -(2 ** nb) * mixed, 2 ** nb - 1)
    drop = mixed if fmt.mixed_sign_drops_lsb else 0
    x = (x >> drop) << drop
    return (-x if mode == "inh" else x).astype(np.int64)


@dataclass
class _LayerInt:
    """One plan layer in int64 tensors."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: torch.Tensor            # dense: int64 [N, M] effective; conv: float64 (exact ints)
    weight_exp: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    bias: torch.Tensor              # int64 [N]
    vth: int                        # vth << threshold_shift
    u_factor: int
    v_factor: int
    delay: int
    talif: Any = None               # TALIFFixed or None
    theta_v: torch.Tensor | None = None
    nds: torch.Tensor | None = None


def _layers(plan, fmt: PlanFormat) -> list[_LayerInt]:
    out = []
    unity = 1 << fmt.decay_bits
    for L in plan.layers:
        v3 = sorted(set(L.neuron_arrays) & {"w_rec_lo", "a_bias_mant"})
        if v3:  # named before the kind: these fields exist only on *_rec / *_cb kinds
            raise ConfigError(f"plan layer {L.name}: no integer bounds for a recurrent second "
                              f"synapse group or a fine current bias (neuron_arrays {v3})")
        if L.neuron not in ("lif", "talif"):
            raise ConfigError(f"plan layer {L.name}: no integer bounds for neuron {L.neuron!r} "
                              f"(only 'lif' and 'talif')")
        if L.skip_from:
            raise ConfigError(f"plan layer {L.name}: no integer bounds for skip edges yet")
        if "du" in L.neuron_arrays or "dv" in L.neuron_arrays:
            raise ConfigError(f"plan layer {L.name}: no integer bounds for per-neuron decays "
                              f"(neuron_arrays du/dv); the bounds use one decay per layer")
        weight_exp = int(L.weight_exp)
        if L.kind == "dense":
            w64 = effective_dense_weights(np.asarray(L.weights), fmt)
            if L.weights_lo is not None:  # two synapse groups = one exact integer matrix:
                # (W_e·s) << k + W_e(lo)·s = (W_e·2^k + W_e(lo))·s   (k ≥ 0, plan-checked)
                w64 = (w64 << weight_exp) + effective_dense_weights(np.asarray(L.weights_lo),
                                                                    fmt)
                weight_exp = 0
            w = torch.as_tensor(w64, dtype=I64)
            if int(w.abs().sum(1).max()) >= 2 ** 52:
                raise ConfigError(f"plan layer {L.name}: dense sums exceed 2^52")
        elif L.kind in ("conv", "pool"):
            w64 = np.asarray(L.weights).astype(np.int64)
            if L.weights_lo is not None:  # conv: the kernel with its exponent + the second
                w64 = (w64 << weight_exp) + np.asarray(L.weights_lo).astype(np.int64)
                weight_exp = 0
            if int(np.abs(w64).reshape(w64.shape[0], -1).sum(1).max(initial=0)) >= 2 ** 52:
                raise ConfigError(f"plan layer {L.name}: conv sums exceed 2^52")
            w = torch.as_tensor(w64, dtype=torch.float64)
        else:
            raise ConfigError(f"plan layer {L.name}: no integer bounds for kind {L.kind!r}")
        tal = theta_v = nds = None
        if L.neuron == "talif":
            from neurodeploy.sims.lava_runner import TALIFFixed

            fp = getattr(plan, "fixed_point", None)
            needs_fmt = len(inspect.signature(TALIFFixed.from_layer).parameters) > 1
            tal = TALIFFixed.from_layer(L, fp) if needs_fmt else TALIFFixed.from_layer(L)
            theta_v = torch.as_tensor(tal.theta_v, dtype=I64)
            nds = torch.as_tensor(tal.nds, dtype=I64)
        out.append(_LayerInt(
            name=L.name, kind=L.kind, in_shape=tuple(L.in_shape), out_shape=tuple(L.out_shape),
            weight=w, weight_exp=weight_exp, stride=tuple(L.stride),
            padding=tuple(L.padding), groups=int(L.groups),
            bias=torch.as_tensor(np.asarray(L.bias_mant).astype(np.int64) << int(L.bias_exp),
                                 dtype=I64),
            vth=int(L.vth) << fmt.threshold_shift,
            u_factor=unity - (int(L.du) + fmt.current_decay_offset),
            v_factor=unity - (int(L.dv) + fmt.voltage_decay_offset),
            delay=int(L.delay), talif=tal, theta_v=theta_v, nds=nds))
    return out


def synaptic_interval(layer: _LayerInt, s_lo: torch.Tensor, s_hi: torch.Tensor,
                      fmt: PlanFormat, widen_wraps: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` bounds ``[T, B, N]`` (int64) from input spike bounds ``[T, B, *in_shape]``."""
    T, B = s_lo.shape[:2]
    lo = s_lo.reshape(T * B, *layer.in_shape).to(I64)
    xor = (s_hi.reshape(T * B, *layer.in_shape).to(I64) - lo)
    w = layer.weight
    if layer.kind == "dense":
        # Exact in float64 BLAS: every partial sum of 0/1 inputs times integer weights is an
        # integer of magnitude ≤ Σ|W| < 2^53 (checked when the layer is prepared); int64 after.
        f64 = torch.float64
        wf = w.to(f64)
        lo_f, xor_f = lo.flatten(1).to(f64), xor.flatten(1).to(f64)
        fix = (lo_f @ wf.T).to(I64)
        a_lo = fix + (xor_f @ wf.clamp(max=0).T).to(I64)
        a_hi = fix + (xor_f @ wf.clamp(min=0).T).to(I64)
        e = layer.weight_exp
        if e > 0:
            a_lo, a_hi = a_lo << e, a_hi << e
        elif e < 0:  # arithmetic right shift: floor (monotone)
            d = 1 << (-e)
            a_lo = torch.div(a_lo, d, rounding_mode="floor")
            a_hi = torch.div(a_hi, d, rounding_mode="floor")
        bits = fmt.port_bits
    else:
        def conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x.to(torch.float64), k, None, layer.stride, layer.padding, 1,
                            layer.groups).round().to(I64)

        fix = conv(lo, w)
        a_lo = (fix + conv(xor, w.clamp(max=0))).flatten(1)
        a_hi = (fix + conv(xor, w.clamp(min=0))).flatten(1)
        bits = fmt.conv_output_bits
    if widen_wraps:
        a_lo, a_hi = wrap_interval(a_lo, a_hi, bits)
    return a_lo.reshape(T, B, -1), a_hi.reshape(T, B, -1)


# ----------------------------------------------------------------------------- bounds


@dataclass
class PlanLayerBounds:
    """Integer bounds of one plan layer over the certified steps, ``[T', B, N]`` int64 (flat
    neuron order of the plan). ``v_*``: voltage before the reset (after the overflow rule);
    ``vr_*``: after the reset (what the emulator records); ``theta_*``: TA-LIF threshold."""

    a_lo: torch.Tensor
    a_hi: torch.Tensor
    u_lo: torch.Tensor
    u_hi: torch.Tensor
    v_lo: torch.Tensor
    v_hi: torch.Tensor
    vr_lo: torch.Tensor
    vr_hi: torch.Tensor
    s_lo: torch.Tensor
    s_hi: torch.Tensor
    theta_lo: torch.Tensor | None = None
    theta_hi: torch.Tensor | None = None
    #: cumulative synaptic delay (pipeline depth): aligned step τ is global step τ + 1 + depth
    depth: int = 1


@dataclass
class PlanBounds:
    layers: list[PlanLayerBounds]
    fmt: PlanFormat
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> PlanLayerBounds:
        return self.layers[-1]

    def global_step(self, k: int, tau: int) -> int:
        """Global (1-indexed, Lava ``time_step``) step of layer k's aligned step τ (0-indexed)
        for a sample that starts at global step 1: ``τ + 1 + depth_k``."""
        return tau + 1 + self.layers[k].depth


def _overflow(lo, hi, rule: str, bits: int, widen: bool):
    if rule == "saturate":
        lim = (1 << (bits - 1)) - 1
        return lo.clamp(-lim, lim), hi.clamp(-lim, lim)
    if not widen:
        return lo, hi
    if rule == "wrap_once":
        return cond_wrap_interval(lo, hi, bits)
    return wrap_interval(lo, hi, bits)


def _fire_reset(v_lo, v_hi, th_lo, th_hi, fmt: PlanFormat):
    """Spike bounds and post-reset voltage bounds for ``v ∈ [v_lo, v_hi]``, θ ∈ [th_lo, th_hi].

    ``s = v > θ`` (or ``>=``). Not spiking means ``v ≤ θ − gap`` (gap 0 for '>', 1 for '>=');
    spiking means ``v ≥ θ + 1 − gap``. An unknown spike gives the union of both branches."""
    gap = 0 if fmt.spike_comparison == ">" else 1
    sl = v_lo >= th_hi + 1 - gap
    sh = v_hi >= th_lo + 1 - gap
    # branch "no spike": v ∈ [v_lo, min(v_hi, θ_U − gap)]
    n_lo, n_hi = v_lo, torch.minimum(v_hi, th_hi - gap)
    # branch "spike": v ∈ [max(v_lo, θ_L + 1 − gap), v_hi], then reset
    if fmt.reset == "zero":
        y_lo = y_hi = torch.zeros_like(v_lo)
    else:  # subtract θ: v − θ, and v − θ ≥ 1 − gap on this branch
        y_lo = torch.clamp(v_lo - th_hi, min=1 - gap)
        y_hi = v_hi - th_lo
    vr_lo = torch.where(sl, y_lo, torch.where(sh, torch.minimum(n_lo, y_lo), v_lo))
    vr_hi = torch.where(sl, y_hi, torch.where(sh, torch.maximum(n_hi, y_hi), v_hi))
    return sl, sh, vr_lo, vr_hi


def plan_ibp_bounds(plan, box: InputBox, fmt: PlanFormat | None = None,
                    _layers_cache: list[_LayerInt] | None = None,
                    *, widen_wraps: bool = True) -> PlanBounds:
    """Interval bounds of every plan layer for every binary input spike train in ``box``
    (``[T', B, *input_shape]``; values outside {0, 1} are refused).

    ``widen_wraps=False`` passes intervals through every wrap unchanged — a deliberately
    *unsound* variant for the tests that show the soundness check catches a broken bound."""
    fmt = fmt or plan_format(plan)
    layers = _layers_cache or _layers(plan, fmt)
    s_lo, s_hi = box.lo, box.hi
    if tuple(s_lo.shape[2:]) != tuple(plan.input_shape):
        raise DataError(f"input box has shape {tuple(s_lo.shape)}, plan expects "
                        f"[T', B, {', '.join(map(str, plan.input_shape))}]")
    if (((s_lo != 0) & (s_lo != 1)).any() or ((s_hi != 0) & (s_hi != 1)).any()
            or (s_lo > s_hi).any()):
        raise DataError("plan bounds need a box of binary input spikes (0 <= lo <= hi <= 1); "
                        "direct (analog) coding is not what a plan consumes")
    steps, batch = s_lo.shape[:2]
    unity = 1 << fmt.decay_bits
    W = widen_wraps

    def port(lo, hi):
        return wrap_interval(lo, hi, fmt.port_bits) if W else (lo, hi)

    out: list[PlanLayerBounds] = []
    depth = 0
    for L in layers:
        depth += L.delay
        a_lo, a_hi = synaptic_interval(L, s_lo, s_hi, fmt, W)
        act_lo, act_hi = port(a_lo << fmt.activation_shift, a_hi << fmt.activation_shift)
        n = a_lo.shape[-1]
        z = torch.zeros(batch, n, dtype=I64)
        u_lo, u_hi, vr_lo, vr_hi = z, z, z, z
        rec: dict[str, list[torch.Tensor]] = {k: [] for k in
                                              ("u_lo", "u_hi", "v_lo", "v_hi", "vr_lo", "vr_hi",
                                               "s_lo", "s_hi", "th_lo", "th_hi")}
        th_lo = th_hi = torch.full((batch, n), L.vth, dtype=I64)
        if L.talif is not None:
            t_max = int(L.talif.theta_max)
            tdiv = 1 << int(L.talif.shift)
        for t in range(steps):
            # u = over_u(port(trunc0(u·f_u / 2^12) + port(a << 6)))   (monotone up to the wraps)
            u_lo, u_hi = port(trunc_div(u_lo * L.u_factor, unity) + act_lo[t],
                              trunc_div(u_hi * L.u_factor, unity) + act_hi[t])
            u_lo, u_hi = _overflow(u_lo, u_hi, fmt.u_overflow, fmt.state_bits, W)
            # v = over_v(port(trunc0(v·f_v / 2^12) + u + bias))
            v_lo, v_hi = port(trunc_div(vr_lo * L.v_factor, unity) + u_lo + L.bias,
                              trunc_div(vr_hi * L.v_factor, unity) + u_hi + L.bias)
            v_lo, v_hi = _overflow(v_lo, v_hi, fmt.v_overflow, fmt.state_bits, W)
            if L.talif is not None:
                # θ = sat(θ + trunc0(θ_v·(v − NDS[t]) / 2^k)), θ_v ≥ 0: monotone in v and θ
                row = L.nds[min(t, L.nds.shape[0] - 1)]
                th_lo = (th_lo + trunc_div(L.theta_v * (v_lo - row), tdiv)).clamp(-t_max, t_max)
                th_hi = (th_hi + trunc_div(L.theta_v * (v_hi - row), tdiv)).clamp(-t_max, t_max)
                rec["th_lo"].append(th_lo)
                rec["th_hi"].append(th_hi)
            sl, sh, vr_lo, vr_hi = _fire_reset(v_lo, v_hi, th_lo, th_hi, fmt)
            for key, val in (("u_lo", u_lo), ("u_hi", u_hi), ("v_lo", v_lo), ("v_hi", v_hi),
                             ("vr_lo", vr_lo), ("vr_hi", vr_hi), ("s_lo", sl), ("s_hi", sh)):
                rec[key].append(val)
        lb = PlanLayerBounds(
            a_lo=a_lo, a_hi=a_hi,
            **{k: torch.stack(rec[k]) for k in ("u_lo", "u_hi", "v_lo", "v_hi", "vr_lo",
                                                 "vr_hi")},
            s_lo=torch.stack(rec["s_lo"]).to(I64), s_hi=torch.stack(rec["s_hi"]).to(I64),
            theta_lo=torch.stack(rec["th_lo"]) if rec["th_lo"] else None,
            theta_hi=torch.stack(rec["th_hi"]) if rec["th_hi"] else None,
            depth=depth)
        out.append(lb)
        s_lo = lb.s_lo.reshape(steps, batch, *L.out_shape)
        s_hi = lb.s_hi.reshape(steps, batch, *L.out_shape)
    return PlanBounds(out, fmt)


def plan_margin_lower(bounds: PlanBounds, y: torch.Tensor) -> torch.Tensor:
    """``lb(c_y − c_j)`` ``[B, K−1]`` from the output spike-count bounds (j ≠ y, increasing)."""
    c_lo = bounds.out.s_lo.sum(0)
    c_hi = bounds.out.s_hi.sum(0)
    j = other_classes(y, c_lo.shape[1])
    return c_lo.gather(1, y.unsqueeze(1)) - c_hi.gather(1, j)


# ----------------------------------------------------------------------------- certify


def _check_set(pset: PerturbationSet) -> None:
    if isinstance(pset, AnalogLinfSet):
        raise ConfigError("a deployment plan consumes binary spikes: the analog (direct "
                          "coding) set has no integer counterpart; use bernoulli or spikes")


def plan_encoding(plan, default: str = "bernoulli") -> str:
    """The input encoding recorded in the plan's source (model config), else ``default``."""
    src = getattr(plan, "source", {}) or {}
    for path in (("model", "encoding"), ("config", "encoding"), ("encoding",),
                 ("nir_metadata", "encoding")):
        cur: Any = src
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if isinstance(cur, str):
            return cur
    return default


def certify_plan_many(
    plan,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    cert_steps: int | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    perturbation: PerturbationSet | None = None,
    batch_size: int = 500,
    encoding: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> CertResult:
    """Verified error of the deployed (integer) model with plan S-IBP.

    Randomness follows :func:`~neurodeploy.bounds.certify.certify_many` draw for draw (per
    batch: the set's box — the uniform map — then the clean draw), so with the same seed and
    batch size the float and the plan certificates use the *same* uniform maps: a paired
    float-vs-deployed comparison. Clean accuracy is the emulator's on the clean draw.
    """
    from neurodeploy.encoding import make_encoder, make_generator
    from neurodeploy.sims.emulator import Emulator

    fmt = plan_format(plan)
    layers = _layers(plan, fmt)
    steps = int(cert_steps or plan.num_steps)
    if steps < 1:
        raise ConfigError(f"cert_steps must be >= 1, got {steps}")
    enc_name = encoding or plan_encoding(plan)
    pset = perturbation or default_set(enc_name, eps)
    _check_set(pset)
    spikes = enc_name == "spikes"
    n = x.shape[1] if spikes else x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"{n} inputs but {y.shape[0]} labels")
    g = generator or make_generator(seed, x.device)
    emu = Emulator(plan)
    enc = make_encoder(enc_name, plan.num_steps)
    lbs, clean, unstable = [], [], []
    for i in range(0, n, batch_size):
        xb = x[:, i:i + batch_size] if spikes else x[i:i + batch_size]
        yb = y[i:i + batch_size]
        with torch.no_grad():
            box = pset.box(xb, steps, g)
            unstable.append(box.unstable_fraction)
            b = plan_ibp_bounds(plan, box, fmt, layers)
            lbs.append(plan_margin_lower(b, yb))
            x_seq = xb if spikes else enc(xb, g)
            clean.append(emu.run(x_seq, record=False).counts.argmax(1).cpu() == yb.cpu())
        if progress is not None:
            progress(int(yb.shape[0]))
    lb = torch.cat(lbs)
    return CertResult(
        verified=is_verified(lb), margin_lb=lb, clean_correct=torch.cat(clean),
        method="plan-ibp", eps=float(eps), cert_steps=steps,
        extra={"unstable_input_fraction": float(sum(unstable) / max(len(unstable), 1)),
               "profile": getattr(plan, "profile", "")})


def certify_plan(plan, x: torch.Tensor, y: torch.Tensor, eps: float, host_seed: int = 0, *,
                 model=None, index: torch.Tensor | None = None, cert_steps: int | None = None,
                 methods: tuple[str, ...] = ("ibp", "crown"), batch_size: int = 500
                 ) -> dict[str, Any]:
    """The audit's call: the certificate of the deployed plan under the **known draw** — the
    host's own uniform map per example (:func:`neurodeploy.encoding.host_uniform` with
    ``host_seed``, the map every backend of the audit is fed) — and, when ``model`` (the float
    model the plan was compiled from) is given, the float bounds on the *same* input box.

    ``x`` images ``[B, *shape]`` in [0, 1]; ``index`` the examples' indices for the host map
    (default ``arange(B)``). Returns a JSON-ready dict::

        {"eps", "cert_steps", "n", "seed", "profile", "threat_model",
         "deployed": {"method": "plan-ibp", "verified_error", "clean_accuracy", ...},
         "float": {"ibp": {...}, "crown": {...}}, "float_best_method", "verified_error" (float
         best), "verdict": "verified error at ε=0.06: 0.54 (float) → 0.55 (Loihi 2) — …"}
    """
    from neurodeploy.bounds.certify import margin_bounds
    from neurodeploy.bounds.perturbation import BernoulliLinfSet
    from neurodeploy.encoding import host_uniform
    from neurodeploy.sims.emulator import Emulator

    x = x.detach().float().cpu()
    y = y.long().cpu()
    n = int(y.shape[0])
    if x.shape[0] != n:
        raise DataError(f"{x.shape[0]} inputs but {n} labels")
    T = int(plan.num_steps)
    steps = int(cert_steps or T)
    if not 1 <= steps <= T:
        raise ConfigError(f"cert_steps must be in [1, {T}], got {steps}")
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    fmt = plan_format(plan)
    layers = _layers(plan, fmt)
    emu = Emulator(plan)
    pset = BernoulliLinfSet(eps)
    d_lb, d_clean, f_lb, f_clean = [], [], {m: [] for m in methods}, []
    unstable = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            u = host_uniform(index[i:i + batch_size], host_seed, T, tuple(xb.shape[1:]))
            box = pset.box(xb, steps, uniform=u[:steps])
            unstable.append(box.unstable_fraction)
            pbox = InputBox(box.lo.reshape(steps, xb.shape[0], *plan.input_shape),
                            box.hi.reshape(steps, xb.shape[0], *plan.input_shape), {})
            d_lb.append(plan_margin_lower(plan_ibp_bounds(plan, pbox, fmt, layers), yb))
            spikes = (xb.unsqueeze(0) > u).float()
            d_clean.append(emu.run(spikes.reshape(T, xb.shape[0], *plan.input_shape),
                                   record=False).counts.argmax(1).cpu() == yb)
            if model is not None:
                out, _ = margin_bounds(model, box, yb, tuple(methods))
                for m in methods:
                    f_lb[m].append(out[m])
                f_clean.append(model.run(spikes).logits.argmax(1).cpu() == yb)
    extra = {"unstable_input_fraction": float(sum(unstable) / max(len(unstable), 1))}
    dep = CertResult(verified=is_verified(torch.cat(d_lb)), margin_lb=torch.cat(d_lb),
                     clean_correct=torch.cat(d_clean), method="plan-ibp", eps=float(eps),
                     cert_steps=steps, extra=extra)
    out_d: dict[str, Any] = {
        "eps": float(eps), "cert_steps": steps, "n": n, "seed": int(host_seed),
        "profile": getattr(plan, "profile", ""),
        "threat_model": "known draw (the host's uniform map per example)",
        "deployed": dep.to_dict()}
    if model is not None:
        fl = {m: CertResult(verified=is_verified(torch.cat(f_lb[m])), margin_lb=torch.cat(f_lb[m]),
                            clean_correct=torch.cat(f_clean), method=m, eps=float(eps),
                            cert_steps=steps, extra=extra) for m in methods}
        best = min(fl, key=lambda m: fl[m].verified_error)
        out_d["float"] = {m: r.to_dict() for m, r in fl.items()}
        out_d["float_best_method"] = best
        out_d["verified_error"] = fl[best].verified_error
        out_d["verdict"] = verdict_sentence(eps, fl[best].verified_error, dep.verified_error,
                                            out_d["profile"])
    else:
        out_d["verdict"] = verdict_sentence(eps, None, dep.verified_error, out_d["profile"])
    return out_d


_PROFILE_NAMES = {"loihi2": "Loihi 2", "loihi1": "Loihi 1", "loihi": "Loihi"}


def verdict_sentence(eps: float, float_err: float | None, deployed_err: float,
                     profile: str = "loihi2") -> str:
    """``"verified error at ε=0.06: 0.54 (float) → 0.55 (Loihi 2)"`` plus the change in words."""
    chip = _PROFILE_NAMES.get(str(profile), str(profile) or "deployed")
    if float_err is None:
        return f"verified error at ε={eps:g}: {deployed_err:.2f} ({chip})"
    d = deployed_err - float_err
    if abs(d) < 5e-3:
        change = "unchanged by deployment"
    elif d > 0:
        change = f"{100 * d:.1f} points weaker certificate on the chip"
    else:
        change = f"{-100 * d:.1f} points stronger certificate on the chip"
    return (f"verified error at ε={eps:g}: {float_err:.2f} (float) → {deployed_err:.2f} "
            f"({chip}) — {change}")
