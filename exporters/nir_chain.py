"""A NIR graph → the compiler's chain of synapse → neuron layers (:func:`parse_graph`).

Holds the chain (:class:`ChainLayer`, :class:`NIRChain`), the walk of the graph (the time
step :func:`graph_dt`; the main path Input → … → Output, ``neuron → Linear/Affine/Conv2d →
same neuron`` recurrent loops and ``Input/neuron → [Flatten] → Affine/Linear → neuron`` skip
edges, :func:`_chain_order_skips`), the assembly of each layer in :func:`parse_graph` (input
gains and ``v_leak`` folded into weights and biases, recurrent and skip weights, per-neuron
decays) and the node-metadata readers (reset hints and timing, TA-LIF's ``theta_v``/``nds``
extension, ``v_floor``). The per-node readers it calls are in
:mod:`~neurodeploy.exporters.nir_chain_nodes`; the mapping itself is documented in
:mod:`~neurodeploy.exporters.nir_export`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_chain_nodes import (
    DEFAULT_DT,
    NEURON_READERS,
    RESET_ZERO,
    SYNAPSE_READERS,
    TALIF,
    TALIF_META_KEY,
    Decay,
    _check_reset_hint,
    _current_decay,
    _float_tol,
    _neuron_params,
    _per_neuron,
    _read_dense,
    _Synapse,
    _unrolled_conv,
)

# ----------------------------------------------------------------------------- parsed chain


@dataclass(frozen=True)
class ChainLayer:
    """One synapse + neuron pair of a feed-forward NIR chain, in float64.

    ``kind`` is ``fc``, ``conv``, ``avgpool`` or ``sumpool``; ``neuron`` is ``lif`` (α < 1),
    ``if`` (α = 1) or ``li`` (non-spiking, last layer only). ``gain`` (R·dt/τ) is already
    folded into ``weight``/``bias`` when it differs from 1 (per neuron: row by row).
    Per-neuron decays: ``alphas`` / ``betas`` hold one value per neuron (flat C·H·W order)
    when they differ within the population, and ``alpha`` / ``beta`` then hold the largest
    (the worst case for the compiler's headroom checks); None when the population has one.
    ``skips``: skip edges into this (dense) layer, ``(j, W_skip)`` with ``j`` the source's chain
    index (0: the input; j < index − 1) and ``W_skip`` float ``[N_out, size of j's output]``
    (gain folded; its bias is in ``bias``); ``skip_labels`` name the edges for messages.
    """

    index: int
    kind: str
    synapse_node: str
    neuron_node: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    flatten_before: bool
    weight: np.ndarray | None
    bias: np.ndarray | None
    alpha: float
    theta: float | None
    neuron: str
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    alpha_hint: float | None = None
    theta_hint: float | None = None
    theta_v: np.ndarray | None = None
    nds: np.ndarray | None = None
    reset: str = RESET_ZERO
    beta: float | None = None
    reset_timing: str = "immediate"
    rec_weight: np.ndarray | None = None
    rec_node: str | None = None
    cur_bias: np.ndarray | None = None
    alphas: np.ndarray | None = None
    betas: np.ndarray | None = None
    skips: tuple[tuple[int, np.ndarray], ...] = ()
    skip_labels: tuple[str, ...] = ()
    v_floor: float | None = None
    multi_spike: bool = False

    @property
    def is_talif(self) -> bool:
        """True for a TA-LIF population (``theta_v`` ``[*out_shape]``, ``nds`` ``[T, *out_shape]``)."""
        return self.theta_v is not None

    @property
    def label(self) -> str:
        return f"layer {self.index} ({self.synapse_node} → {self.neuron_node})"


@dataclass(frozen=True)
class NIRChain:
    """A NIR graph read as a chain of :class:`ChainLayer` (what SpikingNet and Lava run)."""

    input_shape: tuple[int, ...]
    layers: tuple[ChainLayer, ...]
    dt: float
    metadata: dict[str, Any] = field(default_factory=dict)


def graph_dt(graph: nir.NIRGraph) -> float:
    """The time step stored in the graph metadata, or the convention 1e-4 s."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if "dt" not in meta:
        return DEFAULT_DT
    try:
        dt = float(np.asarray(meta["dt"]).item())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"graph metadata dt = {meta['dt']!r} is not a number") from exc
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"graph metadata dt = {dt!r} must be a positive number")
    return dt


