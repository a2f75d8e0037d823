"""Any NIR graph → a discrete-time graph (:class:`DGraph`), by node-type tables.

Reading is three steps, each a small pure function:

1. :func:`load_nir` — ``nir.read`` (falling back to ``type_check=False`` and repairing the
   batch dimension some exporters write into ``Input``/``Output``, rockpool 3.1.0), then
   :func:`flatten_subgraphs` (nested ``NIRGraph`` nodes, e.g. snntorch's ``RLeaky``, become
   ``outer.inner`` nodes of one flat graph).
2. :func:`to_dgraph` — one converter per NIR node type (:data:`READERS`) turns each node into a
   discrete node (:class:`DLinear`, :class:`DConv`, :class:`DPool`, :class:`DFlatten`,
   :class:`DNeuron`, …) under a :class:`~neurodeploy.exporters.nir_semantics.Semantics`; shapes
   are inferred along the graph. Unknown node types and out-of-range values raise
   :class:`ConfigError` naming the node, the field and what would make it work.
3. :mod:`~neurodeploy.exporters.nir_rewrite` — exact rewrites (each tested for equality).

The reverse direction (:data:`WRITERS`: discrete node → standard NIR node under the neurodeploy
convention, Euler with ``r·dt/τ = g``) writes the *canonical* graph the compiler reads.

Neuron parameters are per-neuron float64 arrays; edges may form cycles (recurrent connections:
an edge that closes a cycle reads the previous step's output, as every producer simulates it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.exporters.nir_semantics import Semantics

# ----------------------------------------------------------------------------- discrete nodes


@dataclass
class DNode:
    """Base of the discrete nodes: ``source`` names the NIR node(s) it came from."""

    source: str
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None


@dataclass
class DInput(DNode):
    pass


@dataclass
class DOutput(DNode):
    pass


@dataclass
class DLinear(DNode):
    """``y = W·x + b`` on a flat input (Affine, Linear)."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    bias: np.ndarray | None = None


@dataclass
class DScale(DNode):
    """``y = s ⊙ x`` (elementwise, ``s`` broadcast to the input shape)."""

    scale: np.ndarray = field(default_factory=lambda: np.ones(1))


@dataclass
class DConv(DNode):
    """PyTorch ``conv2d`` (cross-correlation, CHW) with bias per output channel."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1, 1)))
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class DPool(DNode):
    """Sum or average pooling (``mode`` ``sum`` / ``avg``; avg divides by kH·kW)."""

    mode: str = "sum"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)


@dataclass
class DFlatten(DNode):
    start_dim: int = 0
    end_dim: int = -1


@dataclass
class DNeuron(DNode):
    """One population, per-neuron arrays of its shape (module docstring of nir_semantics)::

        I ← β·I + g_syn·x  (if beta is not None; else I = x);   v ← α·v + g·I + b
        n = spikes(v; θ, spike_op, multi_spike);  reset zero: v ← v_reset, subtract: v ← v − n·θ_r
        v ← max(v, v_floor)   (after the reset; only where ``v_floor`` is set: sinabs's
                               ``min_v_mem``, which its ``from_nir`` sets to −θ for IF nodes)

    ``kind`` is the NIR type it came from (``lif``, ``if``, ``li``, ``i``, ``cubalif``,
    ``cubali``); ``theta is None`` for the non-spiking ``li``/``i``/``cubali``.
    """

    kind: str = "lif"
    alpha: np.ndarray = field(default_factory=lambda: np.ones(1))
    gain: np.ndarray = field(default_factory=lambda: np.ones(1))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1))
    theta: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    beta: np.ndarray | None = None
    syn_gain: np.ndarray | None = None
    reset: str = "zero"
    reset_amount: np.ndarray | None = None
    reset_timing: str = "immediate"
    spike_op: str = ">"
    multi_spike: bool = False
    v_init: np.ndarray | None = None
    zero_hold: bool = False
    v_floor: np.ndarray | None = None

    @property
    def spiking(self) -> bool:
        return self.theta is not None

    @property
    def size(self) -> int:
        return int(self.alpha.size)


NEURON_ARRAYS = ("alpha", "gain", "bias", "theta", "v_reset", "beta", "syn_gain", "reset_amount",
                 "v_init", "v_floor")
"""The per-neuron array fields of :class:`DNeuron`."""


@dataclass
class DGraph:
    """A discrete graph: nodes, edges (cycles allowed), the semantics it was read with, notes."""

    nodes: dict[str, DNode]
    edges: list[tuple[str, str]]
    semantics: Semantics
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return next(k for k, v in self.nodes.items() if isinstance(v, DInput))

    @property
    def output_name(self) -> str:
        return next(k for k, v in self.nodes.items() if isinstance(v, DOutput))

    def preds(self, name: str) -> list[str]:
        return [s for s, d in self.edges if d == name]

    def succs(self, name: str) -> list[str]:
        return [d for s, d in self.edges if s == name]

    def order(self) -> tuple[list[str], set[tuple[str, str]]]:
        """(evaluation order, back edges): reverse DFS post-order from the input; an edge into
        a node still on the DFS stack closes a cycle and reads the previous step's value."""
        return topo_order(self.nodes, self.edges, self.input_name)

    def neurons(self) -> list[str]:
        order, _ = self.order()
        return [n for n in order if isinstance(self.nodes[n], DNeuron)]


