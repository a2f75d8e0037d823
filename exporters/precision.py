"""Precision schemes the compiler chooses per layer (``weight_groups="auto"``, plan version 3).

:func:`~neurodeploy.exporters.compiler.compile_graph` with ``weight_groups="auto"`` gives a
feed-forward dense/conv layer a second synapse group (``weights_lo``,
:func:`quantize_two_groups`). A recurrent population
(``*_rec``: ``W_rec`` runs inside the neuron process) and a bias into a CubaLIF's current
(``a_bias``) were left on one 8-bit grid; the NIR paper's braille RNN loses its output layer
to exactly that (research/fidelity.md: a bias-driven oscillator's phase slips on ~1 % hidden
spike differences). This module chooses, per layer:

* :func:`recurrent_two_groups` — ``[W | W_rec | b_cur]`` quantized jointly on an ``8 + k``-bit
  grid (one scale, as the one-group path), then each matrix split into two 8-bit groups
  (exponents ``k`` and 0): the forward one as ``weights`` / ``weights_lo`` with
  ``weight_exp = k``, the recurrent one as ``w_rec`` / ``w_rec_lo`` with ``w_rec_exp = k``;
* :func:`fine_current_bias` — the current bias as a 13-bit mantissa with a 3-bit exponent in
  u units (``a_bias_mant << a_bias_exp``, the v bias's ranges) where that is finer than
  ``a_bias``'s one (mixed-sign: two) weight units.

Headroom checks of the recurrent scheme (static, every input and the bias at once):

    u:  max(Σ W⁺, Σ W⁻) over [W | W_rec | b_cur] rows · 1/(1 − β_q) < 2^23 / 2^6    (u never wraps)
    v:  max(static v headroom, (2^23 − 1) / (vth << 6) / IF_V_RANGE_THETAS) ≥ 1

u wraps (a silent error) so its bound is static and hard; v saturates, exactly alike on the
chip and the emulator, so a saturation is a fidelity limit, not an error: a recurrent layer
may keep the IF rule — a v range of at least :data:`IF_V_RANGE_THETAS` thresholds — when
the all-inputs-every-step bound (unreachable with a zero reset and a spiking recurrence)
is below 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.nir_chain import ChainLayer
from neurodeploy.exporters.profiles import HardwareProfile
from neurodeploy.exporters.quantize import QuantizedLayer, _quantize_weighted

#: The first synapse group's largest exponent (research/fidelity.md: k = 5 gives the braille
#: output 0.97–0.98 with 2–3.6× headroom; k = 7 can overflow), the least u / v headroom a
#: two-group layer must keep (≥ 1: the static worst case — every negative input at once, every
#: step — never wraps u nor saturates v; for IF neurons see :data:`IF_V_RANGE_THETAS`), and
#: the least scale gain worth a second group.
TWO_GROUP_K_MAX = 5
TWO_GROUP_HEADROOM = 1.0
TWO_GROUP_MIN_GAIN = 1.5


def two_group_eligible(L: ChainLayer) -> bool:
    """Dense and conv spiking layers without recurrence or skip edges (their extra matrices
    would need groups of their own) and not TA-LIF."""
    return (L.kind in ("fc", "conv") and L.rec_weight is None and not L.skips
            and L.theta is not None and not L.is_talif)


def _lava_effective(w: np.ndarray, fmt: Any) -> np.ndarray:
    """Lava's clip + truncate of one matrix in its own sign mode (mixed: even values)."""
    mode = fmt.weight_sign_mode(w)
    lo, hi = fmt.weight_range(mode)
    x = np.clip(w, lo, hi)
    return (x // fmt.mixed_step) * fmt.mixed_step if mode == "mixed" else x


def split_two_groups(w_tot: np.ndarray, k: int, fmt: Any
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """``w_tot`` (``8 + k``-bit mantissas) as ``hi·2^k + lo`` with ``hi``, ``lo`` 8-bit
    mantissas each in its own sign mode (mixed ``hi`` even, ``lo ≥ 0``); None where Lava's
    clip + truncate of either would not give back ``w_tot`` exactly."""
    w_tot = np.asarray(w_tot, dtype=np.int64)
    mode = fmt.weight_sign_mode(w_tot)
    if mode == "mixed":
        hi = fmt.mixed_step * np.floor_divide(w_tot, fmt.mixed_step << k)
    elif mode == "excitatory":
        hi = np.floor_divide(w_tot, 1 << k)
    else:
        hi = -np.floor_divide(-w_tot, 1 << k)
    lo = w_tot - hi * (1 << k)
    back = _lava_effective(hi, fmt) * (1 << k) + _lava_effective(lo, fmt)
    return (hi, lo) if np.array_equal(back, w_tot) else None


def _quantize_fc(L: ChainLayer, profile: HardwareProfile
                 ) -> tuple[QuantizedLayer, np.ndarray | None]:
    """(q, a_bias) of a dense layer: [W | b_cur] at one scale when it has a current bias
    (a conv layer's current bias is quantized later, per channel, at ``q.scale``)."""
    if L.cur_bias is None or L.kind != "fc":
        return _quantize_weighted(L, profile), None
    n_in, n_out = int(np.prod(L.in_shape)), L.out_shape[0]
    cols = [np.asarray(L.weight).reshape(n_out, -1),
            np.asarray(L.cur_bias, dtype=np.float64).reshape(n_out, 1)]
    q = _quantize_weighted(dataclasses.replace(L, weight=np.concatenate(cols, 1)), profile)
    return dataclasses.replace(q, weights=q.weights[:, :n_in]), q.weights[:, -1].astype(np.int32)


#: for IF neurons (α = 1, no static bound on v): the saturating 24-bit v must hold this many
#: thresholds on either side of 0 (saturation is exact on chip and emulator alike — a fidelity
#: limit, not an error)
IF_V_RANGE_THETAS = 64


def _v_headroom(q: QuantizedLayer, profile: HardwareProfile) -> float:
    """The report's static v headroom; for α = 1 (unbounded in time) the v range in
    thresholds over :data:`IF_V_RANGE_THETAS` instead."""
    rep = q.report
    if rep["v_state_headroom"] > 0:
        return float(rep["v_state_headroom"])
    theta_v = profile.fixed_point.vth_scaled(max(1, int(q.vth)))
    return profile.state_max / theta_v / IF_V_RANGE_THETAS


def quantize_two_groups(L: ChainLayer, profile: HardwareProfile
                         ) -> tuple[QuantizedLayer, np.ndarray | None, np.ndarray | None, int]:
    """The precision scheme of a dense or conv layer: one 8-bit group, or two (exponents k and 0 into
    the same input, ``8 + k`` bits) for the largest ``k ≤`` :data:`TWO_GROUP_K_MAX` whose scale
    grows by ≥ :data:`TWO_GROUP_MIN_GAIN` (not bound by θ, bias or u range) and keeps u and v
    headroom ≥ :data:`TWO_GROUP_HEADROOM`; a current bias (``a_bias``, 32-bit) gets the finer
    grid too. Returns (q with the first group's mantissas, a_bias, weights_lo or None, k)."""
    q0, a0 = _quantize_fc(L, profile)
    for k in range(TWO_GROUP_K_MAX, 0, -1):
        wide = dataclasses.replace(profile, weight_bits=profile.weight_bits + k)
        try:
            qk, ak = _quantize_fc(L, wide)
        except (HardwareFitError, ConfigError):
            continue
        rep = qk.report
        if qk.scale < TWO_GROUP_MIN_GAIN * q0.scale or min(
                rep["u_headroom"], _v_headroom(qk, wide)) < TWO_GROUP_HEADROOM:
            continue
        split = split_two_groups(qk.weights, k, profile.fixed_point)
        if split is None:
            continue
        hi, lo = split
        report = {**rep, "weight_groups": 2, "weight_group_exp": k,
                  "scale_gain_two_groups": qk.scale / q0.scale}
        return (dataclasses.replace(qk, weights=hi, report=report), ak,
                lo if np.any(lo) else None, k)
    return dataclasses.replace(q0, report={**q0.report, "weight_groups": 1}), a0, None, 0


@dataclass(frozen=True)
class RecurrentScheme:
    """A recurrent dense layer on two synapse groups per matrix (module docstring)."""

    q: QuantizedLayer
    """the layer at the wide scale; ``q.weights`` the forward first group's mantissas"""
    weights_lo: np.ndarray | None
    w_rec: np.ndarray
    w_rec_lo: np.ndarray | None
    a_bias: np.ndarray | None
    k: int


def recurrent_eligible(L: ChainLayer) -> bool:
    """A dense spiking population with a recurrent matrix, no skip edges, not TA-LIF."""
    return (L.kind == "fc" and L.rec_weight is not None and not L.skips
            and L.theta is not None and not L.is_talif)


def _joint(L: ChainLayer) -> np.ndarray:
    n_out = L.out_shape[0]
    cols = [np.asarray(L.weight, np.float64).reshape(n_out, -1),
            np.asarray(L.rec_weight, np.float64)]
    if L.cur_bias is not None:
        cols.append(np.asarray(L.cur_bias, np.float64).reshape(n_out, 1))
    return np.concatenate(cols, 1)


def v_range_headroom(q: QuantizedLayer, profile: HardwareProfile) -> float:
    """v headroom of a recurrent layer: the static bound, or the v range in thresholds over
    :data:`IF_V_RANGE_THETAS` where that is larger (module docstring)."""
    theta_v = profile.fixed_point.vth_scaled(max(1, int(q.vth)))
    return max(float(q.report["v_state_headroom"]),
               profile.state_max / theta_v / IF_V_RANGE_THETAS)


def recurrent_two_groups(L: ChainLayer, profile: HardwareProfile) -> RecurrentScheme | None:
    """The largest ``k ≤`` :data:`TWO_GROUP_K_MAX` whose joint scale grows by
    ≥ :data:`TWO_GROUP_MIN_GAIN` over the one-group scale and keeps the headroom checks
    (module docstring) ≥ :data:`TWO_GROUP_HEADROOM`, with both matrices split exactly; None
    where no ``k`` qualifies (the layer keeps one group)."""
    joint = _joint(L)
    n_in, n_out = int(np.prod(L.in_shape)), L.out_shape[0]
    base = _quantize_weighted(dataclasses.replace(L, weight=joint), profile)
    for k in range(TWO_GROUP_K_MAX, 0, -1):
        wide = dataclasses.replace(profile, weight_bits=profile.weight_bits + k)
        try:
            q = _quantize_weighted(dataclasses.replace(L, weight=joint), wide)
        except (HardwareFitError, ConfigError):
            continue
        v_head = v_range_headroom(q, wide)
        if q.scale < TWO_GROUP_MIN_GAIN * base.scale or min(
                q.report["u_headroom"], v_head) < TWO_GROUP_HEADROOM:
            continue
        fwd = split_two_groups(q.weights[:, :n_in], k, profile.fixed_point)
        rec = split_two_groups(q.weights[:, n_in:n_in + n_out], k, profile.fixed_point)
        if fwd is None or rec is None:
            continue
        report = {**q.report, "weight_groups": 2, "weight_group_exp": k,
                  "recurrent_weight_groups": 2, "v_range_headroom": v_head,
                  "scale_gain_two_groups": q.scale / base.scale}
        a_bias = q.weights[:, -1].astype(np.int32) if L.cur_bias is not None else None
        return RecurrentScheme(
            q=dataclasses.replace(q, weights=fwd[0], report=report),
            weights_lo=fwd[1] if np.any(fwd[1]) else None, w_rec=rec[0].astype(np.int32),
            w_rec_lo=rec[1].astype(np.int32) if np.any(rec[1]) else None, a_bias=a_bias, k=k)
    return None


def fine_current_bias(L: ChainLayer, q: QuantizedLayer, a_bias: np.ndarray,
                      profile: HardwareProfile) -> tuple[np.ndarray, int] | None:
    """``(a_bias_mant, a_bias_exp)``: the current bias ``b_cur`` (per neuron; a conv layer's
    per channel, repeated) in u units on the finest 13-bit grid that holds it::

        e = min{e ∈ [0, bias_exp_max] : |round(b·scale·2^(activation_shift − e))| fits}

    None where that step ``2^e`` is not finer than ``a_bias``'s (one weight unit, two for
    mixed-sign mantissas, ``2^activation_shift`` u units each), or where the u headroom would
    not hold one more weight unit of input (the fine bias differs from ``a_bias`` by less)."""
    if L.cur_bias is None:
        return None
    b = np.asarray(L.cur_bias, np.float64).reshape(-1)
    n = int(np.prod(L.out_shape))
    if b.size != n:  # per channel → per neuron (flat C·H·W)
        b = np.repeat(b, n // b.size)
    shift = profile.activation_shift
    mixed = bool(q.report.get("mixed_sign", True))
    coarse = (profile.mixed_step if mixed else 1) << shift
    for e in range(profile.bias_exp_max + 1):
        if (1 << e) >= coarse:
            return None
        mant = np.round(b * q.scale * 2.0 ** (shift - e))
        if mant.min(initial=0) >= profile.bias_mant_min and \
                mant.max(initial=0) <= profile.bias_mant_max:
            break
    else:
        return None
    rep = q.report
    amp = 1.0 / (1.0 - rep["beta_q"]) if "beta_q" in rep else 1.0
    worst = max(int(rep["max_input_pos"]), int(rep["max_input_neg"])) \
        + int(np.abs(a_bias).max(initial=0)) + 1  # conservative: the bias counted twice
    if worst * amp >= profile.input_limit:
        return None
    return mant.astype(np.int32), int(e)