def _recurrent_loops(graph: nir.NIRGraph, succ: dict[str, list[str]]) -> dict[str, str]:
    """``{neuron: linear node}`` for every ``neuron → Linear/Affine → same neuron`` loop (a
    recurrent connection: the only cycle the compiler's chain accepts)."""
    loops: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if type(node) not in NEURON_READERS:
            continue
        for d in succ[name]:
            if isinstance(graph.nodes[d], nir.Affine | nir.Linear | nir.Conv2d) and \
                    succ[d] == [name]:
                if name in loops:
                    raise ConfigError(f"node {name!r} has two recurrent loops "
                                      f"({loops[name]!r}, {d!r}); sum them into one")
                loops[name] = d
    return loops


def _chain_order(graph: nir.NIRGraph) -> list[str]:
    return _chain_order_rec(graph)[0]


@dataclass(frozen=True)
class _SkipEdge:
    """A skip edge of the chain: main-path ``source`` (Input or a neuron) → [``flatten``] →
    ``synapse`` (Affine/Linear) → main-path neuron ``target``."""

    source: str
    synapse: str
    target: str
    flatten: str | None = None

    @property
    def label(self) -> str:
        mid = f"{self.flatten!r} → " if self.flatten else ""
        return f"skip edge {self.source!r} → {mid}{self.synapse!r} → {self.target!r}"


def _chain_order_rec(graph: nir.NIRGraph) -> tuple[list[str], dict[str, str]]:
    """(Input → … → Output path, recurrent loops ``{neuron: linear node}``)."""
    order, loops, skips = _chain_order_skips(graph)
    if skips:
        e = skips[0]
        raise ConfigError(f"{e.label}: a node fed by two upstream nodes; use parse_graph")
    return order, loops