def topo_order(nodes: dict[str, Any], edges: list[tuple[str, str]], start: str
               ) -> tuple[list[str], set[tuple[str, str]]]:
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for s, d in edges:
        succ[s].append(d)
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    stack: list[tuple[str, int]] = [(start, 0)]
    state[start] = 1
    while stack:
        node, i = stack.pop()
        if i < len(succ[node]):
            stack.append((node, i + 1))
            nxt = succ[node][i]
            st = state.get(nxt, 0)
            if st == 1:
                back.add((node, nxt))
            elif st == 0:
                state[nxt] = 1
                stack.append((nxt, 0))
        else:
            state[node] = 2
            post.append(node)
    unreached = sorted(set(nodes) - set(post))
    if unreached:
        raise ConfigError(f"NIR nodes {unreached} cannot be reached from the Input node "
                          f"{start!r}")
    return post[::-1], back


# ----------------------------------------------------------------------------- reading files


def _strip_batch(t: Any, inner: tuple[int, ...] | None) -> Any:
    a = np.asarray(t).ravel()
    if inner is not None and a.size == len(inner) + 1 and a[0] == 1 and tuple(a[1:]) == inner:
        return a[1:]
    return t


def load_nir(path: str | os.PathLike) -> tuple[nir.NIRGraph, list[str]]:
    """Read a ``.nir`` file; returns (graph, notes about repairs made).

    The first attempt is ``nir.read`` as is. Files whose ``Input``/``Output`` shapes carry a
    batch dimension of 1 (rockpool 3.1.0's exporter) fail NIR's type check; they are read with
    ``type_check=False`` and the leading 1 is dropped where the next node's own shape proves
    it is a batch dimension (a note says so).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"NIR file {str(p)!r} does not exist")
    try:
        g = nir.read(str(p))
    except AssertionError as exc:
        raise CheckpointError(f"NIR file {str(p)!r} holds a node type nir {nir.__version__} "
                              f"does not know ({exc or 'unknown type'})") from exc
    except ValueError as exc:
        first = exc
    except Exception as exc:
        raise CheckpointError(f"NIR file {str(p)!r} cannot be read: {type(exc).__name__}: "
                              f"{exc}") from exc
    else:
        return check_graph_arrays(g, f"NIR file {str(p)!r}"), []  # real numbers only
    try:
        g = nir.read(str(p), type_check=False)
    except Exception as exc:
        raise CheckpointError(f"NIR file {str(p)!r} cannot be read: {first}") from exc
    notes = [f"{p.name}: NIR's type check failed ({first}); read without it"]
    fixed = _repair_batch_dims(check_graph_arrays(g, f"NIR file {str(p)!r}"), notes)
    return fixed, notes


def check_graph_arrays(g: nir.NIRGraph, where: str) -> nir.NIRGraph:
    """``g`` unchanged if every array field of every node (subgraphs included) holds real
    numbers; bytes, strings, objects or complex numbers raise CheckpointError (exit 2)
    instead of being cast (a complex weight would silently lose its imaginary part)."""
    from neurodeploy.safeload import check_real_array

    stack = [(where, g)]
    while stack:
        at, graph = stack.pop()
        for name, node in graph.nodes.items():
            if isinstance(node, nir.NIRGraph):
                stack.append((f"{at} subgraph {name!r}", node))
                continue
            for field_name, value in vars(node).items():
                if isinstance(value, np.ndarray | bytes | bytearray):
                    check_real_array(value, f"{at}: node {name!r} field {field_name!r}",
                                     CheckpointError)
    return g


def _node_in_len(node: nir.NIRNode) -> tuple[int, ...] | None:
    w = getattr(node, "weight", None)
    if isinstance(node, nir.Affine | nir.Linear) and w is not None:
        return (int(np.asarray(w).shape[1]),)
    return None


def _repair_batch_dims(g: nir.NIRGraph, notes: list[str]) -> nir.NIRGraph:
    nodes = dict(g.nodes)
    for name, node in g.nodes.items():
        if isinstance(node, nir.Input):
            nxt = [nodes[d] for s, d in g.edges if s == name]
            inner = _node_in_len(nxt[0]) if len(nxt) == 1 else None
            t = node.input_type.get("input")
            new = _strip_batch(t, inner)
            if new is not t:
                nodes[name] = nir.Input(input_type={"input": np.asarray(new)},
                                        metadata=node.metadata)
                notes.append(f"Input {name!r}: dropped the batch dimension of shape "
                             f"{list(np.asarray(t))}")
        elif isinstance(node, nir.Output):
            prv = [nodes[s] for s, d in g.edges if d == name]
            t = node.output_type.get("output")
            inner = None
            if len(prv) == 1:
                p = prv[0]
                for f in ("tau", "tau_mem", "r", "v_threshold"):
                    if getattr(p, f, None) is not None and np.asarray(getattr(p, f)).ndim >= 1:
                        inner = tuple(np.asarray(getattr(p, f)).shape)
                        break
            new = _strip_batch(t, inner)
            if new is not t:
                nodes[name] = nir.Output(output_type={"output": np.asarray(new)},
                                         metadata=node.metadata)
                notes.append(f"Output {name!r}: dropped the batch dimension of shape "
                             f"{list(np.asarray(t))}")
    try:
        return nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=g.metadata,
                            type_check=False)
    except Exception as exc:  # pragma: no cover - nir internals
        raise ConfigError(f"NIR graph could not be rebuilt: {exc}") from exc


def flatten_subgraphs(g: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, nir.NIRNode],
                                                                   list[tuple[str, str]]]:
    """Inline nested ``NIRGraph`` nodes: node ``inner`` of subgraph ``sub`` becomes
    ``sub.inner``; edges into ``sub`` go to its Input's successors, edges out of ``sub`` leave
    from its Output's predecessors. The sub-Input/Output nodes disappear (exact: they are
    identities)."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for name, node in g.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = flatten_subgraphs(node, prefix=f"{full}.")
            ins = [k for k, v in sub_nodes.items() if isinstance(v, nir.Input)
                   and k.count(".") == full.count(".") + 1]
            outs = [k for k, v in sub_nodes.items() if isinstance(v, nir.Output)
                    and k.count(".") == full.count(".") + 1]
            if len(ins) != 1 or len(outs) != 1:
                raise ConfigError(f"subgraph {full!r} has {len(ins)} Input and {len(outs)} "
                                  f"Output nodes; one of each is needed to inline it")
            entry[full] = [d for s, d in sub_edges if s == ins[0]]
            exit_[full] = [s for s, d in sub_edges if d == outs[0]]
            for k, v in sub_nodes.items():
                if k not in (ins[0], outs[0]):
                    nodes[k] = v
            edges.extend((s, d) for s, d in sub_edges if s != ins[0] and d != outs[0])
            direct = [(s, d) for s, d in sub_edges if s == ins[0] and d == outs[0]]
            if direct:
                raise ConfigError(f"subgraph {full!r} connects its Input straight to its Output")
        else:
            nodes[full] = node
    for s, d in g.edges:
        srcs = exit_.get(f"{prefix}{s}", [f"{prefix}{s}"])
        dsts = entry.get(f"{prefix}{d}", [f"{prefix}{d}"])
        edges.extend((a, b) for a in srcs for b in dsts)
    return nodes, edges


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


