"""Run a deployment plan as real Lava processes (``Loihi2SimCfg(select_tag="fixed_pt")``).

This module runs in the Lava environment (Python 3.10, lava-nc 0.10, numpy < 2) and imports
only numpy, ``neurodeploy.exporters.plan`` and — inside :func:`build_network` / :func:`run_plan`
— lava. The main side calls it in a subprocess (:func:`neurodeploy.sims.lava_env.run_lava`)::

    python -m neurodeploy.sims.lava_runner --plan P.npz --inputs IN.npz --out OUT.npz
                                           [--record-layers] [--raw] [--period P]

``IN.npz`` holds ``spikes``: uint8 ``[T, B, *input_shape]``. ``OUT.npz`` holds ``out_spikes``
``[T, B, classes]``, with ``--record-layers`` ``layer<k>`` ``[T, B, *out_shape_k]`` for every
layer, with ``--raw`` ``raw<k>`` ``[total_steps, *out_shape_k]`` (the sinks' global trains), and
``meta`` (JSON: timings, schedule).

Network (one Lava process per box, one OS process each at run time)::

    RingBuffer(source) → Dense|Conv → LIFReset → Dense|Conv → LIFReset → … → RingBuffer(sink)

TA-LIF layers (``neuron = "talif"``) use the custom process
:class:`neurodeploy.sims.lava_procs.talif.process.TALIF` (a ``LIFReset`` with an integer
adaptive threshold; its ``fixed_pt`` model is in ``lava_procs/talif/models.py``) with the same
reset interval / staggered offset as a ``LIFReset`` of that depth, so θ is set back to
``vth << 6`` exactly when u and v are zeroed, and NDS row τ is used at the layer's local step τ.

NIR neuron kinds (``sublif``, ``*_delayed``, ``*_rec``, ``*_cb``, per-neuron ``du``/``dv``, and the
non-spiking read-out ``li``/``li_cb``, whose process sends v each step: ``out_v``) use
:class:`neurodeploy.sims.lava_procs.sublif.process.SubLIF`. A layer's skip edges are
``DelayDense`` processes from the source population (or the source) into the same ``a_in``,
delayed by the main path's extra latency (:meth:`DeploymentPlan.skip_delay`). Convs with more
than 127 groups are regrouped (:func:`lava_conv_groups`: Lava's ``groups`` is int8).

Many samples, one compile (research/deploy_path.md §3.6): the samples are concatenated in the
source buffer with period ``P`` (sample i occupies global steps ``iP+1 … iP+T``). Each Dense /
Conv delays by one step, so layer d (1-indexed) sees sample i's step τ at global step
``iP + d + τ``; every ``LIFReset`` of depth d zeroes ``u`` and ``v`` at
``t mod P == (d + 1) mod P``, i.e. just before it integrates sample i's first input. Layer d's
local steps 1…T are then exactly the undelayed ("aligned") recurrence of the emulator, the
bias integrating from the reset onward. ``P = T`` suffices: the windows of consecutive samples
tile each layer's time line without overlap, and whatever sits in a Dense/Conv buffer at the
reset step already belongs to the new sample (tested: one long run equals one run per sample).

Layouts: plan tensors are PyTorch-ordered (``(C, H, W)``, cross-correlation); Lava's are the
full axis reversal (``(W, H, C)``) and Conv is a true convolution, so at this boundary
``w_lava = w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)`` and ``x_lava = x.transpose(2, 1, 0)``;
a Dense after a 3-D layer gets its columns permuted to Lava's flattening order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.exporters.plan import MEMBRANE_KINDS, DeploymentPlan, PlanError, PlanLayer
from neurodeploy.exporters.profiles import LAVA_0_10, FixedPointFormat

#: Exit codes of the command line (the main side maps them to errors).
EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_NO_LAVA = 0, 1, 2, 4

#: Lava's Dense / Conv add one step of synaptic delay (a_buff is sent before it is computed).
LAVA_SYNAPSE_DELAY = LAVA_0_10.synaptic_delay
#: Plan neuron kinds run by the ``SubLIF`` process (sims/lava_procs/sublif), with its reset.
_BASE_RESETS = {"lif": "zero", "sublif": "subtract", "sublif_delayed": "subtract_delayed",
                "lif_delayed": "zero_delayed"}
SUBLIF_RESETS = {**{k: v for k, v in _BASE_RESETS.items() if k != "lif"},
                 **{k + sfx: v for k, v in _BASE_RESETS.items() for sfx in ("_rec", "_cb")},
                 # non-spiking read-out: the process sends v each step (a graded value)
                 **{k: "none" for k in MEMBRANE_KINDS}}
#: Every plan neuron kind the Lava runner builds a process for.
LAVA_NEURONS = ("lif", "talif", *SUBLIF_RESETS)


def per_neuron_decays(L: PlanLayer) -> tuple[str, ...]:
    """The per-neuron decays (``du``, ``dv``) a non-TA-LIF layer carries in ``neuron_arrays``;
    such a layer runs in the ``SubLIF`` process (Lava's LIF has one decay per population)."""
    if L.neuron == "talif":
        return ()
    return tuple(k for k in ("du", "dv") if k in L.neuron_arrays)


# ----------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Global time line of ``num_samples`` samples run back to back in one Lava run.

    Global steps are 1-indexed (Lava's ``time_step``); sink index = global step − 1.

    Attributes
    ----------
    num_steps : T, steps per sample.
    period : P ≥ T, global steps between the starts of consecutive samples.
    num_samples : B.
    num_layers : L; layer d ∈ 1…L has pipeline depth d (one step per Dense/Conv).
    """

    num_steps: int
    period: int
    num_samples: int
    num_layers: int

    def __post_init__(self) -> None:
        if self.num_steps < 1 or self.num_samples < 1 or self.num_layers < 1:
            raise PlanError(f"schedule needs T, B, L >= 1, got {self}")
        if self.period < self.num_steps:
            raise PlanError(f"period {self.period} < num_steps {self.num_steps}: samples "
                            f"would overlap")

    @property
    def total_steps(self) -> int:
        """Last global step: the last sample's window at the deepest layer ends there."""
        return (self.num_samples - 1) * self.period + self.num_layers + self.num_steps

    def reset_offset(self, depth: int) -> int:
        """``LIFReset.reset_offset`` of the layer at ``depth`` (1-indexed)."""
        return (depth + 1) % self.period

    def source_train(self, spikes: np.ndarray) -> np.ndarray:
        """``[T, B, *S]`` spikes → ``[total_steps, *S]`` global train (sample i at iP … iP+T−1,
        0-indexed, i.e. global steps iP+1 … iP+T)."""
        T, B = spikes.shape[:2]
        train = np.zeros((self.total_steps,) + spikes.shape[2:], dtype=spikes.dtype)
        for i in range(B):
            train[i * self.period: i * self.period + T] = spikes[:, i]
        return train

    def window(self, raw: np.ndarray, depth: int) -> np.ndarray:
        """Global train ``[total_steps, *S]`` of the layer at ``depth`` → ``[T, B, *S]``.

        Sample i's local step τ (1…T) is global step ``iP + depth + τ``, index − 1.
        """
        T, P, B = self.num_steps, self.period, self.num_samples
        idx = np.arange(B)[None, :] * P + depth + np.arange(T)[:, None]  # [T, B]
        return raw[idx]


# ----------------------------------------------------------------------------- TA-LIF data


@dataclass(frozen=True)
class TALIFFixed:
    """Integer TA-LIF data of a plan layer (``neuron = "talif"``), flat plan neuron order::

        θ = sat_bits(θ + (theta_v · (v − nds[min(τ, T_nds − 1)])) >>₀ shift)   before firing

    theta_v : unsigned mantissas ``[N]`` (float θ_v ≈ theta_v / 2^shift);
    nds : ``[T_nds, N]`` in v units; shift : ``neuron_params["theta_v_shift"]``;
    bits : signed θ width ``neuron_params["theta_bits"]`` (default the format's
    ``talif_state_bits``).
    """

    theta_v: np.ndarray
    nds: np.ndarray
    shift: int
    bits: int

    @property
    def theta_max(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @classmethod
    def from_layer(cls, L: PlanLayer, fmt: FixedPointFormat) -> TALIFFixed:
        """Read and check the TA-LIF fields of ``L`` against the plan's format ``fmt``;
        :class:`PlanError` names what is wrong."""
        where = f"plan layer {L.name}"
        if fmt.talif_state_bits is None or fmt.talif_theta_v_bits is None \
                or fmt.talif_theta_v_shift_max is None:
            raise PlanError(f"{where}: TA-LIF layer in a plan whose fixed-point format has no "
                            f"TA-LIF widths (the profile has no programmable neurons)")
        try:
            shift = int(L.neuron_params["theta_v_shift"])
            tv = np.asarray(L.neuron_arrays["theta_v"]).astype(np.int64).reshape(-1)
            nds = np.asarray(L.neuron_arrays["nds"]).astype(np.int64)
        except KeyError as exc:
            raise PlanError(f"{where}: TA-LIF (neuron 'talif') layer lacks {exc} (needs neuron_params "
                            f"theta_v_shift, neuron_arrays theta_v and nds)") from exc
        bits = int(L.neuron_params.get("theta_bits", fmt.talif_state_bits))
        n = L.out_size
        if tv.size != n or nds.ndim < 1 or nds.shape[0] < 1 or nds.size != nds.shape[0] * n:
            raise PlanError(f"{where}: TA-LIF theta_v {tv.shape} / nds {nds.shape} do not match "
                            f"{n} neurons")
        if not 0 <= shift <= fmt.talif_theta_v_shift_max:
            raise PlanError(f"{where}: TA-LIF theta_v_shift {shift} outside "
                            f"[0, {fmt.talif_theta_v_shift_max}]")
        if not fmt.state_bits <= bits <= fmt.port_bits:
            raise PlanError(f"{where}: TA-LIF theta_bits {bits} outside "
                            f"[{fmt.state_bits}, {fmt.port_bits}]")
        if tv.min(initial=0) < 0 or tv.max(initial=0) >= 2**fmt.talif_theta_v_bits:
            raise PlanError(f"{where}: TA-LIF theta_v mantissas outside "
                            f"[0, 2^{fmt.talif_theta_v_bits})")
        lim = 2 ** (bits - 1) - 1
        if np.abs(nds).max(initial=0) > lim:
            raise PlanError(f"{where}: TA-LIF nds outside the signed {bits}-bit range")
        return cls(tv, nds.reshape(nds.shape[0], n), shift, bits)


# ----------------------------------------------------------------------------- layouts


def to_lava_layout(x: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` axes: plan ``(C, H, W)`` → Lava ``(W, H, C)`` (involution)."""
    lead = x.ndim - ndim
    axes = tuple(range(lead)) + tuple(reversed(range(lead, x.ndim)))
    return np.transpose(x, axes)


def lava_conv_weight(w: np.ndarray) -> np.ndarray:
    """PyTorch cross-correlation ``(C_out, C_in/g, kH, kW)`` → Lava ``(C_out, kW, kH, C_in/g)``.

    Lava's Conv computes a true convolution on WHC tensors, hence the spatial flip
    (research/deploy_path.md §3.3, verified bit-exact there and in tests/test_lava_equivalence).
    """
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def lava_dense_weight(w: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Permute the columns of ``w [N_out, prod(in_shape)]`` to Lava's flattening order.

    Lava holds a plan tensor of shape ``(C, H, W)`` as ``(W, H, C)`` and flattens that in C
    order; column p of the Lava matrix must be the plan column of the same neuron.
    """
    if len(in_shape) <= 1:
        return np.ascontiguousarray(w)
    perm = to_lava_layout(np.arange(int(np.prod(in_shape))).reshape(in_shape), len(in_shape))
    return np.ascontiguousarray(w[:, perm.ravel()])


#: Lava 0.10's ``PyConvModelFixed`` declares ``groups`` as int8 (conv/models.py:29): 128 or
#: more groups wrap negative and the Conv emits nothing.
LAVA_MAX_CONV_GROUPS = 127


def lava_conv_groups(w: np.ndarray, groups: int) -> tuple[np.ndarray, int]:
    """``(w', groups')`` equal to the grouped conv ``(w, groups)`` with ``groups' ≤``
    :data:`LAVA_MAX_CONV_GROUPS` (PyTorch layout ``[C_out, C_in/groups, kH, kW]``).

    ``q`` consecutive groups merge into one whose kernel is block-diagonal (zeros between
    the old groups), ``q`` the smallest divisor of ``groups`` that brings it to ≤ 127: an
    output channel still reads exactly its old group's input channels, so the sums are
    identical (zeros add nothing) and the conv output wrap is unchanged."""
    g = int(groups)
    if g <= LAVA_MAX_CONV_GROUPS:
        return w, g
    q = next(d for d in range(2, g + 1) if g % d == 0 and g // d <= LAVA_MAX_CONV_GROUPS)
    c_out, cin_g, kh, kw = w.shape
    cout_g = c_out // g
    out = np.zeros((c_out, q * cin_g, kh, kw), dtype=w.dtype)
    for o in range(c_out):
        k = (o // cout_g) % q  # the old group's place inside the merged one
        out[o, k * cin_g:(k + 1) * cin_g] = w[o]
    return out, g // q


def _lava_conv(w: np.ndarray, L: PlanLayer, in_l: tuple[int, ...], msg_bits: int, name: str):
    """A Lava ``Conv`` of layer ``L``'s geometry with PyTorch-layout weights ``w``."""
    from lava.proc.conv.process import Conv

    w_g, groups = lava_conv_groups(np.asarray(w), int(L.groups))
    return Conv(weight=lava_conv_weight(w_g).astype(np.int32), input_shape=in_l,
                padding=(int(L.padding[1]), int(L.padding[0])),
                stride=(int(L.stride[1]), int(L.stride[0])),
                groups=groups, num_message_bits=msg_bits, name=name)


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(s) for s in reversed(shape))


def check_plan_supported(plan: DeploymentPlan, lava_format: bool = True) -> None:
    """Refuse what Lava's processes cannot run exactly (raises :class:`PlanError`).

    ``lava_format = False`` skips the check that the plan's fixed-point format is Lava 0.10's
    (the emulator and twin interpret any format; the layer checks still apply).
    """
    fmt = plan.fixed_point
    core = {f: v for f, v in fmt.to_dict().items() if not f.startswith("talif_")}
    lava = {f: v for f, v in LAVA_0_10.to_dict().items() if not f.startswith("talif_")}
    if lava_format and core != lava:
        diff = {f: (core[f], lava[f]) for f in core if core[f] != lava[f]}
        raise PlanError(f"the plan's fixed-point format differs from the arithmetic of Lava "
                        f"0.10's bit-accurate models in {diff} (plan value, Lava value): "
                        f"Lava cannot run it exactly")
    for i, L in enumerate(plan.layers):
        where = f"plan layer {i} ({L.name})"
        if L.neuron not in LAVA_NEURONS:
            raise PlanError(f"{where}: neuron {L.neuron!r} is not supported by the Lava runner "
                            f"(only {', '.join(LAVA_NEURONS)})")
        if L.neuron == "talif":
            TALIFFixed.from_layer(L, fmt)
        if L.delay != LAVA_SYNAPSE_DELAY:
            raise PlanError(f"{where}: delay {L.delay} — Lava Dense/Conv have a fixed delay of "
                            f"{LAVA_SYNAPSE_DELAY}")
        if L.kind in ("conv", "pool") and L.weight_exp != 0 and L.weights_lo is None:
            raise PlanError(f"{where}: weight_exp {L.weight_exp} on a {L.kind} layer — Lava's "
                            f"Conv ignores weight_exp (lava#803); fold it into the mantissas")
        if not -(2**15) <= int(L.bias_mant.min(initial=0)) <= int(L.bias_mant.max(initial=0)) \
                < 2**15:
            raise PlanError(f"{where}: bias_mant outside int16 (Lava stores it as int16)")
        if L.kind == "dense" and len(L.out_shape) != 1:
            raise PlanError(f"{where}: dense layer with out_shape {L.out_shape}; expected (N,)")
        if not 0 <= L.bias_exp <= fmt.bias_exp_max:
            raise PlanError(f"{where}: bias_exp {L.bias_exp} outside [0, {fmt.bias_exp_max}]")


# ----------------------------------------------------------------------------- network


@dataclass
class LavaNetwork:
    """The Lava processes built from a plan (kept so a caller can compile once, run many)."""

    source: Any
    synapses: list[Any]
    neurons: list[Any]
    sinks: dict[int, Any]
    schedule: Schedule
    skips: list[Any] | None = None  # the skip edges' DelayDense processes


def build_network(plan: DeploymentPlan, spikes: np.ndarray, schedule: Schedule,
                  record_layers: bool) -> LavaNetwork:
    """Create (not compile) the Lava processes for ``plan`` with ``spikes`` in the source."""
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset

    check_plan_supported(plan)
    src = Source(data=_source_data(schedule, spikes, len(plan.input_shape)))
    prev_port, prev_shape = src.s_out, tuple(plan.input_shape)
    synapses, neurons, sinks, skips = [], [], {}, []
    n = len(plan.layers)
    for k, L in enumerate(plan.layers):
        depth = k + 1
        # graded spikes from the layer before (its payload bits), else binary (0)
        msg_bits = int(plan.layers[k - 1].neuron_params.get("graded_bits", 0)) if k else 0
        if L.kind == "dense":
            syn = Dense(weights=lava_dense_weight(np.asarray(L.weights), prev_shape),
                        weight_exp=int(L.weight_exp),
                        num_weight_bits=plan.fixed_point.weight_bits,
                        num_message_bits=msg_bits, name=f"{L.name}_dense")
            port = prev_port if len(prev_shape) == 1 else prev_port.flatten()
            port.connect(syn.s_in)
            out_port = syn.a_out
        else:  # conv / pool: a grouped Conv
            in_l = lava_shape(L.in_shape)
            # Lava 0.10's Conv ignores a weight exponent (lava#803): a second synapse group's
            # first matrix is handed over with its exponent applied (mantissa · 2^weight_exp,
            # what the exponent does on the chip); the plan keeps mantissa and exponent
            w_main = np.asarray(L.weights).astype(np.int64) << max(0, int(L.weight_exp))
            syn = _lava_conv(w_main, L, in_l, msg_bits, f"{L.name}_conv")
            if tuple(syn.output_shape) != lava_shape(L.out_shape):
                raise PlanError(f"plan layer {k} ({L.name}): Lava Conv output "
                                f"{tuple(syn.output_shape)} != reversed out_shape {L.out_shape}")
            port = prev_port if len(prev_shape) == 3 else prev_port.reshape(in_l)
            port.connect(syn.s_in)
            out_port = syn.a_out
        shape_l = lava_shape(L.out_shape)
        bias = to_lava_layout(np.asarray(L.bias_mant).reshape(L.out_shape), len(L.out_shape))
        common = dict(shape=shape_l, du=int(L.du), dv=int(L.dv), vth=int(L.vth),
                      bias_mant=np.ascontiguousarray(bias).astype(np.int32),
                      bias_exp=int(L.bias_exp), reset_interval=schedule.period,
                      reset_offset=schedule.reset_offset(depth))
        if L.neuron == "talif":
            from neurodeploy.sims.lava_procs.talif.process import TALIF

            tal = TALIFFixed.from_layer(L, plan.fixed_point)
            nd = len(L.out_shape)
            tv = to_lava_layout(tal.theta_v.reshape(L.out_shape), nd)
            nds = to_lava_layout(tal.nds.reshape((tal.nds.shape[0],) + tuple(L.out_shape)), nd)
            lif = TALIF(**common, theta_v=np.ascontiguousarray(tv).astype(np.int32),
                        nds=np.ascontiguousarray(nds).astype(np.int32),
                        theta_v_shift=tal.shift, theta_bits=tal.bits,
                        threshold_shift=plan.fixed_point.threshold_shift,
                        name=f"{L.name}_talif")
        elif L.neuron in SUBLIF_RESETS or per_neuron_decays(L):
            from neurodeploy.sims.lava_procs.sublif.process import SubLIF

            w_rec = a_bias = None
            # flat plan order (C,H,W) → Lava's reversed layout
            perm = to_lava_layout(np.arange(L.out_size).reshape(L.out_shape),
                                  len(L.out_shape)).reshape(-1)
            for key in per_neuron_decays(L):  # Lava layout, shape_l
                common[key] = np.ascontiguousarray(to_lava_layout(
                    np.asarray(L.neuron_arrays[key]).reshape(L.out_shape),
                    len(L.out_shape))).astype(np.int32)
            if "w_rec" in L.neuron_arrays:
                w = np.asarray(L.neuron_arrays["w_rec"])
                w_rec = np.ascontiguousarray(w[np.ix_(perm, perm)]).astype(np.int32)
            if "a_bias" in L.neuron_arrays:
                a_bias = np.ascontiguousarray(
                    np.asarray(L.neuron_arrays["a_bias"])[perm]).astype(np.int32)
            for key in ("w_rec_lo", "a_bias_mant"):  # plan-v3 precision fields
                if key in L.neuron_arrays:
                    a = np.asarray(L.neuron_arrays[key])
                    common[key] = np.ascontiguousarray(
                        a[np.ix_(perm, perm)] if a.ndim == 2 else a[perm]).astype(np.int32)
            for key in ("w_rec_exp", "a_bias_exp"):
                if key in L.neuron_params:
                    common[key] = int(L.neuron_params[key])
            lif = SubLIF(**common, reset=SUBLIF_RESETS.get(L.neuron, "zero"),  # "lif": zero
                         w_rec=w_rec, a_bias=a_bias, v_min=L.neuron_params.get("v_min"),
                         graded_bits=L.neuron_params.get("graded_bits"),
                         name=f"{L.name}_{L.neuron}")
        else:
            lif = LIFReset(**common, name=f"{L.name}_lif")
        out_port.connect(lif.a_in)
        if L.weights_lo is not None:  # the second synapse group: same input, exponent 0
            if L.kind == "dense":
                lo = Dense(weights=lava_dense_weight(np.asarray(L.weights_lo), prev_shape),
                           weight_exp=0, num_weight_bits=plan.fixed_point.weight_bits,
                           num_message_bits=msg_bits, name=f"{L.name}_dense_lo")
            else:
                lo = _lava_conv(np.asarray(L.weights_lo), L, lava_shape(L.in_shape), msg_bits,
                                f"{L.name}_conv_lo")
            port.connect(lo.s_in)  # the main synapse's source port
            lo.a_out.connect(lif.a_in)
            skips.append(lo)
        for j, w in zip(L.skip_from, L.skip_weights, strict=True):
            # a skip edge: layer j's spikes wait Σ delay of layers j+1 … k−1 more steps in a
            # DelayDense (delay d: sent d + 1 steps later) and meet the main input in a_in
            src_port, src_shape = ((src.s_out, tuple(plan.input_shape)) if j < 0 else
                                   (neurons[j].s_out, tuple(plan.layers[j].out_shape)))
            skip = DelayDense(weights=lava_dense_weight(np.asarray(w), src_shape),
                              delays=plan.skip_delay(k, j), weight_exp=int(L.weight_exp),
                              num_weight_bits=plan.fixed_point.weight_bits,
                              name=f"{L.name}_skip{j}")
            (src_port if len(src_shape) == 1 else src_port.flatten()).connect(skip.s_in)
            skip.a_out.connect(lif.a_in)
            skips.append(skip)
        if record_layers or k == n - 1:
            sink = Sink(shape=shape_l, buffer=schedule.total_steps)
            lif.s_out.connect(sink.a_in)
            sinks[k] = sink
        synapses.append(syn)
        neurons.append(lif)
        prev_port, prev_shape = lif.s_out, tuple(L.out_shape)
    return LavaNetwork(src, synapses, neurons, sinks, schedule, skips)


def _source_data(schedule: Schedule, spikes: np.ndarray, in_nd: int) -> np.ndarray:
    """Source buffer in Lava layout: ``[*reversed(S), total_steps]`` int32."""
    train = to_lava_layout(schedule.source_train(spikes), in_nd)  # [total, *reversed(S)]
    return np.ascontiguousarray(np.moveaxis(train, 0, -1)).astype(np.int32)


@dataclass
class RunOutput:
    """What :func:`run_plan` returns (all spikes uint8, plan layouts, time-first)."""

    out_spikes: np.ndarray
    layer_spikes: dict[int, np.ndarray]
    raw: dict[int, np.ndarray]
    meta: dict[str, Any]
    #: a membrane read-out's v ``[T, B, classes]`` (int32 v units), else None
    out_v: np.ndarray | None = None


def run_plan(plan: DeploymentPlan, spikes: np.ndarray, record_layers: bool = False,
             raw: bool = False, period: int | None = None) -> RunOutput:
    """Build, compile once and run ``plan`` on all samples of ``spikes [T, B, *input_shape]``.

    Returns each layer's spikes over its per-sample window (see module docstring).
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    spikes = _check_spikes(plan, spikes)
    T, B = spikes.shape[:2]
    schedule = Schedule(T, int(period or T), B, len(plan.layers))
    t0 = time.perf_counter()
    net = build_network(plan, spikes, schedule, record_layers or raw)
    t1 = time.perf_counter()
    run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
    executable = net.source.compile(run_cfg)
    t2 = time.perf_counter()
    net.source.create_runtime(executable=executable)
    t3 = time.perf_counter()
    try:
        net.source.run(condition=RunSteps(num_steps=schedule.total_steps))
        t4 = time.perf_counter()
        data = {k: np.asarray(s.data.get()) for k, s in net.sinks.items()}
        t5 = time.perf_counter()
    finally:
        net.source.stop()
    t6 = time.perf_counter()
    n = len(plan.layers)
    layer_spikes, raw_out = {}, {}
    out_v = None
    for k, d in data.items():
        L = plan.layers[k]
        train = to_lava_layout(np.moveaxis(d, -1, 0), len(L.out_shape))  # [total, *plan shape]
        if L.neuron in MEMBRANE_KINDS:  # the read-out's sink holds v, not spikes
            out_v = schedule.window(np.ascontiguousarray(train.astype(np.int32)), k + 1)
            train = np.zeros_like(train)
        n_max = (1 << int(L.neuron_params["graded_bits"])) - 1 \
            if "graded_bits" in L.neuron_params else 1  # graded: counts 0 … 2^b − 1
        if train.min(initial=0) < 0 or train.max(initial=0) > n_max:
            raise RuntimeError(f"layer {k}: sink holds values outside 0 … {n_max}")
        train = np.ascontiguousarray(train.astype(np.uint8))
        if record_layers or k == n - 1:
            layer_spikes[k] = schedule.window(train, k + 1)
        if raw:
            raw_out[k] = train
    meta = {
        "num_steps": T, "num_samples": B, "period": schedule.period,
        "total_steps": schedule.total_steps,
        "reset_offsets": [schedule.reset_offset(k + 1) for k in range(n)],
        "timings_s": {"build": t1 - t0, "compile": t2 - t1, "runtime_init": t3 - t2,
                      "run": t4 - t3, "read": t5 - t4, "stop": t6 - t5, "total": t6 - t0},
    }
    if out_v is not None:
        meta["readout"] = "membrane"
    return RunOutput(layer_spikes[n - 1], layer_spikes if record_layers else {}, raw_out, meta,
                     out_v)


def _check_spikes(plan: DeploymentPlan, spikes: np.ndarray) -> np.ndarray:
    spikes = np.asarray(spikes)
    want = tuple(plan.input_shape)
    if spikes.ndim != len(want) + 2 or tuple(spikes.shape[2:]) != want:
        raise PlanError(f"inputs must be [T, B, {', '.join(map(str, want))}], got "
                        f"{tuple(spikes.shape)}")
    if spikes.shape[0] < 1 or spikes.shape[1] < 1:
        raise PlanError(f"inputs need T >= 1 and B >= 1, got {tuple(spikes.shape)}")
    if not np.isin(spikes, (0, 1)).all():
        raise PlanError("inputs must be binary spikes (0/1)")
    return spikes.astype(np.uint8)


# ----------------------------------------------------------------------------- files / CLI


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: File in the run folder naming this runner's multiprocessing temp dir (``pymp-*``), so a
#: caller that kills the runner (timeout, death) removes it too; a finished runner removes it.
MP_TEMPDIR_NOTE = "mp_tempdir.txt"


def note_mp_tempdir(note: Path) -> None:
    """Create multiprocessing's temp dir now (Lava's processes inherit it) and name it in
    ``note``: its finaliser does not run when the runner is killed."""
    from multiprocessing import util

    note.write_text(util.get_temp_dir())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neurodeploy.sims.lava_runner",
                                description="Run a deployment plan in Lava (fixed_pt).")
    p.add_argument("--plan", required=True)
    p.add_argument("--inputs", required=True, help=".npz with 'spikes' [T, B, *input_shape]")
    p.add_argument("--out", required=True)
    p.add_argument("--record-layers", action="store_true")
    p.add_argument("--raw", action="store_true", help="also save the global sink trains")
    p.add_argument("--period", type=int, default=None, help="steps per sample (default T)")
    args = p.parse_args(argv)
    note_mp_tempdir(Path(args.out).parent / MP_TEMPDIR_NOTE)
    try:
        import lava  # noqa: F401
    except ImportError as exc:
        print(f"error: lava is not importable in {sys.executable}: {exc}", file=sys.stderr)
        return EXIT_NO_LAVA
    try:
        plan = DeploymentPlan.load(args.plan)
        try:
            with np.load(args.inputs, allow_pickle=False) as z:
                spikes = z["spikes"]
        except Exception as exc:  # noqa: BLE001 - reported as bad input
            raise PlanError(f"inputs {args.inputs!r} cannot be read: {exc}") from exc
        res = run_plan(plan, spikes, args.record_layers, args.raw, args.period)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    arrays = {"out_spikes": res.out_spikes, "meta": np.array(json.dumps(res.meta))}
    if res.out_v is not None:
        arrays["out_v"] = res.out_v
    for k, v in res.layer_spikes.items():
        arrays[f"layer{k}"] = v
    for k, v in res.raw.items():
        arrays[f"raw{k}"] = v
    _atomic_savez(Path(args.out), arrays)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
