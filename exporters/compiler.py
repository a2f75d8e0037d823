"""Compile a NIR graph for a hardware profile into a fixed-point :class:`DeploymentPlan`.

Pipeline: ``nir.NIRGraph`` → :func:`~neurodeploy.exporters.nir_chain.parse_graph` (a chain of
synapse → LIF/IF/CubaLIF layers, validated: v_leak = 0 on LIF, uniform α/θ per layer) →
per-layer quantization → resource map / fit checks → plan. :func:`compile_model` goes through
:func:`~neurodeploy.exporters.nir_export.to_nir`, so the NIR path is the real path.

Target arithmetic (Lava ``PyLifModelBitAcc`` with ``du = 4095``, research/deploy_path.md §3)::

    u = a << 6                                            # a = W_int · s_in (this step)
    v = (v · (4096 − dv)) >>₀ 12 + u + (bias_mant << bias_exp)
    s = v > vth << 6 ;  v[s] = 0

In "weight units" (v / 64) this is the canonical LIF ``m = α_q·m·(1−s) + W_int·s_in + b_int``
with ``α_q = 1 − dv/4096`` and ``b_int = bias_mant · 2^(bias_exp − 6)``, compared with
``vth``; dividing by the layer's scale ``s`` gives the float model with ``W ≈ W_int/s``,
``θ ≈ vth/s``, ``b ≈ b_int/s``. Spikes are binary, so each layer's scale is independent.

Rules chosen (all bit widths come from the profile; numbers below are for Loihi 1/2)
------------------------------------------------------------------------------------
Dense / conv layers:

1. ``s_max = min(s_w, s_θ, s_u, s_b)`` where
   ``s_w = 254/max|W|`` (mixed-sign matrix; 255/max|W| for single-sign),
   ``s_θ = (2^17 − 1)/θ`` (vth range), ``s_u = (2^17 − 1)/max_i max(Σ_j W⁺_ij, Σ_j W⁻_ij)``
   (``a << 6`` must not wrap the 24-bit u even when every input spikes) and
   ``s_b = 4095·2^(7−6)/max|b|`` (13-bit bias mantissa at the largest exponent 7).
2. Threshold snapping: ``s = ⌊θ·s_max⌋ / θ`` so that ``vth = θ·s`` is an exact integer
   (threshold error 0); costs < 1/⌊θ·s_max⌋ of weight resolution. If ``θ·s_max < 1`` the
   scale stays ``s_max`` and ``vth = round(θ·s)`` (reported error).
3. Weights: mixed-sign ``W_int = 2·round(W·s/2)`` clipped to [−256, 254] (Lava drops the LSB
   of mixed-sign mantissas, flooring — even values survive unchanged); single-sign
   ``round(W·s)`` clipped to [0, 255] / [−255, 0]. ``round`` is numpy's half-to-even.
   ``weight_exp = 0`` always (Lava's Conv ignores ``weight_exp``; a non-zero exponent would
   buy range the threshold cannot use).
4. Bias: the smallest ``bias_exp ∈ [0, 7]`` whose mantissa ``round(b·s·2^(6−bias_exp))`` fits
   13 bits (finest resolution, 1/64 weight unit at ``bias_exp = 0``); ``bias_exp = 6`` (the
   lava-dl netx convention, bias in weight units) when the layer has no bias.
5. ``dv = round(4096·(1−α))`` clipped to [0, 4095] (α = 0.25 → 3072 exact; α = 1 → 0),
   ``du = 4095`` (no synaptic current state), ``delay = profile.synaptic_delay``.
6. NIR neuron kinds (graphs from other frameworks, issue 13; Loihi 2's programmable neurons):
   CubaLIF ``du = 4096 − 1 − round(4096·β)`` with the u headroom divided by ``1 − β_q``;
   reset hint ``subtract`` → ``sublif`` (``sublif_delayed`` for ``reset_timing = next-step``),
   zero with ``next-step`` → ``lif_delayed``; a recurrent loop → ``<kind>_rec`` with
   ``W_rec`` quantized with the layer's scale (one column block of ``[W | W_rec]``); a bias
   into a CubaLIF's current → ``<kind>_cb`` (an always-on input column ``a_bias``).
   Per-neuron decays (τ, τ_syn differing within a population) → per-neuron ``dv``/``du`` in
   ``neuron_arrays`` (same rounding as above, neuron by neuron); the layer's scalar
   ``dv``/``du`` and every headroom check use the largest α/β. Input gains r·dt/τ that differ
   between neurons are folded into the weight rows (conv: per channel). A recurrent Conv2d
   on a conv population: ``W_rec`` is the convolution unrolled to ``[N, N]``, the scale
   chosen on ``[forward conv as a matrix | W_rec]``. A non-spiking LI / CubaLI / I output →
   ``li`` (``li_cb``): no threshold, so the scale is the largest that fits (``vth = 0``) and
   the v headroom covers both signs (no reset). Skip edges (dense) → ``skip_from`` /
   ``skip_weights``, one column block each of ``[W | W_rec | W_skip… | b_cur]``; the wait
   ``synaptic_delay·(k − 1 − j)`` must fit ``max_synaptic_delay``.

Pool layers (AvgPool2d / SumPool2d + LIF) compile to ``kind = "pool"``: weights
``(C, 1, kH, kW)`` all equal to one integer ``w``, ``groups = C``, stride = the pool stride, no
bias. The float tap weight is ``c = 1/(kH·kW)`` (avg) or 1 (sum), so ``s = w/c`` is exact and
``vth = round(θ·w/c)``; ``w ∈ [1, 255]`` is chosen to minimise the relative threshold error
``|round(θ·w/c) − θ·w/c| / (θ·w/c)``, ties to the largest ``w`` (finest decay rounding).
Avg 2×2 with θ = 0.25: ``w = 255``, ``vth = 255`` (exact). Sum 2×2 with θ = 0.25: ``w = 252``,
``vth = 63`` (exact).

TA-LIF layers (HoSNN; NIR metadata extension, see nir_export)
--------------------------------------------------------------
Only on profiles with ``programmable_neurons`` (Loihi 2 microcode; Loihi 1's LIF is fixed, so
a TA-LIF model is refused there with :class:`HardwareFitError` naming the layer). The synapse,
``vth``, ``dv``, bias and scale are compiled exactly as for a LIF layer; on top, per neuron::

    θ_v_mant = round(θ_v · 2^k)  ∈ [0, 2^talif_theta_v_bits − 1]
    k        = min(talif_theta_v_shift_max, ⌊log2((2^bits − 1) / max θ_v)⌋)   (finest that fits)
    NDS_int  = round(NDS · scale · 2^threshold_shift)   (v units), clipped to ±(2^(talif_state_bits−1) − 1)

giving ``PlanLayer(neuron="talif", neuron_params={"theta_v_shift": k, "theta_bits":
talif_state_bits}, neuron_arrays={"theta_v": int [N], "nds": int [T, N]})`` (flat C·H·W
neuron order). The chip then runs (sims/lava_procs/talif)::

    θ = sat(θ + (θ_v_mant · (v − NDS_int[t])) >>₀ k)   before firing;  θ = vth << 6 at reset

The report adds ``theta_v_shift``, ``theta_v_max``, ``theta_v_max_abs_err`` (and ``_rel`` to
max θ_v), ``theta_v_zeroed_frac``, ``nds_max_abs``, ``nds_max_abs_err`` (float units) and
``nds_max_abs_err_rel_theta``, ``nds_clipped_frac``.

Resources
---------
Each layer's neurons are split evenly over ``cores = max(⌈N/neurons_per_core⌉, cores needed
for its synapses)`` consecutive cores (index order C,H,W). Synapses are counted per neuron
(dense: fan-in; conv/pool: valid taps, i.e. padding excluded, weights *not* shared), memory =
synapses × bits_per_synapse / 8. Input axons of a core = distinct presynaptic neurons its
neurons read (exact, from receptive fields); output axons of a core = Σ over its neurons of
the number of next-layer cores that read the neuron (exact). The input layer (host-fed) uses
no core. Checks: cores ≤ cores_per_chip × chips, synaptic memory per core, fan-in / fan-out
per core (when the profile gives them), value ranges. Failures raise
:class:`~neurodeploy.errors.HardwareFitError` naming the layer and the limit.

Quantization report (``plan.quantization[layer name]``)
-------------------------------------------------------
``scale``, ``scale_bound_by`` (which constraint set ``s_max``), ``weight_max_abs_err_rel`` /
``weight_mean_abs_err_rel`` / ``weight_rms_err_rel`` (|W_int/s − W| over max|W|),
``weights_zeroed_frac`` (non-zero float weights that became 0), ``threshold_err_rel``
(|vth/s − θ|/θ), ``bias_exp``, ``bias_max_abs_err`` (float units) and
``bias_max_abs_err_rel_theta``, ``alpha``/``alpha_q``/``decay_abs_err``, ``max_input_pos/neg``
and ``u_headroom`` (2^17 over the worst one-step synaptic input), ``v_neg_bound`` (worst-case
negative |v| in weight units, steady state of all negative inputs + bias) and
``v_state_headroom`` (2^17 over it; < 1 means v may saturate; 0 for α = 1 where it is
unbounded). ``summary`` holds the maxima over layers. JSON has no ∞: unbounded values are null.

Environment: main only (needs ``nir``; the Lava environment reads the resulting plan with
:mod:`neurodeploy.exporters.plan` alone).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.nir_chain import ChainLayer, NIRChain, parse_graph
from neurodeploy.exporters.nir_chain_nodes import TALIF, conv_matrix
from neurodeploy.exporters.plan import GRADED_BITS_MAX, MEMBRANE_KINDS, DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import HardwareProfile, load_profile
from neurodeploy.jsonable import jsonable

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from neurodeploy.models import SpikingNet

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


def _skip_delays(L: ChainLayer, chain: NIRChain, profile: HardwareProfile) -> list[int]:
    """Plan ``skip_from`` of ``L``'s skip edges (−1: the input), after checking that each
    can wait for the main path: a skip from chain index j into layer k needs an extra
    synaptic delay of ``synaptic_delay · (k − 1 − j)`` steps (Lava's DelayDense), at most
    the profile's ``max_synaptic_delay``; refused naming the edge otherwise."""
    out = []
    for (j, _w), label in zip(L.skips, L.skip_labels, strict=True):
        extra = profile.synaptic_delay * (L.index - 1 - j)
        if extra > profile.max_synaptic_delay:
            raise HardwareFitError(
                f"{label}: skips {L.index - 1 - j} layers, so it must wait {extra} steps to "
                f"meet the main path, but {profile.name}'s synaptic delay is at most "
                f"{profile.max_synaptic_delay} (max_synaptic_delay): the delays cannot be "
                f"aligned exactly")
        out.append(j - 1)
    return out


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


# ----------------------------------------------------------------------------- resources


def _synapses_per_neuron(L: ChainLayer) -> np.ndarray:
    """Synapse count of every output neuron (flat, C·H·W order)."""
    if L.kind == "fc":  # a recurrent connection adds N synapses per neuron
        rec = L.out_shape[0] if L.rec_weight is not None else 0
        return np.full(L.out_shape[0], int(np.prod(L.in_shape)) + rec, dtype=np.int64)
    C_out, Ho, Wo = L.out_shape
    H, W = L.in_shape[1], L.in_shape[2]
    valid = np.zeros((Ho, Wo), dtype=np.int64)
    ys = np.arange(Ho) * L.stride[0] - L.padding[0]
    xs = np.arange(Wo) * L.stride[1] - L.padding[1]
    for dy in range(L.kernel[0]):
        oky = (ys + dy >= 0) & (ys + dy < H)
        for dx in range(L.kernel[1]):
            okx = (xs + dx >= 0) & (xs + dx < W)
            valid += oky[:, None] & okx[None, :]
    cin = L.in_shape[0] // L.groups if L.kind == "conv" else 1
    return np.broadcast_to(valid * cin, (C_out, Ho, Wo)).reshape(-1).astype(np.int64)


def _input_mask(L: ChainLayer, part: slice | np.ndarray) -> np.ndarray:
    """Boolean mask over L's (flattened) input of what output neurons ``part`` (a slice or
    flat indices) read."""
    n_in = int(np.prod(L.in_shape))
    if L.kind == "fc":
        return np.ones(n_in, dtype=bool)
    C_out, Ho, Wo = L.out_shape
    C_in, H, W = L.in_shape
    out = np.zeros(C_out * Ho * Wo, dtype=bool)
    out[part] = True
    out = out.reshape(C_out, Ho, Wo)
    groups = L.groups if L.kind == "conv" else C_in
    cout_g, cin_g = C_out // groups, C_in // groups
    mask = np.zeros((C_in, H, W), dtype=bool)
    for g in range(groups):
        cover = out[g * cout_g:(g + 1) * cout_g].any(0)
        if not cover.any():
            continue
        oy, ox = np.nonzero(cover)
        spatial = np.zeros((H, W), dtype=bool)
        for dy in range(L.kernel[0]):
            y = oy * L.stride[0] - L.padding[0] + dy
            for dx in range(L.kernel[1]):
                x = ox * L.stride[1] - L.padding[1] + dx
                ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
                spatial[y[ok], x[ok]] = True
        mask[g * cin_g:(g + 1) * cin_g] |= spatial
    return mask.reshape(-1)


def _partition(n: int, cores: int) -> list[tuple[int, int]]:
    per = math.ceil(n / cores)
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def _layer_cores(L: ChainLayer, profile: HardwareProfile, syn: np.ndarray) -> int:
    n = syn.size
    mem_bits = profile.synaptic_memory_bytes_per_core * 8
    if int(syn.max()) * profile.bits_per_synapse > mem_bits:
        raise HardwareFitError(
            f"{_label(L)}: one neuron has {int(syn.max())} synapses = "
            f"{int(syn.max()) * profile.bits_per_synapse // 8} bytes, more than the "
            f"{profile.synaptic_memory_bytes_per_core} bytes of synaptic memory per core of "
            f"{profile.name}")
    cores = max(1, math.ceil(n / profile.neurons_per_core))
    while True:
        parts = _partition(n, cores)
        worst = max(int(syn[lo:hi].sum()) for lo, hi in parts) * profile.bits_per_synapse
        if worst <= mem_bits:
            return len(parts)
        cores = max(cores + 1, math.ceil(cores * worst / mem_bits))


def resource_map(chain: NIRChain, profile: HardwareProfile) -> dict[str, Any]:
    """Cores, neurons, synapses, memory and axons per layer and core; raises on misfit."""
    layers: list[dict[str, Any]] = []
    parts_all: list[list[Any]] = []
    masks_all: list[list[np.ndarray]] = []
    total = 0
    for L in chain.layers:
        syn = _synapses_per_neuron(L)
        cores = _layer_cores(L, profile, syn)
        parts: list[Any] = [slice(lo, hi) for lo, hi in _partition(syn.size, cores)]
        masks = [_input_mask(L, p) for p in parts]
        fan_in = [int(m.sum()) for m in masks]
        if (profile.max_fan_in_per_core is not None and max(fan_in) > profile.max_fan_in_per_core
                and L.kind != "fc"):  # split by output channels × rows instead (partition.py)
            from neurodeploy.exporters.partition import chain_layer_parts

            parts = chain_layer_parts(L, profile)
            masks = [_input_mask(L, p) for p in parts]
            fan_in = [int(m.sum()) for m in masks]
        if profile.max_fan_in_per_core is not None and max(fan_in) > profile.max_fan_in_per_core:
            raise HardwareFitError(
                f"{_label(L)}: a core reads {max(fan_in)} input axons but {profile.name} "
                f"allows {profile.max_fan_in_per_core} per core (max_fan_in_per_core)")
        total += len(parts)
        if total > profile.total_cores:
            raise HardwareFitError(
                f"{_label(L)}: needs {len(parts)} cores ({syn.size} neurons, "
                f"{int(syn.sum())} synapses), bringing the total to {total} cores, but "
                f"{profile.name} has {profile.cores_per_chip} cores per chip × {profile.chips} "
                f"chip(s) = {profile.total_cores}")
        syn_core = [int(syn[p].sum()) for p in parts]
        layers.append({
            "layer": L.index, "token": layer_token(L), "kind": PLAN_KINDS[L.kind],
            "neuron": TALIF if L.is_talif else "li" if L.neuron in ("li", "cubali") else (
                ("sublif_delayed" if L.reset_timing == "next-step" else "sublif")
                if L.reset == "subtract" else "lif"),
            "neurons": int(syn.size), "synapses": int(syn.sum()), "cores": len(parts),
            "neurons_per_core": [int(syn[p].size) for p in parts],
            "synapses_per_core": syn_core,
            "synaptic_memory_bytes_per_core": [
                math.ceil(s * profile.bits_per_synapse / 8) for s in syn_core],
            "fan_in_per_neuron": int(syn.max()),
            "input_axons_per_core": fan_in,
            # skip-edge synapses (their own delayed synapse block): counted here, not in the
            # per-core memory and fan-in figures above
            "skip_synapses": int(sum(np.count_nonzero(w) for _, w in L.skips)),
        })
        parts_all.append(parts)
        masks_all.append(masks)
    # fan-out: each neuron sends one axon per next-layer core that reads it
    for k, info in enumerate(layers):
        if k + 1 == len(layers):
            info["output_axons_per_core"] = [0 for _ in parts_all[k]]
            continue
        targets = np.sum([m.astype(np.int64) for m in masks_all[k + 1]], axis=0)
        out_ax = [int(targets[p].sum()) for p in parts_all[k]]
        info["output_axons_per_core"] = out_ax
        if profile.max_fan_out_per_core is not None and max(out_ax) > \
                profile.max_fan_out_per_core:
            L = chain.layers[k]
            raise HardwareFitError(
                f"{_label(L)}: a core sends {max(out_ax)} output axons but {profile.name} "
                f"allows {profile.max_fan_out_per_core} per core (max_fan_out_per_core)")
    return {
        "profile": profile.name,
        "cores_used": total,
        "cores_available": profile.total_cores,
        "neurons": int(sum(i["neurons"] for i in layers)),
        "synapses": int(sum(i["synapses"] for i in layers)),
        "layers": layers,
        "limits": profile.limits(),
        "notes": "input layer is host-fed (no core); synaptic memory = synapses × "
                 "bits_per_synapse / 8, conv weights counted unshared; neurons split evenly "
                 "over consecutive cores, or by output channels x rows when a core's fan-in "
                 "would be exceeded",
    }


# ----------------------------------------------------------------------------- compile


def _check_profile_semantics(profile: HardwareProfile) -> None:
    if profile.reset != "zero":
        raise ConfigError(f"profile {profile.name!r} resets by {profile.reset!r}; the models "
                          f"here reset to zero — no exact mapping")
    if profile.spike_comparison != ">":
        raise ConfigError(f"profile {profile.name!r} spikes on v {profile.spike_comparison} vth;"
                          f" the canonical LIF uses strict '>'")
    if profile.synaptic_delay > profile.max_synaptic_delay:  # pragma: no cover - validated
        raise ConfigError(f"profile {profile.name!r}: synaptic_delay > max_synaptic_delay")


def compile_graph(graph: nir.NIRGraph, profile: HardwareProfile | str,
                  num_steps: int, input_shape: tuple[int, ...] | list[int] | None = None,
                  weight_groups: str = "one") -> DeploymentPlan:
    """Quantize a NIR graph for ``profile`` and check that it fits.

    Parameters
    ----------
    weight_groups : ``"one"`` (one 8-bit mantissa per matrix, the default) or ``"auto"``: each
        dense/conv layer may take a second synapse group
        (:func:`~neurodeploy.exporters.precision.quantize_two_groups`, plan
        ``weights_lo``) where it buys resolution within the headroom checks; a recurrent dense
        layer puts ``W`` and ``W_rec`` on two groups each
        (:func:`~neurodeploy.exporters.precision.recurrent_two_groups`, plan ``w_rec_lo``),
        and a bias into a current moves to the fine 13-bit u grid where that is finer
        (:func:`~neurodeploy.exporters.precision.fine_current_bias`, plan ``a_bias_mant``).
    graph : a feed-forward NIR graph (see :func:`~neurodeploy.exporters.nir_chain.parse_graph`).
    profile : a :class:`HardwareProfile` or a name / path for :func:`load_profile`.
    num_steps : the model's time steps T (stored in the plan).
    input_shape : expected input shape (without T and batch); must match the graph's Input.

    Raises
    ------
    ConfigError
        A graph Lava's LIF cannot run (named node), a non-spiking output layer, a profile with
        other reset/comparison semantics, or an input shape mismatch.
    HardwareFitError
        The model does not fit the profile (names the layer and the limit).
    """
    if weight_groups not in ("one", "auto"):
        raise ConfigError(f"weight_groups {weight_groups!r}: choose 'one' or 'auto'")
    from neurodeploy.exporters.precision import (  # it builds on this module's quantizer
        fine_current_bias,
        quantize_two_groups,
        recurrent_eligible,
        recurrent_two_groups,
        two_group_eligible,
    )
    profile = load_profile(profile)
    _check_profile_semantics(profile)
    chain = parse_graph(graph)
    if input_shape is not None and tuple(int(v) for v in input_shape) != chain.input_shape:
        raise ConfigError(f"input shape {tuple(input_shape)} does not match the graph's Input "
                          f"node {chain.input_shape}")
    if int(num_steps) < 1:
        raise ConfigError(f"num_steps must be >= 1, got {num_steps}")
    layers: list[PlanLayer] = []
    quant: dict[str, Any] = {}
    for L in chain.layers:
        readout = L.neuron in ("li", "cubali")
        if readout and not profile.programmable_neurons:
            raise HardwareFitError(
                f"{_label(L)}: node {L.neuron_node!r} is a non-spiking read-out (membrane "
                f"output); {profile.name}'s fixed LIF always spikes — compile for loihi2 (a "
                f"programmable neuron sends v each step), or train with readout 'count'")
        if readout and L.rec_weight is not None:
            raise ConfigError(f"{_label(L)}: a recurrent loop on the non-spiking read-out "
                              f"{L.neuron_node!r} (node {L.rec_node!r}) feeds back a membrane, "
                              f"not spikes; it has no chip mapping")
        rec_int = a_bias = None
        if (L.rec_weight is not None or L.cur_bias is not None) and \
                not profile.programmable_neurons:
            raise HardwareFitError(
                f"{_label(L)}: a recurrent connection or a bias into a CubaLIF current (node "
                f"{L.neuron_node!r}) runs inside a programmable neuron; {profile.name} has only "
                f"the fixed LIF — compile for loihi2")
        if L.is_talif and (L.rec_weight is not None or L.cur_bias is not None):
            raise ConfigError(f"{_label(L)}: a recurrent or current-biased TA-LIF population "
                              f"has no chip neuron")
        skip_from, skip_int = _skip_delays(L, chain, profile), []
        w_lo, k_exp = None, 0
        rec_scheme = (recurrent_two_groups(L, profile) if weight_groups == "auto"
                      and recurrent_eligible(L) else None)
        extra: dict[str, np.ndarray] = {}  # plan-v3 precision fields of the neuron's inputs
        if rec_scheme is not None:  # W and W_rec on two synapse groups each
            q, a_bias, w_lo, k_exp = (rec_scheme.q, rec_scheme.a_bias, rec_scheme.weights_lo,
                                      rec_scheme.k)
            rec_int = rec_scheme.w_rec
            if rec_scheme.w_rec_lo is not None:
                extra["w_rec_lo"] = rec_scheme.w_rec_lo
        elif weight_groups == "auto" and two_group_eligible(L):  # a second synapse group
            q, a_bias, w_lo, k_exp = quantize_two_groups(L, profile)
        elif L.kind == "fc" and (L.rec_weight is not None or L.cur_bias is not None or L.skips):
            # one scale for [W | W_rec | W_skip… | b_cur]: spikes are binary (the current bias
            # is an always-on input), so they share the layer's scale; u headroom over all
            n_in, n_out = int(np.prod(L.in_shape)), L.out_shape[0]
            cols = [np.asarray(L.weight).reshape(n_out, -1)]
            if L.rec_weight is not None:
                cols.append(L.rec_weight)
            cols.extend(w for _, w in L.skips)
            if L.cur_bias is not None:
                cols.append(np.asarray(L.cur_bias, dtype=np.float64).reshape(n_out, 1))
            q = _quantize_weighted(dataclasses.replace(L, weight=np.concatenate(cols, 1)),
                                   profile)
            at = n_in
            if L.rec_weight is not None:
                rec_int = q.weights[:, at:at + n_out].astype(np.int32)
                at += n_out
            for _, w in L.skips:
                skip_int.append(q.weights[:, at:at + w.shape[1]].astype(np.int32))
                at += w.shape[1]
            if L.cur_bias is not None:
                a_bias = q.weights[:, -1].astype(np.int32)
            q = dataclasses.replace(q, weights=q.weights[:, :n_in])
        elif L.kind == "conv" and L.rec_weight is not None:
            # a recurrent convolution (W_rec unrolled, [N, N]): one scale for the unrolled
            # forward conv and W_rec, chosen on [conv as a matrix | W_rec] (the u headroom
            # then covers the exact worst row); the kernel is quantized with that scale and
            # sign mode, so its taps equal the matrix's entries
            q, rec_int = _quantize_conv_recurrent(L, profile)
        elif L.rec_weight is not None:
            raise ConfigError(f"{_label(L)}: a recurrent connection needs a dense or conv "
                              f"layer")
        else:
            q = (_quantize_pool if L.kind in ("avgpool", "sumpool") else _quantize_weighted)(
                L, profile)
            if L.cur_bias is not None:  # conv: one current bias per channel
                per_ch = np.round(np.asarray(L.cur_bias, dtype=np.float64) * q.scale)
                a_bias = np.repeat(per_ch, L.out_shape[1] * L.out_shape[2]).astype(np.int32)
                worst = int(np.abs(q.weights).reshape(q.weights.shape[0], -1).sum(1).max()
                            + np.abs(per_ch).max())
                amp = 1.0 / (1.0 - q.report["beta_q"]) if "beta_q" in q.report else 1.0
                if worst * amp >= profile.input_limit:
                    raise HardwareFitError(f"{_label(L)}: synaptic input plus current bias "
                                           f"{worst} (× {amp:g}, current decay) reaches the u "
                                           f"range of {profile.name}")
        bias_mant = q.bias_mant
        if L.kind == "conv" and bias_mant.size == L.out_shape[0]:  # per channel → per neuron
            bias_mant = np.repeat(bias_mant, L.out_shape[1] * L.out_shape[2])
        groups = L.in_shape[0] if L.kind in ("avgpool", "sumpool") else L.groups
        stride = L.stride if L.kind != "fc" else (1, 1)
        name = f"layer{L.index}"
        neuron, nparams, narrays, treport = "lif", {}, {}, {}
        if L.reset == "zero" and L.reset_timing == "next-step":
            if L.is_talif or not profile.programmable_neurons:
                raise HardwareFitError(
                    f"{_label(L)}: a zero reset one step late (node {L.neuron_node!r}, snntorch "
                    f"Synaptic/RLeaky) needs programmable neurons and no TA-LIF; {profile.name} "
                    f"cannot — compile for loihi2")
            neuron = "lif_delayed"
        if L.reset == "subtract":
            if L.is_talif:
                raise ConfigError(f"{_label(L)}: TA-LIF with subtract reset has no chip neuron")
            if not profile.programmable_neurons:
                raise HardwareFitError(
                    f"{_label(L)}: subtract reset (node {L.neuron_node!r}) needs programmable "
                    f"neurons; {profile.name}'s fixed LIF resets to zero — compile for loihi2, "
                    f"or deploy with reset to zero (export --nir … --reset zero)")
            neuron = "sublif_delayed" if L.reset_timing == "next-step" else "sublif"
        if L.is_talif:
            neuron = TALIF
            nparams, narrays, treport = _quantize_talif(L, float(q.scale), int(num_steps),
                                                        profile)
        if readout:  # no spike, no reset: the membrane is sent each step
            neuron = "li"
        if L.v_floor is not None:
            nparams = {**nparams, "v_min": _v_min(L, neuron, int(q.vth), profile)}
        if graded_ok(L, neuron, profile):  # multi-spike counts as graded spike payloads
            nparams = {**nparams, "graded_bits": min(profile.graded_spike_bits,
                                                     GRADED_BITS_MAX)}
        decays, dreport = _per_neuron_decays(L, profile)
        q = dataclasses.replace(q, report={**q.report, **dreport})
        if "w_rec_lo" in extra:
            nparams = {**nparams, "w_rec_exp": k_exp}
        fine = (fine_current_bias(L, q, a_bias, profile)
                if weight_groups == "auto" and a_bias is not None else None)
        if fine is not None:  # the current bias on the 13-bit u grid instead of a_bias
            extra["a_bias_mant"], a_exp = fine
            nparams = {**nparams, "a_bias_exp": a_exp}
            q = dataclasses.replace(q, report={**q.report, "current_bias_exp": a_exp})
        cb_arrays = {k: v for k, v in (("w_rec", rec_int),
                                       ("a_bias", None if fine is not None else a_bias))
                     if v is not None}
        layers.append(PlanLayer(
            name=name, kind=PLAN_KINDS[L.kind], in_shape=tuple(L.in_shape),
            out_shape=tuple(L.out_shape), weights=q.weights.astype(np.int32), weight_exp=k_exp,
            du=q.du, dv=q.dv, vth=q.vth, bias_mant=bias_mant.astype(np.int32),
            bias_exp=q.bias_exp, scale=float(q.scale), delay=profile.synaptic_delay,
            stride=tuple(int(v) for v in stride), padding=tuple(int(v) for v in L.padding),
            groups=int(groups), flatten_before=bool(L.flatten_before),
            neuron=(neuron if rec_int is None and a_bias is None else
                    f"{neuron}{'_rec' if rec_int is not None else '_cb'}"),
            neuron_params=nparams,
            neuron_arrays={**(narrays if rec_int is None and a_bias is None else cb_arrays),
                           **extra, **decays},
            skip_from=tuple(skip_from), skip_weights=tuple(skip_int),
            weights_lo=None if w_lo is None else w_lo.astype(np.int32),
        ))
        quant[name] = {"token": layer_token(L), "nir_nodes": [L.synapse_node, L.neuron_node],
                       **q.report, **treport}
    _check_value_ranges(layers, chain, profile)
    resources = resource_map(chain, profile)
    quant["summary"] = {
        "weight_max_abs_err_rel": max(v["weight_max_abs_err_rel"] for k, v in quant.items()),
        "threshold_err_rel_max": max(v["threshold_err_rel"] for k, v in quant.items()),
        "decay_abs_err_max": max(v["decay_abs_err"] for k, v in quant.items()),
        "bias_max_abs_err_rel_theta": max(v["bias_max_abs_err_rel_theta"]
                                          for k, v in quant.items()),
        "v_state_headroom_min": min(v["v_state_headroom"] for k, v in quant.items()
                                    if k != "summary"),
    }
    talif_q = [v for k, v in quant.items() if k != "summary" and v.get("neuron") == TALIF]
    if talif_q:
        quant["summary"].update({
            "theta_v_max_abs_err_rel_max": max(v["theta_v_max_abs_err_rel"] for v in talif_q),
            "nds_max_abs_err_rel_theta_max": max(v["nds_max_abs_err_rel_theta"]
                                                 for v in talif_q),
            "nds_clipped_frac_max": max(v["nds_clipped_frac"] for v in talif_q),
        })
    meta = {k: (v.tolist() if isinstance(v, np.ndarray) else
                v.item() if isinstance(v, np.generic) else v)
            for k, v in chain.metadata.items()}
    source = {"nir_metadata": meta, "dt": chain.dt, "profile_source": profile.source,
              "compiler": "neurodeploy.exporters.compiler",
              "rules": "threshold-snapped per-layer scale, even mixed-sign mantissas, "
                       "weight_exp 0, smallest fitting bias_exp, du 4095",
              # what the output is: spike counts, or the read-out's membrane Σ_t v
              "readout": "membrane" if layers[-1].neuron in MEMBRANE_KINDS else "count"}
    plan = DeploymentPlan(profile=profile.name, num_steps=int(num_steps),
                          input_shape=chain.input_shape, layers=tuple(layers),
                          resources=resources, quantization=jsonable(quant), source=source,
                          fixed_point=profile.fixed_point)
    plan.validate()
    return plan


def graded_ok(L: ChainLayer, neuron: str, profile: HardwareProfile) -> bool:
    """A multi-spike population (sinabs ``MultiSpike``, rockpool) sends its counts as graded
    spikes where the profile has them and it runs as an immediate-subtract ``sublif`` (the
    only kind whose count rule ``⌊v/θ⌋`` the chip implements; recurrent kinds read 0/1)."""
    return (L.multi_spike and profile.graded_spike_bits > 0 and neuron == "sublif"
            and L.rec_weight is None)


def _v_min(L: ChainLayer, neuron: str, vth: int, profile: HardwareProfile) -> int:
    """The integer lower bound on v of a population with a float floor (sinabs ``min_v_mem``):
    the floor relative to the *quantized* threshold, so ``v_floor = −θ`` is exactly
    ``−(vth << threshold_shift)``::

        v_min = round(v_floor / θ · (vth << threshold_shift)),   v ← max(v, v_min) after reset

    Runs in the programmable ``sublif`` process only (Lava's own LIF has no lower bound).

    Raises
    ------
    HardwareFitError
        Without programmable neurons, or on a neuron kind the ``sublif`` process does not run.
    """
    assert L.v_floor is not None and L.theta is not None
    if not profile.programmable_neurons or not neuron.startswith("sublif"):
        raise HardwareFitError(
            f"{_label(L)}: node {L.neuron_node!r} bounds v from below (v ≥ {L.v_floor:g}, "
            f"sinabs min_v_mem); only the programmable subtract-reset neuron (sublif) holds a "
            f"floor, and this layer compiles to {neuron!r} on {profile.name}")
    fmt = profile.fixed_point
    v_min = int(round(L.v_floor / L.theta * fmt.vth_scaled(vth)))
    if v_min < -fmt.state_max:
        raise HardwareFitError(f"{_label(L)}: v floor {v_min} is below the v range "
                               f"−{fmt.state_max} of {profile.name}")
    return v_min


def _check_value_ranges(layers: list[PlanLayer], chain: NIRChain,
                        profile: HardwareProfile) -> None:
    for P, L in zip(layers, chain.layers, strict=True):
        where = _label(L)
        checks = (
            ("vth", P.vth, 0, profile.vth_max),
            ("dv", P.dv, 0, profile.decay_max), ("du", P.du, 0, profile.decay_max),
            ("bias_exp", P.bias_exp, 0, profile.bias_exp_max),
            ("weight_exp", P.weight_exp, profile.weight_exp_min, profile.weight_exp_max),
            ("delay", P.delay, 0, profile.max_synaptic_delay),
        )
        for name, val, lo, hi in checks:
            if not lo <= int(val) <= hi:
                raise HardwareFitError(f"{where}: {name} = {val} outside [{lo}, {hi}] of "
                                       f"{profile.name}")
        if P.bias_mant.size and (P.bias_mant.min() < profile.bias_mant_min
                                 or P.bias_mant.max() > profile.bias_mant_max):
            raise HardwareFitError(f"{where}: bias mantissa outside the "
                                   f"{profile.bias_mant_bits}-bit range of {profile.name}")
        wmin, wmax = int(P.weights.min()), int(P.weights.max())
        if wmin < profile.weight_min_mixed or wmax > profile.weight_max_single:
            raise HardwareFitError(f"{where}: weight mantissas [{wmin}, {wmax}] exceed the "
                                   f"{profile.weight_bits}-bit range of {profile.name}")
        if wmin < 0 < wmax and profile.mixed_sign_drops_lsb and np.any(P.weights % 2):
            raise HardwareFitError(f"{where}: odd mixed-sign weight mantissas would lose their "
                                   f"LSB on {profile.name}")


def compile_model(model: SpikingNet, profile: HardwareProfile | str = "loihi2",
                  dt: float | None = None) -> DeploymentPlan:
    """``compile_graph(to_nir(model), profile, model.num_steps, model's input shape)``."""
    from neurodeploy.exporters.nir_export import DEFAULT_DT, to_nir

    graph = to_nir(model, dt=DEFAULT_DT if dt is None else dt)
    plan = compile_graph(graph, profile, model.num_steps, model.config.input_shape)
    return plan