def read_lif(node: nir.LIF, name: str, ctx: ReadContext) -> DNeuron:
    where = f"node {name!r} (LIF)"
    shape = _neuron_shape(node, "tau", "r", "v_threshold", "v_leak") or (1,)
    if ctx.semantics.dt is None:
        dt = _infer_dt_rockpool(_arr(node, "tau", where), _arr(node, "r", where), where)
        ctx.semantics = replace(ctx.semantics, dt=dt)
        ctx.notes.append(f"dt = {dt:.6g} s inferred from {name!r}: r = τ/dt·exp(−dt/τ)")
    (tau,) = _taus(node, ("tau",), ctx, where)
    tau = _broadcast(tau, shape, "tau", where)
    r = _broadcast(_arr(node, "r", where, allow_inf=True), shape, "r", where)
    v_leak = _broadcast(_arr(node, "v_leak", where), shape, "v_leak", where)
    alpha, gain, bias = _membrane(node, tau, r, v_leak, ctx, where)
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
    shape = _neuron_shape(node, "tau", "r", "v_leak") or (1,)
    if ctx.semantics.dt is None:
        dt = _infer_dt_rockpool(_arr(node, "tau", where), _arr(node, "r", where), where)
        ctx.semantics = replace(ctx.semantics, dt=dt)
        ctx.notes.append(f"dt = {dt:.6g} s inferred from {name!r}")
    (tau,) = _taus(node, ("tau",), ctx, where)
    tau = _broadcast(tau, shape, "tau", where)
    r = _broadcast(_arr(node, "r", where, allow_inf=True), shape, "r", where)
    v_leak = _broadcast(_arr(node, "v_leak", where), shape, "v_leak", where)
    alpha, gain, bias = _membrane(node, tau, r, v_leak, ctx, where)
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