def _chain_order_skips(graph: nir.NIRGraph
                       ) -> tuple[list[str], dict[str, str], list[_SkipEdge]]:
    """(main path Input → … → Output, recurrent loops ``{neuron: linear node}``, skip edges).

    The main path is the longest path from Input to Output (loops removed); every other node
    must sit on a skip edge: ``Input or neuron → [Flatten] → Affine/Linear → neuron`` with
    both ends on the main path (a residual add into one population)."""
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"NIR graph must have exactly one Input and one Output node, got "
                          f"inputs {inputs} and outputs {outputs}")
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise ConfigError(f"NIR edge ({src!r}, {dst!r}) names a node that does not exist")
        succ[src].append(dst)
    loops = _recurrent_loops(graph, succ)
    fwd = {k: [d for d in v if loops.get(k) != d and not (k in loops.values() and
                                                          loops.get(d) == k)]
           for k, v in succ.items()}
    fwd = {k: v for k, v in fwd.items() if k not in loops.values()}
    depth: dict[str, int] = {}
    state: dict[str, int] = {}

    def longest(node: str) -> int:  # steps to Output along the longest path (−∞: none)
        if node in depth:
            return depth[node]
        if state.get(node) == 1:
            raise ConfigError(f"NIR graph has a cycle through {node!r}; recurrent graphs are "
                              f"not supported except neuron → Linear/Affine → same neuron")
        state[node] = 1
        best = 0 if node == outputs[0] else -(10**9)
        for d in fwd.get(node, []):
            best = max(best, 1 + longest(d))
        state[node] = 2
        depth[node] = best
        return best

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(graph.nodes) + 100))
    try:
        if longest(inputs[0]) < 0:
            raise ConfigError("NIR graph has no path from Input to Output")
    finally:
        sys.setrecursionlimit(limit)
    order = [inputs[0]]
    side: list[tuple[str, str]] = []
    while order[-1] != outputs[0]:
        nxt = fwd[order[-1]]
        best = max(nxt, key=lambda d: depth.get(d, -(10**9)))
        side.extend((order[-1], d) for d in nxt if d != best)
        order.append(best)
    on_main = set(order)
    skips: list[_SkipEdge] = []
    used: set[str] = set()
    for src, first in side:
        path = [first]
        if isinstance(graph.nodes[first], nir.Flatten) and len(fwd.get(first, [])) == 1:
            path.append(fwd[first][0])
        syn = path[-1]
        tgt = fwd.get(syn, [])
        ok = (isinstance(graph.nodes[syn], nir.Affine | nir.Linear) and len(tgt) == 1
              and tgt[0] in on_main and type(graph.nodes[tgt[0]]) in NEURON_READERS
              and (src == inputs[0] or type(graph.nodes[src]) in NEURON_READERS)
              and all(len([s for s, d in graph.edges if d == n]) == 1 for n in path))
        if isinstance(graph.nodes[syn], nir.Conv2d) and len(tgt) == 1 and tgt[0] in on_main:
            raise ConfigError(
                f"{_SkipEdge(src, syn, tgt[0]).label}: a convolutional skip edge would need a "
                f"Conv delayed to meet the main path, which Lava 0.10 has not (DelayDense is "
                f"dense only); skip edges through Affine/Linear compile")
        if not ok or used & set(path):
            raise ConfigError(
                f"node {src!r} has {len(fwd[src])} successors {fwd[src]}; besides the main "
                f"path only skip edges Input/neuron → [Flatten] → Affine/Linear → a neuron on "
                f"the main path are supported (the branch through {first!r} is not one)")
        used |= set(path)
        skips.append(_SkipEdge(src, syn, tgt[0], path[0] if len(path) == 2 else None))
    covered = on_main | set(loops.values()) | used
    if covered != set(graph.nodes):
        extra = sorted(set(graph.nodes) - covered)
        raise ConfigError(f"NIR graph nodes {extra} are not on the Input → Output path")
    return order, loops, skips


def _meta_float(meta: dict[str, Any], key: str) -> float | None:
    if key not in meta:
        return None
    try:
        return float(np.asarray(meta[key]).item())
    except (TypeError, ValueError):
        return None


def parse_graph(graph: nir.NIRGraph) -> NIRChain:
    """Read a NIR graph as a feed-forward chain of synapse → neuron layers.

    Accepted synapses: ``Affine``, ``Linear``, ``Conv2d`` (dilation 1), ``AvgPool2d``,
    ``SumPool2d`` (no padding), each optionally preceded by ``Flatten``; neurons: see
    :func:`_neuron_params`. Input gains ``R·dt/τ ≠ 1`` are folded into weights and biases.

    Raises
    ------
    ConfigError
        Naming the node, for anything outside that grammar or not expressible on Lava's LIF.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise ConfigError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    dt = graph_dt(graph)
    order, loops, skips = _chain_order_skips(graph)
    walk = _Walk(graph, dt, loops, skips, _input_shape(graph, order[0]),
                 index_of={order[0]: 0})
    _walk_layers(walk, order[1:-1])
    _check_output_shape(graph, order[-1], walk.layers[-1].out_shape)
    meta = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    return NIRChain(input_shape=walk.input_shape, layers=tuple(walk.layers), dt=dt,
                    metadata=meta)


@dataclass
class _Walk:
    """What :func:`parse_graph`'s layer stages share: the graph, its time step, recurrent
    loops and skip edges, the input shape and the chain so far (``index_of``: main-path
    Input / neuron → chain index, 0 for the input)."""

    graph: nir.NIRGraph
    dt: float
    loops: dict[str, str]
    skips: list[_SkipEdge]
    input_shape: tuple[int, ...]
    index_of: dict[str, int]
    layers: list[ChainLayer] = field(default_factory=list)


def _input_shape(graph: nir.NIRGraph, name: str) -> tuple[int, ...]:
    """The shape of the Input node ``name``."""
    inp = graph.nodes[name]
    in_type = inp.input_type.get("input") if isinstance(inp.input_type, dict) else None
    if in_type is None:
        raise ConfigError(f"Input node {name!r} has no shape")
    return tuple(int(v) for v in np.asarray(in_type).ravel())


def _walk_layers(walk: _Walk, body: list[str]) -> None:
    """The main path between Input and Output, ``[Flatten →] synapse → neuron`` pair by pair,
    into ``walk.layers``."""
    shape = walk.input_shape
    i = 0
    while i < len(body):
        layer, i = _chain_layer(walk, body, i, shape)
        walk.layers.append(layer)
        walk.index_of[layer.neuron_node] = layer.index
        shape = layer.out_shape
    if not walk.layers:
        raise ConfigError("NIR graph has no synapse → neuron layer")


def _check_output_shape(graph: nir.NIRGraph, name: str, shape: tuple[int, ...]) -> None:
    """The Output node ``name``, where it has a shape, must hold the last layer's output."""
    out = graph.nodes[name]
    out_type = out.output_type.get("output") if isinstance(out.output_type, dict) else None
    if out_type is not None and math.prod(int(v) for v in np.asarray(out_type).ravel()) != \
            math.prod(shape):
        raise ConfigError(f"Output node {name!r} has shape {list(np.asarray(out_type))}, "
                          f"the last layer produces {shape}")


