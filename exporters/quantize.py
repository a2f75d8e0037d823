"""Per-layer fixed-point quantization of the compiler's chain (the rules: compiler docstring).

Holds, for one :class:`~neurodeploy.exporters.nir_chain.ChainLayer` and a
:class:`~neurodeploy.exporters.profiles.HardwareProfile`:

- :func:`_quantize_weighted` — dense / conv layers: the threshold-snapped scale
  ``s = ⌊θ·s_max⌋/θ`` with ``s_max = min(s_w, s_θ, s_u, s_b)``, weight mantissas on the chip's
  grid, the smallest bias exponent that fits, ``dv``/``du`` from α/β, and the error and
  headroom report (:class:`QuantizedLayer`); :func:`_quantize_conv_recurrent` for a conv
  population with a recurrent convolution (one scale for ``[conv as a matrix | W_rec]``);
- :func:`_quantize_pool` — pooling layers: one integer tap weight ``w`` minimising the
  threshold error;
- :func:`_quantize_talif` — TA-LIF's ``θ_v`` mantissas / shift and integer NDS;
- :func:`_per_neuron_decays` — per-neuron ``dv``/``du`` as plan ``neuron_arrays``;
- the names a chain layer has in the plan and in messages (:data:`PLAN_KINDS`,
  :func:`layer_token`), shared by every compiler stage.

The rules and the report's fields are documented in :mod:`~neurodeploy.exporters.compiler`
(sections "Rules chosen", "Pool layers", "TA-LIF layers", "Quantization report");
:func:`~neurodeploy.exporters.compiler.compile_graph` calls these per layer, and
:mod:`~neurodeploy.exporters.precision` builds its two-group schemes on
:func:`_quantize_weighted`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.nir_chain import ChainLayer
from neurodeploy.exporters.nir_chain_nodes import TALIF, conv_matrix
from neurodeploy.exporters.profiles import HardwareProfile

PLAN_KINDS = {"fc": "dense", "conv": "conv", "avgpool": "pool", "sumpool": "pool"}


def layer_token(L: ChainLayer) -> str:
    """The architecture-string token of a chain layer, for messages (``FC512``, ``C8K3S1P1``)."""
    if L.kind == "fc":
        return f"FC{L.out_shape[0]}"
    k = L.kernel[0] if L.kernel[0] == L.kernel[1] else f"{L.kernel[0]}x{L.kernel[1]}"
    if L.kind == "conv":
        s = L.stride[0] if L.stride[0] == L.stride[1] else f"{L.stride[0]}x{L.stride[1]}"
        p = L.padding[0] if L.padding[0] == L.padding[1] else f"{L.padding[0]}x{L.padding[1]}"
        return f"C{L.out_shape[0]}K{k}S{s}P{p}"
    return f"{'AP' if L.kind == 'avgpool' else 'SP'}{k}"


def _label(L: ChainLayer) -> str:
    return f"layer {L.index} ({layer_token(L)})"


# ----------------------------------------------------------------------------- quantization


@dataclass(frozen=True)
class QuantizedLayer:
    """Integer parameters of one layer and its error report."""

    weights: np.ndarray
    bias_mant: np.ndarray
    bias_exp: int
    vth: int
    dv: int
    du: int
    scale: float
    report: dict[str, Any]


def _decay(alpha: float, profile: HardwareProfile) -> tuple[int, dict[str, Any]]:
    unity = profile.decay_unity
    dv = int(np.clip(round(unity * (1.0 - alpha)), 0, profile.decay_max))
    alpha_q = 1.0 - dv / unity
    return dv, {"alpha": alpha, "alpha_q": alpha_q, "decay_abs_err": abs(alpha_q - alpha),
                "dv": dv}


def _current_decay(beta: float | None, profile: HardwareProfile
                   ) -> tuple[int, float, dict[str, Any]]:
    """(du, amplification 1/(1 − β_q), report) of a CubaLIF current decay β; ``beta=None``
    (no current state): ``du = decay_max``, u = this step's input."""
    if beta is None:
        return profile.decay_max, 1.0, {}
    unity = profile.decay_unity
    offset = profile.current_decay_offset
    du = int(np.clip(unity - offset - round(unity * beta), 0, profile.decay_max))
    beta_q = (unity - du - offset) / unity
    return du, 1.0 / (1.0 - beta_q), {"beta": beta, "beta_q": beta_q, "du": du,
                                      "current_decay_abs_err": abs(beta_q - beta)}