# ----------------------------------------------------------------------------- shapes


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def infer_shapes(g: DGraph) -> None:
    """Fill ``in_shape``/``out_shape`` along the evaluation order (back edges ignored)."""
    order, back = g.order()
    for name in order:
        node = g.nodes[name]
        where = f"node {node.source!r} ({type(node).__name__[1:]})"
        if isinstance(node, DInput):
            continue
        pre = [s for s in g.preds(name) if (s, name) not in back]
        shapes = {g.nodes[s].out_shape for s in pre}
        if len(shapes) != 1:
            raise ConfigError(f"{where}: inputs of different shapes {sorted(map(str, shapes))}")
        shape = shapes.pop()
        if isinstance(node, DLinear):
            n_in = node.weight.shape[1]
            if math.prod(shape) != n_in or len(shape) != 1:
                if math.prod(shape) == n_in:
                    raise ConfigError(f"{where}: takes a flat input of {n_in}, gets {shape} "
                                      f"(insert a Flatten node)")
                raise ConfigError(f"{where}: weight {node.weight.shape} does not take an input "
                                  f"of shape {shape}")
            node.in_shape, node.out_shape = shape, (node.weight.shape[0],)
        elif isinstance(node, DScale):
            if node.scale.size not in (1, math.prod(shape)):
                raise ConfigError(f"{where}: scale has {node.scale.size} entries, the input "
                                  f"{shape}")
            node.in_shape = node.out_shape = shape
        elif isinstance(node, DConv):
            w = node.weight
            if len(shape) != 3 or w.shape[1] * node.groups != shape[0]:
                raise ConfigError(f"{where}: weight {w.shape} (groups {node.groups}) does not "
                                  f"take an input of shape {shape} (C, H, W)")
            ho = _conv_out(shape[1], w.shape[2], node.stride[0], node.padding[0],
                           node.dilation[0])
            wo = _conv_out(shape[2], w.shape[3], node.stride[1], node.padding[1],
                           node.dilation[1])
            node.in_shape, node.out_shape = shape, (int(w.shape[0]), ho, wo)
        elif isinstance(node, DPool):
            if len(shape) != 3:
                raise ConfigError(f"{where}: pooling needs a (C, H, W) input, got {shape}")
            ho = _conv_out(shape[1], node.kernel[0], node.stride[0], node.padding[0])
            wo = _conv_out(shape[2], node.kernel[1], node.stride[1], node.padding[1])
            node.in_shape, node.out_shape = shape, (shape[0], ho, wo)
        elif isinstance(node, DFlatten):
            nd = len(shape)
            s = node.start_dim % nd if nd else 0
            e = node.end_dim % nd if nd else 0
            out = shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:]
            node.in_shape, node.out_shape = shape, out
        elif isinstance(node, DNeuron):
            if math.prod(shape) != node.size:
                if node.size == 1:  # scalar parameters: broadcast to the population
                    for f in NEURON_ARRAYS:
                        v = getattr(node, f)
                        if v is not None:
                            setattr(node, f, np.full(shape, float(v.ravel()[0])))
                else:
                    raise ConfigError(f"{where}: {node.size} neurons, its input has shape "
                                      f"{shape}")
            for f in NEURON_ARRAYS:
                v = getattr(node, f)
                if v is not None:
                    setattr(node, f, v.reshape(shape))
            node.in_shape = node.out_shape = shape
        elif isinstance(node, DOutput):
            if node.out_shape is not None and math.prod(node.out_shape) != math.prod(shape):
                raise ConfigError(f"Output node {node.source!r} has shape {node.out_shape}, the "
                                  f"graph produces {shape}")
            node.in_shape = node.out_shape = shape
        if any(v <= 0 for v in node.out_shape):
            raise ConfigError(f"{where}: empty output shape {node.out_shape}")
        for s in g.preds(name):
            if (s, name) in back and g.nodes[s].out_shape is not None and \
                    math.prod(g.nodes[s].out_shape) != math.prod(node.in_shape):
                raise ConfigError(f"recurrent edge {g.nodes[s].source!r} → {node.source!r}: "
                                  f"shape {g.nodes[s].out_shape} ≠ {node.in_shape}")