def _chain_layer(walk: _Walk, body: list[str], i: int, shape: tuple[int, ...]
                 ) -> tuple[ChainLayer, int]:
    """(the layer whose ``[Flatten →] synapse`` starts at ``body[i]`` on a ``shape`` input,
    the body index after its neuron): the synapse and the neuron, what folds into the synapse
    (recurrence, skip edges, input gain, CUBA currents), then the neuron's extras."""
    k = len(walk.layers) + 1
    i, name, flatten, in_shape, syn = _layer_synapse(walk.graph, body, i, shape, k)
    kind, out_shape, weight, bias = syn.kind, syn.out_shape, syn.weight, syn.bias
    neu_name = body[i + 1]
    neu, nkind, alpha, theta, gain = _layer_neuron(walk, neu_name, out_shape,
                                                   last=i + 2 == len(body))
    nwhere = f"node {neu_name!r}"
    rec_weight, rec_node, bias = _recurrent_weight(walk, neu_name, kind, out_shape, bias)
    weight, bias, skip_ws, skip_labels = _skip_weights(walk, neu_name, kind, out_shape, k,
                                                       weight, bias)
    weight, bias, rec_weight, skip_ws = _fold_gain(neu, gain, kind, out_shape, nwhere,
                                                   weight, bias, rec_weight, skip_ws)
    bias, cur_bias = _cuba_currents(neu, nkind, kind, out_shape, walk.dt, nwhere, bias)
    meta = getattr(neu, "metadata", None) or {}
    theta_v, nds = _talif_params(meta, nkind, tuple(out_shape), nwhere)
    reset, timing = _reset_rule(neu, neu_name, nwhere)
    alpha, beta, alphas, betas = _decays(neu, nkind, alpha, walk.dt, math.prod(out_shape),
                                         nwhere)
    layer = ChainLayer(
        index=k, kind=kind, synapse_node=name, neuron_node=neu_name,
        in_shape=in_shape, out_shape=tuple(out_shape),
        flatten_before=flatten, weight=weight, bias=bias, alpha=alpha, theta=theta,
        neuron=nkind, kernel=syn.kernel, stride=syn.stride, padding=syn.padding,
        groups=syn.groups,
        alpha_hint=_meta_float(meta, "alpha"), theta_hint=_meta_float(meta, "theta"),
        theta_v=theta_v, nds=nds, reset=reset, beta=beta, reset_timing=timing,
        rec_weight=rec_weight, rec_node=rec_node, cur_bias=cur_bias,
        alphas=alphas, betas=betas, skips=tuple(skip_ws), skip_labels=tuple(skip_labels),
        v_floor=_v_floor(meta, theta, nwhere),
        multi_spike=bool(np.asarray(meta.get("multi_spike", 0)).item()),
    )
    return layer, i + 2


