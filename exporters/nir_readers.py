"""One converter per NIR node type: a NIR node → a discrete node under a semantics.

:data:`READERS` maps each supported NIR type to its converter (``read_lif``, ``read_if``,
``read_li``, ``read_i``, ``read_cubalif``, ``read_cubali`` for neurons; ``read_affine``,
``read_linear``, ``read_scale``, ``read_conv2d``, ``read_pool``, ``read_flatten``,
``read_input``, ``read_output`` for the rest); :func:`read_node` looks the converter up and
refuses unknown types, naming the node and what would make it work. A converter reads the
node's fields as float64 arrays under the :class:`ReadContext`'s
:class:`~neurodeploy.exporters.nir_semantics.Semantics` (Euler or exact discretisation, τ
units, reset, spike comparison, the producer's conventions such as rockpool's ``dt``
inferred from ``r = τ/dt·exp(−dt/τ)``) and snaps float round-off onto the valid range with a
note. The node types they build are in :mod:`~neurodeploy.exporters.nir_dgraph`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_dgraph import (
    DConv,
    DFlatten,
    DInput,
    DLinear,
    DNeuron,
    DNode,
    DOutput,
    DPool,
    DScale,
)
from neurodeploy.exporters.nir_semantics import Semantics

# ----------------------------------------------------------------------------- helpers


def _arr(node: nir.NIRNode, fname: str, where: str, allow_inf: bool = False) -> np.ndarray:
    v = getattr(node, fname, None)
    if v is None:
        raise ConfigError(f"{where}: field {fname!r} is missing")
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.asarray(v, dtype=np.float64)
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if np.any(bad):
        raise ConfigError(f"{where}: field {fname!r} holds {'NaN' if allow_inf else 'NaN/inf'} "
                          f"({int(bad.sum())} of {a.size} entries)")
    return a


def _tol(node: nir.NIRNode, *fields: str) -> float:
    """Relative tolerance for boundary snapping: float32 round-off when the producer wrote
    float32 (snntorch: β = 0.9 → r = 9.999997), float64 round-off otherwise."""
    for f in fields:
        v = getattr(node, f, None)
        if v is not None and np.asarray(v).dtype == np.float32:
            return 8 * float(np.finfo(np.float32).eps)
        if v is not None and hasattr(v, "dtype") and "float32" in str(v.dtype):
            return 8 * float(np.finfo(np.float32).eps)
    return 1e-9


def _pair(v: Any, what: str, where: str) -> tuple[int, int]:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise ConfigError(f"{where}: {what} {v!r} is not an int or a pair")


def _broadcast(a: np.ndarray, shape: tuple[int, ...], fname: str, where: str) -> np.ndarray:
    n = math.prod(shape)
    if a.size == 1:
        return np.full(shape, float(a.ravel()[0]))
    if a.size == n:
        return a.reshape(shape)
    raise ConfigError(f"{where}: field {fname!r} has {a.size} entries, the population has {n} "
                      f"neurons {shape}")


def _neuron_shape(node: nir.NIRNode, *fields: str) -> tuple[int, ...] | None:
    for f in fields:
        v = getattr(node, f, None)
        if v is not None and np.asarray(v).ndim >= 1 and np.asarray(v).size > 1:
            return tuple(int(s) for s in np.asarray(v).shape)
    return None


def _snap(a: np.ndarray, lo: float, hi: float, tol: float, what: str, where: str,
          notes: list[str]) -> np.ndarray:
    """Values within ``tol`` (relative) of [lo, hi] are snapped onto it; beyond, an error."""
    below = a < lo - tol * max(1.0, abs(lo))
    above = a > hi + tol * max(1.0, abs(hi))
    if np.any(below) or np.any(above):
        bad = a[below | above]
        raise ConfigError(f"{where}: {what} = {float(bad.ravel()[0]):g} is outside [{lo:g}, {hi:g}] "
                          f"(τ < dt gives a negative decay: use a smaller --dt or the producer's "
                          f"dt)")
    out = np.clip(a, lo, hi)
    if np.any(out != a):
        notes.append(f"{where}: {what} within {tol:.1e} of [{lo:g}, {hi:g}] snapped onto it "
                     f"(float round-off; max change {np.abs(out - a).max():.2e})")
    return out


def _snap_one(a: np.ndarray, tol: float, what: str, where: str, notes: list[str]) -> np.ndarray:
    close = np.abs(a - 1.0) <= tol
    if np.any(close & (a != 1.0)):
        notes.append(f"{where}: {what} within {tol:.1e} of 1 read as exactly 1 (float round-off,"
                     f" max |{what} − 1| = {np.abs(a[close] - 1).max():.2e})")
    return np.where(close, 1.0, a)


# ----------------------------------------------------------------------------- neuron readers


@dataclass
class ReadContext:
    """What a node converter needs: the semantics (``dt`` may be inferred on the way), notes."""

    semantics: Semantics
    notes: list[str]


def _taus(node: nir.NIRNode, names: tuple[str, ...], ctx: ReadContext, where: str
          ) -> list[np.ndarray]:
    out = []
    for n in names:
        t = _arr(node, n, where, allow_inf=True)
        if np.any(t <= 0):
            raise ConfigError(f"{where}: field {n!r} must be > 0 (got {t.min():g})")
        if ctx.semantics.tau_unit == "dt*tau":
            t = t / float(ctx.semantics.dt)
        out.append(t)
    return out


def _infer_dt_rockpool(tau: np.ndarray, r: np.ndarray, where: str) -> float:
    """Solve ``r = τ/dt·exp(−dt/τ)`` for dt (rockpool's convention; decreasing in dt)."""
    t, rr = float(tau.ravel()[0]), float(r.ravel()[0])
    if not (math.isfinite(t) and math.isfinite(rr) and rr > 0):
        raise ConfigError(f"{where}: cannot infer dt from τ = {t:g}, r = {rr:g}; pass --dt")
    lo, hi = 1e-12 * t, 50.0 * t
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if t / mid * math.exp(-mid / t) > rr:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _membrane(node: nir.NIRNode, tau: np.ndarray, r: np.ndarray, v_leak: np.ndarray,
              ctx: ReadContext, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α, g, b) of ``τ·dv/dt = (v_leak − v) + R·I`` under the semantics."""
    sem = ctx.semantics
    dt = float(sem.dt)
    tol = _tol(node, "tau", "tau_mem", "r")
    inf = np.isinf(tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(inf, 0.0, dt / np.where(inf, 1.0, tau))
    if sem.discretisation == "euler":
        alpha = _snap(1.0 - x, 0.0, 1.0, tol, "decay 1 − dt/τ", where, ctx.notes)
        if np.any(inf & ~np.isinf(r)):
            raise ConfigError(f"{where}: τ = ∞ with finite r gives input gain r·dt/τ = 0 (a "
                              f"neuron that ignores its input); write it as IF with r")
        # τ = r = ∞ (snntorch β = 1): r·dt/τ is the limit of the producer's r = τ/dt → 1
        with np.errstate(invalid="ignore"):
            gain = np.where(inf, 1.0, r * x)
        if np.any(inf):
            ctx.notes.append(f"{where}: τ = r = ∞ (no leak) read as an IF with gain 1 "
                             f"(r = τ/dt convention)")
        bias = np.where(inf, 0.0, v_leak * x)
    else:
        alpha = np.where(inf, 1.0, np.exp(-x))
        if sem.mem_gain == "one":
            gain = np.ones_like(alpha)
        else:
            gain = np.where(inf, 1.0, (1.0 - alpha) * r)
        bias = np.where(inf, 0.0, v_leak * (1.0 - alpha))
    if sem.mem_gain == "one" and sem.discretisation == "euler":
        gain = np.ones_like(alpha)
    gain = _snap_one(gain, tol, "input gain", where, ctx.notes)
    return alpha, gain, bias


def _spiking_fields(node: nir.NIRNode, shape: tuple[int, ...], ctx: ReadContext, where: str
                    ) -> dict[str, Any]:
    sem = ctx.semantics
    meta0 = getattr(node, "metadata", None) or {}
    ext = meta0.get("neurodeploy.neuron")
    if ext is not None and str(np.asarray(ext).item() if isinstance(ext, np.ndarray)
                               else ext) != "lif":
        raise ConfigError(f"{where}: metadata neurodeploy.neuron = {ext!r} (an adaptive-"
                          f"threshold extension this reader does not run); deploy the model's "
                          f"checkpoint with `export --model`, or compile the graph with "
                          f"exporters.compiler.compile_graph")
    theta = _broadcast(_arr(node, "v_threshold", where), shape, "v_threshold", where)
    v_reset = getattr(node, "v_reset", None)
    v_reset = (np.zeros(shape) if v_reset is None
               else _broadcast(_arr(node, "v_reset", where), shape, "v_reset", where))
    if sem.reset == "subtract" and np.any(v_reset != 0):
        raise ConfigError(f"{where}: v_reset ≠ 0 with subtract reset is ambiguous (subtract "
                          f"ignores v_reset); pass --reset zero to use v_reset")
    out = {"theta": theta, "v_reset": v_reset, "reset": sem.reset,
           "spike_op": sem.spike_op, "multi_spike": sem.multi_spike}
    meta = getattr(node, "metadata", None) or {}
    if sem.producer == "neurodeploy":  # our own files state the per-node semantics
        for key, allowed in (("reset", ("zero", "subtract")), ("spike_op", (">", ">="))):
            if key in meta:
                v = str(np.asarray(meta[key]).item() if isinstance(meta[key], np.ndarray)
                        else meta[key])
                if v not in allowed:
                    raise ConfigError(f"{where}: metadata {key} = {v!r} is not one of {allowed}")
                out[key] = v
        if "multi_spike" in meta:
            out["multi_spike"] = bool(np.asarray(meta["multi_spike"]).item())
    if out["multi_spike"] and np.any(theta <= 0):
        raise ConfigError(f"{where}: multi-spike neurons need v_threshold > 0")
    return out


def _v_floor(n: DNeuron, node: nir.NIRNode, ctx: ReadContext, where: str) -> None:
    """The lower bound on v: from our own files' metadata, or the producer's reading of the
    node (sinabs's ``from_nir`` builds ``IAFSqueeze(min_v_mem=−v_threshold)`` for an IF)."""
    meta = getattr(node, "metadata", None) or {}
    if ctx.semantics.producer == "neurodeploy" and "v_floor" in meta:
        n.v_floor = _broadcast(np.asarray(meta["v_floor"], dtype=np.float64), n.theta.shape,
                               "metadata v_floor", where)
    elif ctx.semantics.v_floor == "if_minus_theta" and n.kind == "if":
        n.v_floor = -n.theta.copy()
        ctx.notes.append(f"{where}: v ≥ −θ after each step (sinabs's from_nir reads an IF as "
                         f"IAFSqueeze(min_v_mem = −v_threshold))")


def _finish_reset(n: DNeuron, node: nir.NIRNode, ctx: ReadContext, where: str) -> DNeuron:
    """snntorch's next-step subtract ≡ immediate subtract of θ/α (α > 0); the v floor."""
    if n.theta is None:
        return n
    _v_floor(n, node, ctx, where)
    meta = getattr(node, "metadata", None) or {}
    if n.reset == "zero":
        if ctx.semantics.producer == "neurodeploy":
            n.zero_hold = bool(np.asarray(meta.get("zero_hold", 0)).item())
        elif ctx.semantics.zero_hold == "cuba_and_recurrent" and (
                n.kind == "cubalif" or "." in n.source):
            n.zero_hold = True
            ctx.notes.append(f"{where}: zero reset holds the membrane at 0 on the step after a "
                             f"spike (snntorch Synaptic/RLeaky)")
        return n
    if ctx.semantics.producer == "neurodeploy" and "reset_amount" in meta:
        n.reset_amount = _broadcast(np.asarray(meta["reset_amount"], dtype=np.float64),
                                    n.theta.shape, "metadata reset_amount", where)
        n.reset_timing = str(np.asarray(meta.get("reset_timing", "immediate")).item()
                             if isinstance(meta.get("reset_timing"), np.ndarray)
                             else meta.get("reset_timing", "immediate"))
        return n
    if n.reset == "subtract" and ctx.semantics.reset_timing == "next-step":
        n.reset_timing = "next-step"
        if np.any(n.alpha <= 0):
            raise ConfigError(f"{where}: next-step subtract reset with decay α = 0 subtracts "
                              f"from a membrane that is already forgotten; pass --reset zero")
        n.reset_amount = n.theta / n.alpha
    elif n.reset == "subtract":
        n.reset_amount = n.theta.copy()
    return n


def _v_init(v_leak: np.ndarray, ctx: ReadContext, node: Any = None) -> np.ndarray | None:
    meta = getattr(node, "metadata", None) or {}
    if ctx.semantics.producer == "neurodeploy" and "v_init" in meta:
        return _broadcast(np.asarray(meta["v_init"], dtype=np.float64), v_leak.shape,
                          "metadata v_init", "node")
    if ctx.semantics.v_init == "v_leak" and np.any(v_leak != 0):
        return v_leak.copy()
    return None


def _leaky(node: Any, name: str, ctx: ReadContext, where: str, shape_fields: tuple[str, ...],
           dt_note: str) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(shape, alpha, gain, bias, v_leak)`` of a LIF/LI node's leaky membrane (``dt`` inferred
    from its ``tau`` and ``r`` first when the file does not give one)."""
    shape = _neuron_shape(node, *shape_fields) or (1,)
    if ctx.semantics.dt is None:
        dt = _infer_dt_rockpool(_arr(node, "tau", where), _arr(node, "r", where), where)
        ctx.semantics = replace(ctx.semantics, dt=dt)
        ctx.notes.append(f"dt = {dt:.6g} s inferred from {name!r}{dt_note}")
    (tau,) = _taus(node, ("tau",), ctx, where)
    tau = _broadcast(tau, shape, "tau", where)
    r = _broadcast(_arr(node, "r", where, allow_inf=True), shape, "r", where)
    v_leak = _broadcast(_arr(node, "v_leak", where), shape, "v_leak", where)
    return (shape, *_membrane(node, tau, r, v_leak, ctx, where), v_leak)


def read_lif(node: nir.LIF, name: str, ctx: ReadContext) -> DNeuron:
    where = f"node {name!r} (LIF)"
    shape, alpha, gain, bias, v_leak = _leaky(node, name, ctx, where,
                                              ("tau", "r", "v_threshold", "v_leak"),
                                              ": r = τ/dt·exp(−dt/τ)")
    kind = "if" if np.all(alpha == 1.0) else "lif"
    n = DNeuron(source=name, in_shape=shape, out_shape=shape, kind=kind, alpha=alpha,
                gain=gain, bias=bias, v_init=_v_init(v_leak, ctx, node),
                **_spiking_fields(node, shape, ctx, where))
    return _finish_reset(n, node, ctx, where)


def read_if(node: nir.IF, name: str, ctx: ReadContext) -> DNeuron:
    where = f"node {name!r} (IF)"
    shape = _neuron_shape(node, "r", "v_threshold") or (1,)
    r = _broadcast(_arr(node, "r", where), shape, "r", where)
    n = DNeuron(source=name, in_shape=shape, out_shape=shape, kind="if",
                alpha=np.ones(shape), gain=_snap_one(r, _tol(node, "r"), "r", where, ctx.notes),
                bias=np.zeros(shape), **_spiking_fields(node, shape, ctx, where))
    return _finish_reset(n, node, ctx, where)


def read_li(node: nir.LI, name: str, ctx: ReadContext) -> DNeuron:
    where = f"node {name!r} (LI)"
    shape, alpha, gain, bias, v_leak = _leaky(node, name, ctx, where, ("tau", "r", "v_leak"), "")
    return DNeuron(source=name, in_shape=shape, out_shape=shape, kind="li", alpha=alpha,
                   gain=gain, bias=bias, v_init=_v_init(v_leak, ctx, node))


def read_i(node: nir.I, name: str, ctx: ReadContext) -> DNeuron:
    where = f"node {name!r} (I)"
    shape = _neuron_shape(node, "r") or (1,)
    r = _broadcast(_arr(node, "r", where), shape, "r", where)
    return DNeuron(source=name, in_shape=shape, out_shape=shape, kind="i",
                   alpha=np.ones(shape), gain=r, bias=np.zeros(shape))


def _cuba(node: Any, name: str, ctx: ReadContext, spiking: bool) -> DNeuron:
    typ = "CubaLIF" if spiking else "CubaLI"
    where = f"node {name!r} ({typ})"
    shape = _neuron_shape(node, "tau_mem", "tau_syn", "r", "v_threshold", "v_leak") or (1,)
    if ctx.semantics.dt is None:
        dt = _infer_dt_rockpool(_arr(node, "tau_mem", where), _arr(node, "r", where), where)
        ctx.semantics = replace(ctx.semantics, dt=dt)
        ctx.notes.append(f"dt = {dt:.6g} s inferred from {name!r}: r = τ/dt·exp(−dt/τ)")
    tau_mem, tau_syn = _taus(node, ("tau_mem", "tau_syn"), ctx, where)
    tau_mem = _broadcast(tau_mem, shape, "tau_mem", where)
    tau_syn = _broadcast(tau_syn, shape, "tau_syn", where)
    r = _broadcast(_arr(node, "r", where, allow_inf=True), shape, "r", where)
    v_leak = _broadcast(_arr(node, "v_leak", where), shape, "v_leak", where)
    w_in = _broadcast(_arr(node, "w_in", where), shape, "w_in", where)
    alpha, gain, bias = _membrane(node, tau_mem, r, v_leak, ctx, where)
    sem = ctx.semantics
    dt = float(sem.dt)
    tol = _tol(node, "tau_syn", "w_in")
    if np.any(np.isinf(tau_syn)):
        raise ConfigError(f"{where}: tau_syn = ∞ (a current that never decays) is not supported;"
                          f" use an I or IF node")
    x = dt / tau_syn
    if sem.discretisation == "euler":
        beta = _snap(1.0 - x, 0.0, 1.0, tol, "current decay 1 − dt/τ_syn", where, ctx.notes)
    else:
        beta = np.exp(-x)
    syn_gain = {"nir": w_in * x if sem.discretisation == "euler" else w_in * (1.0 - beta),
                "one": np.ones(shape), "decay": beta.copy()}[sem.syn_gain]
    syn_gain = _snap_one(syn_gain, tol, "current input gain", where, ctx.notes)
    fields = _spiking_fields(node, shape, ctx, where) if spiking else {}
    n = DNeuron(source=name, in_shape=shape, out_shape=shape,
                kind="cubalif" if spiking else "cubali", alpha=alpha, gain=gain, bias=bias,
                beta=beta, syn_gain=syn_gain, v_init=_v_init(v_leak, ctx, node), **fields)
    return _finish_reset(n, node, ctx, where)


def read_cubalif(node: nir.CubaLIF, name: str, ctx: ReadContext) -> DNeuron:
    return _cuba(node, name, ctx, spiking=True)


def read_cubali(node: nir.CubaLI, name: str, ctx: ReadContext) -> DNeuron:
    return _cuba(node, name, ctx, spiking=False)


# ----------------------------------------------------------------------------- synapse readers


def read_affine(node: nir.Affine, name: str, ctx: ReadContext) -> DLinear:
    where = f"node {name!r} (Affine)"
    w = _arr(node, "weight", where)
    if w.ndim != 2:
        raise ConfigError(f"{where}: weight must be 2-D (out, in), got shape {w.shape}")
    b = _arr(node, "bias", where).reshape(-1) if node.bias is not None else None
    if b is not None and b.size == 1 and w.shape[0] > 1:
        b = np.full(w.shape[0], float(b[0]))
    if b is not None and b.shape != (w.shape[0],):
        raise ConfigError(f"{where}: bias has shape {b.shape}, the weight has {w.shape[0]} rows")
    return DLinear(source=name, in_shape=(w.shape[1],), out_shape=(w.shape[0],), weight=w,
                   bias=b)


def read_linear(node: nir.Linear, name: str, ctx: ReadContext) -> DLinear:
    where = f"node {name!r} (Linear)"
    w = _arr(node, "weight", where)
    if w.ndim != 2:
        raise ConfigError(f"{where}: weight must be 2-D (out, in), got shape {w.shape}")
    return DLinear(source=name, in_shape=(w.shape[1],), out_shape=(w.shape[0],), weight=w)


def read_scale(node: nir.Scale, name: str, ctx: ReadContext) -> DScale:
    return DScale(source=name, scale=_arr(node, "scale", f"node {name!r} (Scale)"))


def read_conv2d(node: nir.Conv2d, name: str, ctx: ReadContext) -> DConv:
    where = f"node {name!r} (Conv2d)"
    w = _arr(node, "weight", where)
    if w.ndim != 4:
        raise ConfigError(f"{where}: weight must be 4-D (C_out, C_in/groups, kH, kW), got "
                          f"{w.shape}")
    b = _arr(node, "bias", where).reshape(-1) if node.bias is not None else None
    if b is not None and b.size == 1 and w.shape[0] > 1:
        b = np.full(w.shape[0], float(b[0]))
    if b is not None and b.shape != (w.shape[0],):
        raise ConfigError(f"{where}: bias has shape {b.shape}, expected ({w.shape[0]},)")
    kernel = (int(w.shape[2]), int(w.shape[3]))
    stride = _pair(node.stride, "stride", where)
    dil = _pair(node.dilation, "dilation", where)
    if isinstance(node.padding, str):
        if node.padding == "valid":
            pad = (0, 0)
        elif node.padding == "same" and stride == (1, 1) and all(
                (d * (k - 1)) % 2 == 0 for k, d in zip(kernel, dil, strict=True)):
            pad = (dil[0] * (kernel[0] - 1) // 2, dil[1] * (kernel[1] - 1) // 2)
        else:
            raise ConfigError(f"{where}: padding {node.padding!r} needs stride 1 and an odd "
                              f"effective kernel; write explicit padding")
    else:
        pad = _pair(node.padding, "padding", where)
    return DConv(source=name, weight=w, bias=b, stride=stride, padding=pad, dilation=dil,
                 groups=int(node.groups))


def read_pool(node: nir.SumPool2d | nir.AvgPool2d, name: str, ctx: ReadContext) -> DPool:
    mode = "avg" if isinstance(node, nir.AvgPool2d) else "sum"
    where = f"node {name!r} ({type(node).__name__})"
    return DPool(source=name, mode=mode, kernel=_pair(node.kernel_size, "kernel_size", where),
                 stride=_pair(node.stride, "stride", where),
                 padding=_pair(node.padding, "padding", where))


def read_flatten(node: nir.Flatten, name: str, ctx: ReadContext) -> DFlatten:
    return DFlatten(source=name, start_dim=int(node.start_dim), end_dim=int(node.end_dim))


def read_input(node: nir.Input, name: str, ctx: ReadContext) -> DInput:
    t = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if t is None or np.asarray(t).size == 0:
        raise ConfigError(f"Input node {name!r} has no shape")
    shape = tuple(int(v) for v in np.asarray(t).ravel())
    return DInput(source=name, in_shape=shape, out_shape=shape)


def read_output(node: nir.Output, name: str, ctx: ReadContext) -> DOutput:
    t = node.output_type.get("output") if isinstance(node.output_type, dict) else None
    shape = tuple(int(v) for v in np.asarray(t).ravel()) if t is not None and \
        np.asarray(t).size else None
    return DOutput(source=name, out_shape=shape)


READERS: dict[type, Callable[[Any, str, ReadContext], DNode]] = {
    nir.Input: read_input, nir.Output: read_output,
    nir.Affine: read_affine, nir.Linear: read_linear, nir.Scale: read_scale,
    nir.Conv2d: read_conv2d, nir.SumPool2d: read_pool, nir.AvgPool2d: read_pool,
    nir.Flatten: read_flatten,
    nir.LIF: read_lif, nir.IF: read_if, nir.LI: read_li, nir.I: read_i,
    nir.CubaLIF: read_cubalif, nir.CubaLI: read_cubali,
}
"""NIR node type → converter. Types not listed (Conv1d, Delay, Threshold, …) are refused."""

_WHAT_TO_DO = {
    "Conv1d": "write it as a Conv2d with height 1",
    "Delay": "synaptic delays other than the chip's fixed one are not supported",
    "Threshold": "write the spiking population as IF/LIF",
}


def read_node(node: nir.NIRNode, name: str, ctx: ReadContext) -> DNode:
    fn = READERS.get(type(node))
    if fn is None:
        hint = _WHAT_TO_DO.get(type(node).__name__, "")
        raise ConfigError(f"node {name!r}: NIR type {type(node).__name__} has no converter "
                          f"(supported: {', '.join(t.__name__ for t in READERS)})"
                          + (f"; {hint}" if hint else ""))
    return fn(node, name, ctx)
