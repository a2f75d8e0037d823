"""Compile a NIR graph for a hardware profile into a fixed-point :class:`DeploymentPlan`.

Pipeline: ``nir.NIRGraph`` → :func:`~neurodeploy.exporters.nir_chain.parse_graph` (a chain of
synapse → LIF/IF/CubaLIF layers, validated: v_leak = 0 on LIF, uniform α/θ per layer) →
per-layer quantization → resource map / fit checks → plan. :func:`compile_model` goes through
:func:`~neurodeploy.exporters.nir_export.to_nir`, so the NIR path is the real path.
The stages live in three modules: :mod:`~neurodeploy.exporters.quantize` (per-layer
quantization, the rules below), :mod:`~neurodeploy.exporters.resources` (the resource map and
fit checks, section "Resources") and this one (:func:`compile_graph`: each chain layer lowered
to a :class:`~neurodeploy.exporters.plan.PlanLayer` with its neuron kind, the value-range
checks, the plan), which re-exports the public names of the other two (:data:`__all__`).

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
from typing import TYPE_CHECKING, Any

import numpy as np

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.nir_chain import ChainLayer, NIRChain, parse_graph
from neurodeploy.exporters.nir_chain_nodes import TALIF
from neurodeploy.exporters.plan import GRADED_BITS_MAX, MEMBRANE_KINDS, DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import HardwareProfile, load_profile
from neurodeploy.exporters.quantize import (  # re-export: per-layer quantization
    PLAN_KINDS,
    QuantizedLayer,
    _label,
    _per_neuron_decays,
    _quantize_conv_recurrent,
    _quantize_pool,
    _quantize_talif,
    _quantize_weighted,
    layer_token,
)
from neurodeploy.exporters.resources import resource_map  # re-export: the resource map
from neurodeploy.jsonable import jsonable

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from neurodeploy.models import SpikingNet

__all__ = [
    "PLAN_KINDS", "QuantizedLayer", "compile_graph", "compile_model", "graded_ok",
    "layer_token", "resource_map",
]

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
    profile = load_profile(profile)
    _check_profile_semantics(profile)
    chain = parse_graph(graph)
    _check_run_shape(chain, input_shape, num_steps)
    layers: list[PlanLayer] = []
    quant: dict[str, Any] = {}
    for L in chain.layers:
        layer, report = _lower_layer(L, chain, profile, num_steps, weight_groups)
        layers.append(layer)
        quant[layer.name] = report
    _check_value_ranges(layers, chain, profile)
    resources = resource_map(chain, profile)
    _summarize_quantization(quant)
    return _assemble_plan(chain, profile, num_steps, layers, resources, quant)


def _check_run_shape(chain: NIRChain, input_shape: tuple[int, ...] | list[int] | None,
                     num_steps: int) -> None:
    """The caller's input shape (if given) and step count against the parsed graph."""
    if input_shape is not None and tuple(int(v) for v in input_shape) != chain.input_shape:
        raise ConfigError(f"input shape {tuple(input_shape)} does not match the graph's Input "
                          f"node {chain.input_shape}")
    if int(num_steps) < 1:
        raise ConfigError(f"num_steps must be >= 1, got {num_steps}")


def _lower_layer(L: ChainLayer, chain: NIRChain, profile: HardwareProfile, num_steps: int,
                 weight_groups: str) -> tuple[PlanLayer, dict[str, Any]]:
    """One chain layer → its :class:`PlanLayer` and its quantization report: the chip
    support checks, the synapses quantized, the neuron kind chosen, the neuron's inputs
    (per-neuron decays, current bias) attached."""
    from neurodeploy.exporters.precision import (  # it builds on the quantizer (quantize.py)
        fine_current_bias,
    )
    readout = L.neuron in ("li", "cubali")
    _check_layer_support(L, profile, readout)
    skip_from = _skip_delays(L, chain, profile)
    q, rec_int, a_bias, skip_int, w_lo, k_exp, extra = _quantize_synapses(L, profile,
                                                                          weight_groups)
    bias_mant = q.bias_mant
    if L.kind == "conv" and bias_mant.size == L.out_shape[0]:  # per channel → per neuron
        bias_mant = np.repeat(bias_mant, L.out_shape[1] * L.out_shape[2])
    groups = L.in_shape[0] if L.kind in ("avgpool", "sumpool") else L.groups
    stride = L.stride if L.kind != "fc" else (1, 1)
    name = f"layer{L.index}"
    neuron, nparams, narrays, treport = _neuron_kind(L, q, num_steps, profile, readout)
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
    layer = PlanLayer(
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
    )
    return layer, {"token": layer_token(L), "nir_nodes": [L.synapse_node, L.neuron_node],
                   **q.report, **treport}