def _layer_synapse(graph: nir.NIRGraph, body: list[str], i: int, shape: tuple[int, ...],
                   k: int) -> tuple[int, str, bool, tuple[int, ...], _Synapse]:
    """(body index of the synapse, its name, flatten_before, layer ``k``'s in_shape, the
    synapse read) for the ``[Flatten →] synapse`` at ``body[i]``, which a neuron must
    follow."""
    flatten = False
    pre_shape = shape
    name = body[i]
    node = graph.nodes[name]
    if isinstance(node, nir.Flatten):
        flatten = len(shape) > 1
        shape = (math.prod(shape),)
        i += 1
        if i >= len(body):
            raise ConfigError(f"Flatten node {name!r} is not followed by a synapse")
        name, node = body[i], graph.nodes[body[i]]
    where = f"node {name!r} ({type(node).__name__})"
    reader = SYNAPSE_READERS.get(type(node))
    if reader is None:
        raise ConfigError(
            f"{where}: expected a synapse (Affine, Linear, Conv2d, AvgPool2d, SumPool2d, "
            f"optionally after Flatten) as layer {k}"
        )
    syn = reader(node, shape, where)
    if any(v <= 0 for v in syn.out_shape):
        raise ConfigError(f"{where}: empty output shape {syn.out_shape} for input {shape}")
    if i + 1 >= len(body):
        raise ConfigError(f"{where}: synapse is not followed by a neuron node")
    return i, name, flatten, pre_shape if flatten else shape, syn


def _layer_neuron(walk: _Walk, neu_name: str, out_shape: tuple[int, ...], last: bool
                  ) -> tuple[nir.NIRNode, str, Decay, float | None, Decay]:
    """(node, kind, α, θ, input gain) of the neuron ``neu_name`` after a synapse with output
    ``out_shape``; its per-neuron fields hold one value or one per neuron."""
    neu = walk.graph.nodes[neu_name]
    nkind, alpha, theta, gain = _neuron_params(neu, neu_name, walk.dt, last)
    nwhere = f"node {neu_name!r}"
    for fname in ("tau", "r", "v_threshold", "tau_mem", "tau_syn", "w_in"):
        arr = getattr(neu, fname, None)
        if arr is not None and np.asarray(arr).size not in (1, math.prod(out_shape)):
            raise ConfigError(f"{nwhere}: {fname} has {np.asarray(arr).size} entries, the "
                              f"layer has {math.prod(out_shape)} neurons")
    return neu, nkind, alpha, theta, gain


def _recurrent_weight(walk: _Walk, neu_name: str, kind: str, out_shape: tuple[int, ...],
                      bias: np.ndarray | None
                      ) -> tuple[np.ndarray | None, str | None, np.ndarray | None]:
    """(recurrent weight, its node, the synapse bias with the loop's bias added) of the
    neuron ``neu_name`` (None, None, ``bias``: no recurrent loop)."""
    rec_weight = rec_node = None
    if neu_name in walk.loops:
        rec_node = walk.loops[neu_name]
        rnode = walk.graph.nodes[rec_node]
        n_out = math.prod(out_shape)
        if isinstance(rnode, nir.Conv2d):  # a recurrent convolution, unrolled (exact)
            if kind != "conv":
                raise ConfigError(f"node {rec_node!r}: a recurrent Conv2d on a {kind} "
                                  f"population; it needs a conv layer")
            rec_weight, rb = _unrolled_conv(rnode, tuple(out_shape),
                                            f"node {rec_node!r} (recurrent Conv2d)")
        else:
            rec_weight = np.asarray(rnode.weight, dtype=np.float64)
            if kind != "fc" or rec_weight.shape != (n_out, n_out):
                raise ConfigError(f"node {rec_node!r}: a recurrent connection needs a "
                                  f"dense layer and an [{n_out}, {n_out}] weight, got "
                                  f"{kind} and {rec_weight.shape}")
            rb = getattr(rnode, "bias", None) if isinstance(rnode, nir.Affine) else None
        if rb is not None and np.any(np.asarray(rb) != 0):  # a constant input: the bias
            bias = (bias if bias is not None else 0.0) + np.asarray(
                rb, dtype=np.float64).reshape(-1)
    return rec_weight, rec_node, bias


