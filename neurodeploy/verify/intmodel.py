"""The deployment plan's integer step as one CP-SAT model over an example's reachable levels.

Per layer k, neuron n and (aligned) step t, exactly as :mod:`neurodeploy.sims.kernel` runs it
with :class:`~neurodeploy.sims.kernel.ExactArithmetic` (every constant from the plan's
:class:`~neurodeploy.exporters.profiles.FixedPointFormat`; :mod:`.cpsat_ops` holds the
operations and their exact encodings)::

    dense: a = wrap_port(floor((W_eff · s) · 2^weight_exp))      W_eff: Lava's clip + truncate
    conv:  a = wrap_conv(conv(s, W))    (pool: a grouped conv; unrolled into an integer matrix)
    act  = wrap_port(a << activation_shift)
    u    = over_u(wrap_port(tz(u·f_u / 2^decay_bits) + act))
    v    = over_v(wrap_port(tz(v·f_v / 2^decay_bits) + u + (bias_mant << bias_exp)))
    talif: θ = sat_θ(θ + tz(θ_v·(v − NDS[min(t, T_nds − 1)]) / 2^shift))    (before the spike)
    s    = v ≻ θ;   v ← 0 (zero reset) or v − θ (subtract; always for ``sublif``)

Input: pixel p's level ``c_p ∈ R_p`` (:mod:`.levels`) as a thermometer code
``z_{p,i} = [c_p ≥ R_p[i]]`` (``z_{p,i+1} ⇒ z_{p,i}``); its spike at step t is
``[c_p > rank[t, p]]``, i.e. the thermometer bit of the smallest reachable level above the rank.

Delays: the emulator (and the Lava runner, which reads each layer's window back) decide on
the *aligned* recurrence — layer k at step t sees layer k−1's spikes of step t — so the
decision does not depend on the per-layer ``delay``; the encoding is the aligned recurrence.

Decision (the emulator's): output counts ``c_j = Σ_t s_out[t, j]``, prediction
``argmax_j c_j`` with ties to the lowest index. The model asks for a *misclassification*:
one of the booleans ``g_j`` (j ≠ y) holds, ``g_j ⇒ c_j − c_y ≥ [j > y]``; INFEASIBLE is a
proof of robustness. Targets whose interval already rules them out get no boolean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import FixedPointFormat
from neurodeploy.sims.kernel import conv_unfold, dense_effective_weights, prepare_layer
from neurodeploy.verify.cpsat_ops import Ops, Val, const
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.support import check_supported


@dataclass
class Encoding:
    """A built model: the CP-SAT ``ops.model``, the thermometer bits per pixel, the target
    booleans (empty: the intervals alone prove robustness) and size figures."""

    ops: Ops
    therm: list[list[Any]]
    targets: dict[int, Any]
    stats: dict[str, int] = field(default_factory=dict)
    #: per layer (spikes, v before the reset), each ``[T][N]`` of :class:`Val` (tests)
    layers: list[tuple[list[list[Val]], list[list[Val]]]] = field(default_factory=list)

    def levels_of(self, lv: PixelLevels, value: Any) -> np.ndarray:
        """Per-pixel levels of a solution (``value``: the solver's value function)."""
        out = np.empty(len(lv.levels), dtype=np.int64)
        for p, bits in enumerate(self.therm):
            i = sum(int(value(b)) for b in bits)   # thermometer: the count of true bits
            out[p] = lv.levels[p][i]
        return out


def _layer_matrix(L: PlanLayer, fmt: FixedPointFormat) -> np.ndarray:
    """The layer's synapse as an integer matrix ``[N_out, N_in]`` (dense: the effective
    weights; conv/pool: the convolution applied to the unit basis, exact in float64)."""
    if L.kind == "dense":
        return dense_effective_weights(L.weights, fmt)
    w = torch.as_tensor(np.asarray(L.weights).astype(np.float64))
    eye = torch.eye(L.in_size, dtype=torch.float64).reshape(L.in_size, *L.in_shape)
    cols = conv_unfold(eye, w, L).reshape(L.in_size, -1)
    return cols.T.round().to(torch.int64).numpy()


def _input_spikes(ops: Ops, lv: PixelLevels) -> tuple[list[list[Any]], list[list[Val]]]:
    """Thermometer bits per pixel and the input spikes ``[T][P]`` as :class:`Val`."""
    therm: list[list[Any]] = []
    T, P = lv.rank.shape
    spikes: list[list[Val]] = [[const(0)] * P for _ in range(T)]
    for p, levels in enumerate(lv.levels):
        bits = [ops.boolean() for _ in levels[1:]]
        for a, b in zip(bits[1:], bits[:-1], strict=True):
            ops.model.add_implication(a, b)
        therm.append(bits)
        for t in range(T):
            r = int(lv.rank[t, p])
            i = next((i for i, c in enumerate(levels) if c > r), None)
            if i is None:
                spikes[t][p] = const(0)
            elif i == 0:
                spikes[t][p] = const(1)
            else:
                spikes[t][p] = Val(bits[i - 1], 0, 1)
    return therm, spikes


def _synapse(ops: Ops, W: np.ndarray, L: PlanLayer, fmt: FixedPointFormat,
             s: list[Val]) -> list[Val]:
    """Synaptic input ``a`` of every neuron for the spikes ``s`` of one step."""
    ones = np.array([x.fixed and x.lo == 1 for x in s], dtype=bool)
    free = [i for i, x in enumerate(s) if not x.fixed]
    base = W[:, ones].sum(axis=1) if ones.any() else np.zeros(W.shape[0], dtype=np.int64)
    Wf = W[:, free]
    out = []
    for n in range(W.shape[0]):
        nz = np.nonzero(Wf[n])[0]
        acc = ops.linear([int(c) for c in Wf[n, nz]], [s[free[i]] for i in nz], int(base[n]))
        if L.kind == "dense":
            if L.weight_exp > 0:
                acc = ops.scale(acc, 1 << L.weight_exp)
            elif L.weight_exp < 0:
                acc = ops.floor_shift(acc, -L.weight_exp)
            acc = ops.wrap(acc, fmt.port_bits)
        else:
            acc = ops.wrap(acc, fmt.conv_output_bits)
        out.append(ops.wrap(ops.scale(acc, 1 << fmt.activation_shift), fmt.port_bits))
    return out


@dataclass
class _Neurons:
    """Per-neuron constants of one layer (the kernel's, flat plan order)."""

    f_u: np.ndarray
    f_v: np.ndarray
    bias: np.ndarray
    theta0: int
    talif: Any
    subtract: bool


def _neuron_constants(L: PlanLayer, fmt: FixedPointFormat) -> _Neurons:
    P = prepare_layer(L, fmt)
    n = L.out_size
    f_u = np.full(n, fmt.u_factor(L.du), dtype=np.int64)
    f_v = np.full(n, fmt.v_factor(L.dv), dtype=np.int64)
    if L.neuron != "talif":  # per-neuron decays (the kernel ignores them for TA-LIF)
        if "du" in L.neuron_arrays:
            f_u = np.array([fmt.u_factor(d) for d in np.ravel(L.neuron_arrays["du"])])
        if "dv" in L.neuron_arrays:
            f_v = np.array([fmt.v_factor(d) for d in np.ravel(L.neuron_arrays["dv"])])
    subtract = L.neuron == "sublif" or fmt.reset == "subtract"
    return _Neurons(f_u, f_v, np.asarray(P.bias).reshape(-1), int(P.vth_scaled), P.talif,
                    subtract)


def _layer(ops: Ops, L: PlanLayer, fmt: FixedPointFormat, s_in: list[list[Val]]
           ) -> tuple[list[list[Val]], list[list[Val]]]:
    """Spikes and pre-reset voltages ``[T][N]`` of layer L for input spikes ``[T][N_in]``."""
    W = _layer_matrix(L, fmt)
    C = _neuron_constants(L, fmt)
    N, D = L.out_size, fmt.decay_unity
    incl = fmt.spike_comparison == ">="
    u = [const(0)] * N
    v = [const(0)] * N
    th = [const(C.theta0)] * N
    out, volts = [], []
    for t, s in enumerate(s_in):
        act = _synapse(ops, W, L, fmt, s)
        row, vrow = [], []
        for n in range(N):
            un = ops.wrap(ops.add(ops.decay(u[n], int(C.f_u[n]), D), act[n]), fmt.port_bits)
            u[n] = ops.overflow(un, fmt.u_overflow, fmt.state_bits)
            vn = ops.add(ops.decay(v[n], int(C.f_v[n]), D), u[n], int(C.bias[n]))
            vn = ops.overflow(ops.wrap(vn, fmt.port_bits), fmt.v_overflow, fmt.state_bits)
            if C.talif is not None:
                th[n] = _talif_theta(ops, C.talif, th[n], vn, n, t)
            spk = ops.fire(vn, th[n], incl)
            v[n] = ops.reset(vn, spk, th[n], C.subtract, incl)
            row.append(spk)
            vrow.append(vn)
        out.append(row)
        volts.append(vrow)
    return out, volts


def _talif_theta(ops: Ops, tal: Any, theta: Val, v: Val, n: int, t: int) -> Val:
    """``sat_θ(θ + tz(θ_v·(v − NDS[min(t, T_nds − 1)]) / 2^shift))``."""
    nds = int(tal.nds[min(t, tal.nds.shape[0] - 1)].reshape(-1)[n])
    step = ops.decay(ops.add(v, -nds), int(tal.theta_v[n]), 1 << int(tal.shift))
    return ops.saturate(ops.add(theta, step), int(tal.theta_max))


def encode(plan: DeploymentPlan, lv: PixelLevels, y: int | None) -> Encoding:
    """The CP-SAT model "some reachable input makes the plan predict another class than y"
    (``y = None``: the step alone, no decision constraint — for exactness tests)."""
    check_supported(plan)
    ops = Ops()
    therm, spikes = _input_spikes(ops, lv)
    n_in_bits = sum(len(b) for b in therm)
    layers = []
    for L in plan.layers:
        spikes, volts = _layer(ops, L, plan.fixed_point, spikes)
        layers.append((spikes, volts))
    n_out = len(spikes[0])
    counts = [ops.add(*[spikes[t][j] for t in range(len(spikes))]) for j in range(n_out)]
    targets = {}
    for j in range(n_out if y is not None else 0):
        need = 1 if j > y else 0
        if j == y or counts[j].hi - counts[y].lo < need:
            continue
        g = ops.boolean()
        ops.model.add(counts[j].expr - counts[y].expr >= need).only_enforce_if(g)
        targets[j] = g
    if targets:
        ops.model.add_bool_or(list(targets.values()))
    proto = ops.model.proto
    stats = {"input_bits": n_in_bits, "free_pixels": lv.free_pixels,
             "free_hidden_spikes": ops.n_free_spikes, "targets": len(targets),
             "variables": len(proto.variables), "constraints": len(proto.constraints)}
    return Encoding(ops, therm, targets, stats, layers)