# ----------------------------------------------------------------------------- graph → DGraph


def to_dgraph(graph: nir.NIRGraph, semantics: Semantics, notes: list[str] | None = None
              ) -> DGraph:
    """Convert a NIR graph (subgraphs inlined) node by node under ``semantics``.

    Raises
    ------
    ConfigError
        Naming the node and field for unknown node types and out-of-range values.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise ConfigError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    flat_nodes, flat_edges = flatten_subgraphs(graph)
    notes = list(notes or [])
    nested = [k for k, v in graph.nodes.items() if isinstance(v, nir.NIRGraph)]
    if nested:
        notes.append(f"inlined nested subgraphs {nested}")
    ins = [k for k, v in flat_nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in flat_nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise ConfigError(f"NIR graph must have exactly one Input and one Output node, got "
                          f"inputs {ins} and outputs {outs}")
    for s, d in flat_edges:
        if s not in flat_nodes or d not in flat_nodes:
            raise ConfigError(f"NIR edge ({s!r}, {d!r}) names a node that does not exist")
    ctx = ReadContext(semantics=semantics, notes=notes)
    # neurons before the rest so that an inferred dt is known when it matters (rockpool)
    nodes: dict[str, DNode] = {}
    for k, v in flat_nodes.items():
        nodes[k] = read_node(v, k, ctx)
    meta = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    g = DGraph(nodes=nodes, edges=list(dict.fromkeys(flat_edges)), semantics=ctx.semantics,
               notes=ctx.notes, metadata=meta)
    infer_shapes(g)
    return g


TAU_FIELDS = ("tau", "tau_mem", "tau_syn")


def file_taus(graph: nir.NIRGraph) -> list[np.ndarray]:
    """Every time constant (τ, τ_mem, τ_syn) of the graph's neuron nodes, subgraphs included."""
    nodes, _ = flatten_subgraphs(graph)
    out = []
    for node in nodes.values():
        for f in TAU_FIELDS:
            v = getattr(node, f, None)
            if v is not None and not isinstance(node, nir.Input | nir.Output):
                out.append(np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v,
                                      dtype=np.float64))
    return out