def _conv_matrix(L: ChainLayer) -> np.ndarray:
    """The forward conv of ``L`` as a dense matrix ``[N_out, N_in]`` (flat C·H·W orders)."""
    return conv_matrix(L.weight, L.in_shape, L.out_shape, L.stride, L.padding, L.groups)


def _quantize_conv_recurrent(L: ChainLayer, profile: HardwareProfile
                             ) -> tuple[QuantizedLayer, np.ndarray]:
    """(quantized conv layer, integer W_rec) of a conv population with a recurrent
    convolution (see the call site)."""
    if L.cur_bias is not None:
        raise ConfigError(f"{_label(L)}: a recurrent convolution together with a bias into a "
                          f"CubaLIF current has no chip neuron yet")
    n_out = int(np.prod(L.out_shape))
    bias = None if L.bias is None else np.repeat(np.asarray(L.bias, dtype=np.float64),
                                                 L.out_shape[1] * L.out_shape[2])
    joint = np.concatenate([_conv_matrix(L), L.rec_weight], 1)
    q = _quantize_weighted(dataclasses.replace(L, kind="fc", weight=joint, bias=bias), profile)
    mode = ("mixed" if q.report["mixed_sign"] else
            "inhibitory" if (joint < 0).any() else "excitatory")
    kernel = profile.fixed_point.quantize_weights(np.asarray(L.weight, dtype=np.float64),
                                                  q.scale, mode).astype(np.int64)
    rec_int = q.weights[:, -n_out:].astype(np.int32)
    return dataclasses.replace(q, weights=kernel, report={**q.report, "kind": "conv"}), rec_int