def _skip_weights(walk: _Walk, neu_name: str, kind: str, out_shape: tuple[int, ...], k: int,
                  weight: np.ndarray | None, bias: np.ndarray | None
                  ) -> tuple[np.ndarray | None, np.ndarray | None,
                             list[tuple[int, np.ndarray]], list[str]]:
    """(weight, bias, skip weights ``[(j, W_skip)]``, their labels) of layer ``k`` (neuron
    ``neu_name``) with the skip edges into it: a skip edge from the main synapse's own source
    adds to ``weight``, every edge's bias to ``bias``."""
    skip_ws: list[tuple[int, np.ndarray]] = []
    skip_labels: list[str] = []
    for e in (e for e in walk.skips if e.target == neu_name):
        if kind != "fc":
            raise ConfigError(f"{e.label}: a skip edge into a {kind} layer has no chip "
                              f"mapping (its delay would need a delayed Conv, which Lava "
                              f"has not); skip edges into dense (Affine/Linear) layers "
                              f"compile")
        if e.source not in walk.index_of:
            raise ConfigError(f"{e.label}: its source is not an earlier population of the "
                              f"main path")
        j = walk.index_of[e.source]
        src_shape = walk.input_shape if j == 0 else walk.layers[j - 1].out_shape
        if len(src_shape) > 1 and e.flatten is None:
            raise ConfigError(f"{e.label}: {e.synapse!r} reads a {src_shape} tensor; "
                              f"insert a Flatten node")
        sw = _read_dense(walk.graph.nodes[e.synapse], (math.prod(src_shape),), e.label)
        if sw.out_shape != tuple(out_shape):
            raise ConfigError(f"{e.label}: {e.synapse!r} gives {sw.out_shape[0]} outputs, "
                              f"the population has {math.prod(out_shape)}")
        if sw.bias is not None:  # biases add (exact)
            bias = (bias if bias is not None else 0.0) + sw.bias
        if j == k - 1:  # the same source as the main synapse: the matrices add (exact)
            weight = weight + sw.weight
        else:
            skip_ws.append((j, sw.weight))
            skip_labels.append(e.label)
    return weight, bias, skip_ws, skip_labels


def _fold_gain(neu: nir.NIRNode, gain: Decay, kind: str, out_shape: tuple[int, ...],
               nwhere: str, weight: np.ndarray | None, bias: np.ndarray | None,
               rec_weight: np.ndarray | None, skip_ws: list[tuple[int, np.ndarray]]
               ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None,
                          list[tuple[int, np.ndarray]]]:
    """(weight, bias, rec_weight, skip_ws) with the neuron's input gain R·dt/τ folded in
    (unchanged where the gain is 1)."""
    g = np.asarray(gain, dtype=np.float64)
    if np.any(np.abs(g - 1.0) > _float_tol(getattr(neu, "r", None),
                                           getattr(neu, "tau", None))):
        if kind in ("avgpool", "sumpool"):
            raise ConfigError(f"{nwhere}: input gain R·dt/τ = {g.max():g} ≠ 1 after a "
                              f"pooling node cannot be folded into fixed pooling weights")
        if g.ndim == 0:
            rows = g
        elif kind == "fc":  # one gain per neuron: scale its weight row (exact)
            rows = g.reshape(-1)
        else:  # conv: one gain per output channel
            per_ch = np.broadcast_to(g.reshape(-1), (math.prod(out_shape),)).reshape(
                out_shape[0], -1)
            if not np.all(per_ch == per_ch[:, :1]):
                raise ConfigError(f"{nwhere}: input gain R·dt/τ differs within a channel; "
                                  f"a conv layer's kernel can be scaled per channel only")
            rows = per_ch[:, 0]
        shape_w = (-1,) + (1,) * (weight.ndim - 1) if np.ndim(rows) else ()
        weight = weight * np.reshape(rows, shape_w)
        bias = bias * rows if bias is not None else None
        rec_rows = (np.repeat(rows, math.prod(out_shape[1:])) if kind == "conv"
                    and np.ndim(rows) else rows)  # conv: one gain per channel
        rec_weight = (rec_weight * np.reshape(rec_rows, (-1, 1) if np.ndim(rows) else ())
                      if rec_weight is not None else None)
        skip_ws = [(j, w * np.reshape(rows, (-1, 1) if np.ndim(rows) else ()))
                   for j, w in skip_ws]
    return weight, bias, rec_weight, skip_ws