def read_graph(graph_or_path: nir.NIRGraph | str | os.PathLike, producer: str | None = None,
               reset: str | None = None, dt: float | None = None, readout: str | None = None,
               rewrite: bool = True, tau_units: str | None = None,
               v_floor: str | None = None) -> DGraph:
    """File or graph → semantics (τ units decided per file,
    :func:`~neurodeploy.exporters.nir_semantics.decide_tau_unit`) → :class:`DGraph` → exact
    rewrites (the whole import)."""
    from neurodeploy.exporters.nir_rewrite import rewrite_all
    from neurodeploy.exporters.nir_semantics import decide_tau_unit, resolve_semantics

    notes: list[str] = []
    if isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    else:
        graph, notes = load_nir(graph_or_path)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    sem, sem_notes = resolve_semantics(meta, producer=producer, reset=reset, dt=dt,
                                       readout=readout, v_floor=v_floor)
    where = (Path(graph_or_path).name if not isinstance(graph_or_path, nir.NIRGraph)
             else "the graph")
    sem, tau_notes = decide_tau_unit(sem, file_taus(graph), tau_units, where)
    sem_notes += tau_notes
    g = to_dgraph(graph, sem, notes + sem_notes)
    if g.nodes[g.neurons()[-1]].kind in ("li", "cubali", "i") and g.semantics.readout != \
            "membrane":
        g.semantics = replace(g.semantics, readout="membrane")
        g.notes.append("readout membrane: the last population does not spike")
    return rewrite_all(g) if rewrite else g


# ----------------------------------------------------------------------------- DGraph → NIR


def _euler_tau(alpha: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(alpha < 1.0, dt / np.maximum(1.0 - alpha, 1e-300), np.inf)


def _neuron_meta(n: DNeuron) -> dict[str, Any]:
    meta: dict[str, Any] = {"reset": n.reset}
    if n.spiking:
        meta["spike_op"] = n.spike_op
        meta["multi_spike"] = int(n.multi_spike)
        if n.reset_amount is not None and not np.array_equal(n.reset_amount, n.theta):
            meta["reset_amount"] = np.asarray(n.reset_amount, dtype=np.float64)
        if n.reset == "subtract":
            meta["reset_timing"] = n.reset_timing
    if n.v_init is not None:
        meta["v_init"] = np.asarray(n.v_init, dtype=np.float64)
    if n.v_floor is not None:
        meta["v_floor"] = np.asarray(n.v_floor, dtype=np.float64)
    if n.zero_hold:
        meta["zero_hold"] = 1
        meta["reset_timing"] = "next-step"
    return meta


def write_neuron(n: DNeuron, name: str, dt: float) -> nir.NIRNode:
    """One population in the neurodeploy convention (Euler at ``dt``: τ = dt/(1 − α),
    r = g/(1 − α) so that r·dt/τ = g, v_leak = b/(1 − α); IF for α = 1 with r = g)."""
    where = f"node {n.source!r}"
    meta = _neuron_meta(n)
    a = n.alpha
    if n.kind in ("if", "i") or np.all(a == 1.0):
        if np.any(n.bias != 0):
            raise ConfigError(f"{where}: a non-leaky population with a constant input b ≠ 0 has "
                              f"no NIR form (IF has no v_leak); feed it through an Affine bias")
        if n.beta is not None:
            raise ConfigError(f"{where}: a current-based neuron with τ_mem = ∞ has no NIR form")
        if not n.spiking:
            return nir.I(r=n.gain.copy(), metadata=meta)
        return nir.IF(r=n.gain.copy(), v_threshold=n.theta.copy(), v_reset=n.v_reset.copy(),
                      metadata=meta)
    if np.any(a == 1.0):
        raise ConfigError(f"{where}: mixes α = 1 and α < 1 neurons; split the population")
    tau = _euler_tau(a, dt)
    one_minus = 1.0 - a
    r = n.gain / one_minus
    v_leak = n.bias / one_minus
    if n.beta is not None:
        if np.any(n.beta >= 1.0):
            raise ConfigError(f"{where}: current decay β = 1 (τ_syn = ∞) has no NIR form")
        tau_syn = dt / (1.0 - n.beta)
        w_in = n.syn_gain / (1.0 - n.beta)
        if n.spiking:
            return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak,
                               v_threshold=n.theta.copy(), v_reset=n.v_reset.copy(), w_in=w_in,
                               metadata=meta)
        return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=w_in,
                          metadata=meta)
    if not n.spiking:
        return nir.LI(tau=tau, r=r, v_leak=v_leak, metadata=meta)
    return nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=n.theta.copy(),
                   v_reset=n.v_reset.copy(), metadata=meta)