def _check_layer_support(L: ChainLayer, profile: HardwareProfile, readout: bool) -> None:
    """Refuse the layers ``profile`` has no neuron for: a non-spiking read-out or a recurrent
    / current-biased population on the fixed LIF, a recurrent read-out, a recurrent or
    current-biased TA-LIF."""
    if readout and not profile.programmable_neurons:
        raise HardwareFitError(
            f"{_label(L)}: node {L.neuron_node!r} is a non-spiking read-out (membrane "
            f"output); {profile.name}'s fixed LIF always spikes — compile for loihi2 (a "
            f"programmable neuron sends v each step), or train with readout 'count'")
    if readout and L.rec_weight is not None:
        raise ConfigError(f"{_label(L)}: a recurrent loop on the non-spiking read-out "
                          f"{L.neuron_node!r} (node {L.rec_node!r}) feeds back a membrane, "
                          f"not spikes; it has no chip mapping")
    if (L.rec_weight is not None or L.cur_bias is not None) and \
            not profile.programmable_neurons:
        raise HardwareFitError(
            f"{_label(L)}: a recurrent connection or a bias into a CubaLIF current (node "
            f"{L.neuron_node!r}) runs inside a programmable neuron; {profile.name} has only "
            f"the fixed LIF — compile for loihi2")
    if L.is_talif and (L.rec_weight is not None or L.cur_bias is not None):
        raise ConfigError(f"{_label(L)}: a recurrent or current-biased TA-LIF population "
                          f"has no chip neuron")


def _quantize_synapses(L: ChainLayer, profile: HardwareProfile, weight_groups: str
                       ) -> tuple[QuantizedLayer, np.ndarray | None, np.ndarray | None,
                                  list[np.ndarray], np.ndarray | None, int,
                                  dict[str, np.ndarray]]:
    """The layer's synapses quantized by the scheme that fits it: ``(q, rec_int, a_bias,
    skip_int, w_lo, k_exp, extra)`` — the layer, its integer ``W_rec``, current bias and skip
    matrices, the second synapse group and its exponent, and the plan-v3 precision fields."""
    from neurodeploy.exporters.precision import (  # it builds on the quantizer (quantize.py)
        quantize_two_groups,
        recurrent_eligible,
        recurrent_two_groups,
        two_group_eligible,
    )
    rec_int = a_bias = None
    skip_int: list[np.ndarray] = []
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
        q, rec_int, skip_int, a_bias = _quantize_fc_blocks(L, profile)
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
        q, a_bias = _quantize_plain(L, profile)
    return q, rec_int, a_bias, skip_int, w_lo, k_exp, extra


def _quantize_fc_blocks(L: ChainLayer, profile: HardwareProfile
                        ) -> tuple[QuantizedLayer, np.ndarray | None, list[np.ndarray],
                                   np.ndarray | None]:
    """A dense layer with a recurrent matrix, skip edges or a current bias: ``(q, rec_int,
    skip_int, a_bias)``, every block quantized with one scale."""
    # one scale for [W | W_rec | W_skip… | b_cur]: spikes are binary (the current bias
    # is an always-on input), so they share the layer's scale; u headroom over all
    rec_int = a_bias = None
    skip_int: list[np.ndarray] = []
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
    return q, rec_int, skip_int, a_bias


def _quantize_plain(L: ChainLayer, profile: HardwareProfile
                    ) -> tuple[QuantizedLayer, np.ndarray | None]:
    """A pool layer, or a dense / conv layer without recurrence or skips: ``(q, a_bias)``,
    ``a_bias`` the conv layer's current bias (per neuron) checked against the u range."""
    a_bias = None
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
    return q, a_bias


def _neuron_kind(L: ChainLayer, q: QuantizedLayer, num_steps: int, profile: HardwareProfile,
                 readout: bool) -> tuple[str, dict[str, Any], dict[str, np.ndarray],
                                         dict[str, Any]]:
    """The plan neuron of a layer from its reset, TA-LIF, read-out, v floor and multi-spike
    output: ``(neuron, neuron_params, neuron_arrays, TA-LIF report)``."""
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
    return neuron, nparams, narrays, treport


def _summarize_quantization(quant: dict[str, Any]) -> None:
    """Add ``quant["summary"]``: the maxima (minimum headroom) over the layers' reports."""
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


def _assemble_plan(chain: NIRChain, profile: HardwareProfile, num_steps: int,
                   layers: list[PlanLayer], resources: dict[str, Any],
                   quant: dict[str, Any]) -> DeploymentPlan:
    """The validated plan: layers, resources, quantization report and the source record."""
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