def _per_neuron_decays(L: ChainLayer, profile: HardwareProfile
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-neuron ``dv`` (from ``L.alphas``) and ``du`` (from ``L.betas``) as plan
    ``neuron_arrays`` (flat neuron order), with their report; empty when the population has
    one decay. The layer's scalar ``dv``/``du`` are those of the largest α/β (``L.alpha``/
    ``L.beta``), the worst case of the headroom checks. They run in the programmable
    ``sublif`` neuron (Lava's LIF holds one decay per population), so a profile without
    programmable neurons refuses them, naming the node."""
    if L.alphas is None and L.betas is None:
        return {}, {}
    where = _label(L)
    if not profile.programmable_neurons:
        raise HardwareFitError(
            f"{where}: node {L.neuron_node!r} has per-neuron decays (τ differs between "
            f"neurons); {profile.name}'s fixed LIF holds one decay per population — compile "
            f"for loihi2, or give the population one τ")
    if L.is_talif:
        raise ConfigError(f"{where}: TA-LIF with per-neuron decays has no chip neuron")
    unity, offset = profile.decay_unity, profile.current_decay_offset
    arrays: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {}
    if L.alphas is not None:
        dv = np.clip(np.round(unity * (1.0 - L.alphas)), 0, profile.decay_max).astype(np.int32)
        arrays["dv"] = dv
        report.update({"dv_per_neuron": [int(dv.min()), int(dv.max())],
                       "dv_distinct": int(np.unique(dv).size),
                       "decay_abs_err": float(np.abs(1.0 - dv / unity - L.alphas).max())})
    if L.betas is not None:
        du = np.clip(unity - offset - np.round(unity * L.betas), 0,
                     profile.decay_max).astype(np.int32)
        arrays["du"] = du
        report.update({"du_per_neuron": [int(du.min()), int(du.max())],
                       "du_distinct": int(np.unique(du).size),
                       "current_decay_abs_err": float(np.abs(
                           (unity - du - offset) / unity - L.betas).max())})
    return arrays, report


def _pick_bias_exp(b_units: np.ndarray, profile: HardwareProfile
                   ) -> tuple[np.ndarray, int] | None:
    """Smallest exponent whose mantissa fits; ``b_units`` is the bias in weight units."""
    shift = profile.activation_shift
    for e in range(profile.bias_exp_max + 1):
        mant = np.round(b_units * 2.0 ** (shift - e))
        if mant.size == 0 or (mant.min() >= profile.bias_mant_min
                              and mant.max() <= profile.bias_mant_max):
            return mant.astype(np.int64), e
    return None


def _quantize_weighted(L: ChainLayer, profile: HardwareProfile) -> QuantizedLayer:
    W = np.asarray(L.weight, dtype=np.float64)
    b = np.zeros(W.shape[0]) if L.bias is None else np.asarray(L.bias, dtype=np.float64)
    where = _label(L)
    readout = L.theta is None  # a non-spiking read-out: no threshold to snap the scale to
    theta = 1.0 if readout else float(L.theta)
    if not np.all(np.isfinite(W)) or not np.all(np.isfinite(b)):
        raise ConfigError(f"{where}: weights or bias contain NaN/inf")
    if theta <= 0:
        raise ConfigError(f"{where}: threshold θ = {theta} must be > 0 for a Loihi LIF "
                          f"(vth is unsigned)")
    wmax = float(np.abs(W).max()) if W.size else 0.0
    mixed = bool((W > 0).any() and (W < 0).any())
    sign = -1 if (not mixed and (W < 0).any()) else 1
    limits: dict[str, float] = {}
    if wmax > 0:
        limits["weights"] = (profile.weight_max_mixed if mixed else profile.weight_max_single
                             ) / wmax
    if not readout:
        limits["threshold"] = profile.vth_max / theta
    du, amp, cur = _current_decay(L.beta, profile)  # u accumulates up to amp × one input
    rows = W.reshape(W.shape[0], -1)
    row_pos = float(np.clip(rows, 0, None).sum(1).max()) if rows.size else 0.0
    row_neg = float(-np.clip(rows, None, 0).sum(1).min()) if rows.size else 0.0
    if max(row_pos, row_neg) > 0:
        # margin for rounding: each weight moves by at most one step
        slack = rows.shape[1] * (profile.mixed_step if mixed else 1) / 2
        limits["u_wrap"] = max(profile.input_limit / amp - 1 - slack, 1) / max(row_pos,
                                                                                row_neg)
    bmax = float(np.abs(b).max()) if b.size else 0.0
    if bmax > 0:
        limits["bias"] = (profile.bias_mant_max * 2.0 ** (profile.bias_exp_max
                                                         - profile.activation_shift)) / bmax
    bound_by = min(limits, key=limits.get)
    s_max = limits[bound_by]
    # Relative slack of 1e-6 for float32 weights that already sit on a grid (e.g. after
    # quantization-aware fine-tuning): 254 / (254 / s) may come back as s·(1 − 6e-8). The
    # largest weight then maps to 254 + O(1e-4), which rounds to 254: nothing overflows.
    n = math.floor(theta * s_max * (1.0 + 1e-6))
    scale = n / theta if n >= 1 else s_max
    mode = "mixed" if mixed else "excitatory" if sign > 0 else "inhibitory"
    W_int = profile.fixed_point.quantize_weights(W, scale, mode).astype(np.int64)
    vth = 0 if readout else int(np.clip(round(theta * scale), 0, profile.vth_max))
    picked = _pick_bias_exp(b * scale, profile)
    if picked is None:  # cannot happen with s ≤ s_b; kept as a guard with a clear message
        raise HardwareFitError(f"{where}: bias {bmax:g} × scale {scale:g} does not fit a "
                               f"{profile.bias_mant_bits}-bit mantissa with exponent ≤ "
                               f"{profile.bias_exp_max} ({profile.name})")
    bias_mant, bias_exp = picked
    if bmax == 0:
        bias_exp = min(profile.activation_shift, profile.bias_exp_max)
    dv, dec = _decay(L.alpha, profile)
    shift = profile.activation_shift
    b_q = bias_mant * 2.0 ** (bias_exp - shift) / scale
    W_q = W_int / scale
    err = np.abs(W_q - W)
    rows_int = W_int.reshape(W_int.shape[0], -1)
    a_pos = int(np.clip(rows_int, 0, None).sum(1).max()) if rows_int.size else 0
    a_neg = int(-np.clip(rows_int, None, 0).sum(1).min()) if rows_int.size else 0
    if max(a_pos, a_neg) * amp >= profile.input_limit:
        raise HardwareFitError(f"{where}: worst-case synaptic input {max(a_pos, a_neg)}"
                               f"{f' × {amp:g} (current decay)' if amp != 1 else ''} reaches "
                               f"the {profile.state_bits}-bit u range (|a| < "
                               f"{profile.input_limit}) of {profile.name}")
    b_units = bias_mant * 2.0 ** (bias_exp - shift)
    neg_drive = a_neg * amp + max(0.0, float(-b_units.min())) if b_units.size else a_neg * amp
    alpha_q = dec["alpha_q"]
    v_unit_max = profile.state_max / 2.0**shift
    v_neg_bound = neg_drive / (1.0 - alpha_q) if alpha_q < 1 else math.inf
    if readout:  # no reset either: the membrane's positive excursion is bounded the same way
        pos_drive = a_pos * amp + max(0.0, float(b_units.max(initial=0.0)))
        v_neg_bound = max(v_neg_bound, pos_drive / (1.0 - alpha_q) if alpha_q < 1
                          else math.inf)
    report = {
        "kind": L.kind, "scale": scale, "scale_bound_by": bound_by, "scale_max": s_max,
        "mixed_sign": mixed,
        "weight_max_abs": wmax,
        "weight_max_abs_err_rel": float(err.max() / wmax) if wmax > 0 else 0.0,
        "weight_mean_abs_err_rel": float(err.mean() / wmax) if wmax > 0 else 0.0,
        "weight_rms_err_rel": float(np.sqrt((err**2).mean()) / wmax) if wmax > 0 else 0.0,
        "weights_zeroed_frac": float(((W_int == 0) & (W != 0)).sum() / max(1, (W != 0).sum())),
        "weight_int_max_abs": int(np.abs(W_int).max()) if W_int.size else 0,
        "theta": None if readout else theta, "vth": vth,
        "theta_q": None if readout else vth / scale,
        "threshold_err_rel": 0.0 if readout else abs(vth / scale - theta) / theta,
        "bias_exp": int(bias_exp),
        "bias_max_abs": bmax,
        "bias_max_abs_err": float(np.abs(b_q - b).max()) if b.size else 0.0,
        # (a read-out has no θ: relative to one float unit)
        "bias_max_abs_err_rel_theta": float(np.abs(b_q - b).max() / theta) if b.size else 0.0,
        **dec,
        "max_input_pos": a_pos, "max_input_neg": a_neg,
        "u_headroom": profile.input_limit / max(1.0, max(a_pos, a_neg) * amp),
        **cur,
        "v_neg_bound": v_neg_bound,
        "v_state_headroom": (v_unit_max / v_neg_bound) if v_neg_bound > 0 else math.inf,
    }
    return QuantizedLayer(W_int, bias_mant.astype(np.int64), int(bias_exp), vth, dv,
                          du, scale, report)


def _quantize_pool(L: ChainLayer, profile: HardwareProfile) -> QuantizedLayer:
    where = _label(L)
    if L.theta is None:
        raise ConfigError(f"{where}: a pooling node feeding the non-spiking read-out "
                          f"{L.neuron_node!r} has no chip mapping (its weights are fixed by "
                          f"θ); put an Affine/Conv2d before the read-out")
    theta = float(L.theta)
    if theta <= 0:
        raise ConfigError(f"{where}: threshold θ = {theta} must be > 0")
    taps = L.kernel[0] * L.kernel[1]
    c = 1.0 / taps if L.kind == "avgpool" else 1.0
    w = np.arange(1, profile.weight_max_single + 1, dtype=np.float64)
    target = theta * w / c
    vth = np.round(target)
    ok = (vth <= profile.vth_max) & (taps * w < profile.input_limit)
    if not ok.any():
        raise HardwareFitError(f"{where}: no integer pooling weight gives vth ≤ "
                               f"{profile.vth_max} on {profile.name} (θ = {theta})")
    rel = np.where(ok, np.abs(vth - target) / target, np.inf)
    best = np.flatnonzero(rel <= rel.min() + 1e-15)[-1]
    wi, vi = int(w[best]), int(vth[best])
    scale = wi / c
    C = L.in_shape[0]
    weights = np.full((C, 1, L.kernel[0], L.kernel[1]), wi, dtype=np.int64)
    dv, dec = _decay(L.alpha, profile)
    report = {
        "kind": L.kind, "scale": scale, "scale_bound_by": "pool_threshold_exactness",
        "scale_max": scale, "mixed_sign": False, "weight_max_abs": c,
        "weight_max_abs_err_rel": 0.0, "weight_mean_abs_err_rel": 0.0,
        "weight_rms_err_rel": 0.0, "weights_zeroed_frac": 0.0, "weight_int_max_abs": wi,
        "theta": theta, "vth": vi, "theta_q": vi / scale,
        "threshold_err_rel": abs(vi / scale - theta) / theta,
        "bias_exp": min(profile.activation_shift, profile.bias_exp_max), "bias_max_abs": 0.0,
        "bias_max_abs_err": 0.0, "bias_max_abs_err_rel_theta": 0.0, **dec,
        "max_input_pos": taps * wi, "max_input_neg": 0,
        "u_headroom": profile.input_limit / (taps * wi), "v_neg_bound": 0.0,
        "v_state_headroom": math.inf,
    }
    return QuantizedLayer(weights, np.zeros(L.out_shape[0] * L.out_shape[1] * L.out_shape[2],
                                            dtype=np.int64),
                          report["bias_exp"], vi, dv, profile.decay_max, scale, report)


def _quantize_talif(L: ChainLayer, scale: float, num_steps: int, profile: HardwareProfile
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(neuron_params, neuron_arrays, report) of a TA-LIF layer at the layer's ``scale``."""
    where = _label(L)
    if not profile.supports_talif:
        raise HardwareFitError(
            f"{where}: TA-LIF neurons (node {L.neuron_node!r}) need programmable neurons; "
            f"{profile.name} has only the fixed LIF (programmable_neurons = "
            f"{profile.programmable_neurons}; Loihi 1 cannot run user neuron models, Orchard et "
            f"al. 2021) — compile for a profile with TA-LIF formats (e.g. loihi2)")
    theta_v = np.asarray(L.theta_v, dtype=np.float64).reshape(-1)
    nds = np.asarray(L.nds, dtype=np.float64)
    nds = nds.reshape(nds.shape[0], -1)
    if nds.shape[0] != num_steps:
        raise ConfigError(f"{where}: TA-LIF NDS has {nds.shape[0]} steps, the plan runs "
                          f"{num_steps}")
    bits, shift_max = int(profile.talif_theta_v_bits or 0), int(profile.talif_theta_v_shift_max or 0)
    mant_max = 2**bits - 1
    tv_max = float(theta_v.max(initial=0.0))
    if tv_max > 0:
        shift = min(shift_max, math.floor(math.log2(mant_max / tv_max)))
        # log2 round-off: step down until the largest mantissa fits
        while shift >= 0 and round(tv_max * 2.0**shift) > mant_max:
            shift -= 1
    else:
        shift = shift_max
    if shift < 0:
        raise HardwareFitError(f"{where}: TA-LIF θ_v up to {tv_max:g} does not fit a "
                               f"{bits}-bit mantissa (max {mant_max}) on "
                               f"{profile.name}")
    tv_int = np.clip(np.round(theta_v * 2.0**shift), 0, mant_max).astype(np.int64)
    tv_q = tv_int / 2.0**shift
    unit = scale * 2.0**profile.threshold_shift  # v units per float membrane unit
    lim = profile.talif_state_max
    nds_raw = np.round(nds * unit)
    clipped = float(np.mean(np.abs(nds_raw) > lim)) if nds_raw.size else 0.0
    nds_int = np.clip(nds_raw, -lim, lim).astype(np.int64)
    nds_err = np.abs(nds_int / unit - nds)
    tv_err = np.abs(tv_q - theta_v)
    theta = float(L.theta)
    report = {
        "neuron": TALIF, "theta_v_shift": int(shift), "theta_v_bits": bits,
        "theta_v_max": tv_max,
        "theta_v_max_abs_err": float(tv_err.max(initial=0.0)),
        "theta_v_max_abs_err_rel": float(tv_err.max(initial=0.0) / tv_max) if tv_max > 0 else 0.0,
        "theta_v_zeroed_frac": float(((tv_int == 0) & (theta_v > 0)).sum()
                                     / max(1, (theta_v > 0).sum())),
        "nds_max_abs": float(np.abs(nds).max(initial=0.0)),
        "nds_max_abs_err": float(nds_err.max(initial=0.0)),
        "nds_max_abs_err_rel_theta": float(nds_err.max(initial=0.0) / theta),
        "nds_clipped_frac": clipped,
        "talif_state_bits": profile.talif_state_bits,
    }
    params = {"theta_v_shift": int(shift), "theta_bits": int(profile.talif_state_bits)}
    arrays = {"theta_v": tv_int.astype(np.int32), "nds": nds_int.astype(np.int32)}
    return params, arrays, report