def write_linear(n: DLinear, name: str, dt: float) -> nir.NIRNode:
    if n.bias is None:
        return nir.Linear(weight=n.weight.copy())
    return nir.Affine(weight=n.weight.copy(), bias=n.bias.copy())


def write_conv(n: DConv, name: str, dt: float) -> nir.NIRNode:
    b = n.bias if n.bias is not None else np.zeros(n.weight.shape[0])
    return nir.Conv2d(input_shape=tuple(n.in_shape[1:]), weight=n.weight.copy(),
                      stride=n.stride, padding=n.padding, dilation=n.dilation, groups=n.groups,
                      bias=b.copy())


def write_pool(n: DPool, name: str, dt: float) -> nir.NIRNode:
    cls = nir.AvgPool2d if n.mode == "avg" else nir.SumPool2d
    return cls(kernel_size=np.array(n.kernel), stride=np.array(n.stride),
               padding=np.array(n.padding))


def write_scale(n: DScale, name: str, dt: float) -> nir.NIRNode:
    return nir.Scale(scale=np.broadcast_to(n.scale, n.in_shape).copy())


def write_flatten(n: DFlatten, name: str, dt: float) -> nir.NIRNode:
    return nir.Flatten(input_type={"input": np.array(n.in_shape)}, start_dim=n.start_dim,
                       end_dim=n.end_dim)


def write_input(n: DInput, name: str, dt: float) -> nir.NIRNode:
    return nir.Input(input_type={"input": np.array(n.out_shape)})


def write_output(n: DOutput, name: str, dt: float) -> nir.NIRNode:
    return nir.Output(output_type={"output": np.array(n.out_shape)})


WRITERS: dict[type, Callable[[Any, str, float], nir.NIRNode]] = {
    DInput: write_input, DOutput: write_output, DLinear: write_linear, DConv: write_conv,
    DPool: write_pool, DScale: write_scale, DFlatten: write_flatten, DNeuron: write_neuron,
}
"""Discrete node type → standard NIR node (the neurodeploy convention)."""


def to_canonical_nir(g: DGraph, dt: float | None = None) -> nir.NIRGraph:
    """The graph in the neurodeploy convention (Euler at ``dt``, reset etc. in node metadata).

    Reading it back with ``producer="neurodeploy"`` gives the same discrete graph (tested);
    the compiler reads it with :func:`~neurodeploy.exporters.nir_export.parse_graph`.
    """
    dt = float(dt if dt is not None else (g.semantics.dt or 1e-4))
    nodes = {k: WRITERS[type(v)](v, k, dt) for k, v in g.nodes.items()}
    sem = g.semantics
    meta = {"dt": dt, "producer": "neurodeploy (canonical form)",
            "source_producer": sem.producer, "source_dt": float(sem.dt or dt),
            "reset": sem.reset, "readout": sem.readout, "tau_unit": sem.tau_unit,
            "semantics": sem.describe(), "notes": "\n".join(g.notes)}
    try:
        return nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=meta, type_check=False)
    except Exception as exc:  # pragma: no cover - nir internals
        raise ConfigError(f"NIR rejected the canonical graph: {exc}") from exc