def _cuba_currents(neu: nir.NIRNode, nkind: str, kind: str, out_shape: tuple[int, ...],
                   dt: float, nwhere: str, bias: np.ndarray | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(bias, cur_bias) of a CubaLIF / CubaLI population: the synapse bias moves into the
    current, the leak ``v_leak`` into ``bias`` ((``bias``, None) for other neurons)."""
    cur_bias = None
    cuba = nkind in ("cubalif", "cubali")
    if cuba and bias is not None and np.any(bias != 0):
        # a bias feeding a CubaLIF enters its current: a constant synaptic input (a_bias)
        cur_bias, bias = bias, None
    if cuba and np.any(np.asarray(neu.v_leak) != 0):
        # the leak enters v each step, dt/τ_mem·v_leak, as the chip's bias does
        leak = np.broadcast_to(np.asarray(neu.v_leak, dtype=np.float64).reshape(-1) * dt
                               / np.asarray(_per_neuron(neu.tau_mem, "tau_mem", nwhere)),
                               (math.prod(out_shape),)).reshape(out_shape)
        if kind == "conv":
            per_ch = leak.reshape(out_shape[0], -1)
            if not np.all(per_ch == per_ch[:, :1]):
                raise ConfigError(f"{nwhere}: v_leak differs within a channel; a conv "
                                  f"layer's bias is one value per channel")
            leak = per_ch[:, 0]
        elif kind != "fc":
            raise ConfigError(f"{nwhere}: v_leak after a pooling node has no bias to go to")
        bias = (bias if bias is not None else 0.0) + leak.reshape(-1)
    return bias, cur_bias


def _reset_rule(neu: nir.NIRNode, neu_name: str, nwhere: str) -> tuple[str, str]:
    """(reset, reset_timing) of the neuron ``neu_name`` from its metadata hints."""
    reset = _check_reset_hint(neu, f"node {neu_name!r} ({type(neu).__name__})")
    timing = _meta_str(getattr(neu, "metadata", None) or {}, "reset_timing", "immediate")
    if timing not in ("immediate", "next-step"):
        raise ConfigError(f"{nwhere}: metadata reset_timing = {timing!r} is not "
                          f"'immediate' or 'next-step'")
    return reset, timing


def _decays(neu: nir.NIRNode, nkind: str, alpha: Decay, dt: float, n_neurons: int,
            nwhere: str) -> tuple[float, float | None, np.ndarray | None, np.ndarray | None]:
    """(α, β, alphas, betas) of a population of ``n_neurons``: per-neuron decays as arrays
    (None where the population has one), α / β their largest (β: CubaLIF / CubaLI only)."""
    cuba = nkind in ("cubalif", "cubali")
    beta = _current_decay(neu, dt, nwhere)[0] if cuba else None
    alphas = (np.broadcast_to(alpha, (n_neurons,)).astype(np.float64)
              if np.ndim(alpha) else None)
    betas = (np.broadcast_to(beta, (n_neurons,)).astype(np.float64)
             if beta is not None and np.ndim(beta) else None)
    if np.ndim(alpha) and np.asarray(alpha).size != n_neurons or \
            np.ndim(beta) and np.asarray(beta).size != n_neurons:
        raise ConfigError(f"{nwhere}: per-neuron decays for {np.asarray(alpha).size} "
                          f"neurons, the layer has {n_neurons}")
    alpha = float(np.max(alpha))
    beta = float(np.max(beta)) if beta is not None else None
    return alpha, beta, alphas, betas


def _v_floor(meta: dict[str, Any], theta: float | None, where: str) -> float | None:
    """The population's lower bound on v (node metadata ``v_floor``, the neurodeploy
    convention's record of e.g. sinabs's ``min_v_mem``): one value for the population."""
    if "v_floor" not in meta:
        return None
    vf = np.asarray(meta["v_floor"], dtype=np.float64).ravel()
    if vf.size == 0 or not np.all(np.isfinite(vf)):
        raise ConfigError(f"{where}: metadata v_floor must hold finite values")
    if not np.all(vf == vf[0]):
        raise ConfigError(f"{where}: v_floor differs between neurons ({vf.min():g} … "
                          f"{vf.max():g}); the chip holds one lower bound per population")
    if theta is None:
        raise ConfigError(f"{where}: v_floor on a non-spiking population has no chip mapping")
    if vf[0] > 0:
        raise ConfigError(f"{where}: v_floor = {vf[0]:g} > 0 would lift v after every reset; "
                          f"only a floor ≤ 0 has a chip mapping")
    return float(vf[0])


def _talif_params(meta: dict[str, Any], nkind: str, shape: tuple[int, ...], where: str
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(θ_v ``[*shape]``, NDS ``[T, *shape]``) of a TA-LIF node, or (None, None) for a LIF."""
    if TALIF_META_KEY not in meta:
        return None, None
    kind = _meta_str(meta, TALIF_META_KEY, "lif")
    if kind == "lif":
        return None, None
    if kind != TALIF:
        raise ConfigError(f"{where}: metadata {TALIF_META_KEY} = {kind!r} is not a neuron this "
                          f"version knows (known: 'lif', {TALIF!r}); refusing to run it as a "
                          f"plain LIF")
    if nkind not in ("lif", "if"):
        raise ConfigError(f"{where}: TA-LIF metadata on a {nkind!r} node; TA-LIF extends a "
                          f"spiking LIF/IF node")
    n = math.prod(shape)
    for key in ("theta_v", "nds"):
        if key not in meta:
            raise ConfigError(f"{where}: TA-LIF metadata lacks {key!r}")
    theta_v = np.asarray(meta["theta_v"], dtype=np.float64)
    nds = np.asarray(meta["nds"], dtype=np.float64)
    if theta_v.size != n:
        raise ConfigError(f"{where}: TA-LIF theta_v has {theta_v.size} entries, the layer has "
                          f"{n} neurons")
    if nds.ndim < 1 or nds.shape[0] < 1 or nds.size != nds.shape[0] * n:
        raise ConfigError(f"{where}: TA-LIF nds has shape {nds.shape}; expected [T, {n}] "
                          f"(or [T, *{shape}])")
    if not (np.all(np.isfinite(theta_v)) and np.all(np.isfinite(nds))):
        raise ConfigError(f"{where}: TA-LIF theta_v or nds contain NaN/inf")
    if np.any(theta_v < 0):
        raise ConfigError(f"{where}: TA-LIF theta_v must be ≥ 0 (min {theta_v.min():g})")
    return theta_v.reshape(shape), nds.reshape((nds.shape[0],) + shape)


def _meta_str(meta: dict[str, Any], key: str, default: str) -> str:
    if key not in meta:
        return default
    v = meta[key]
    return str(v.item() if isinstance(v, np.ndarray) else v)
