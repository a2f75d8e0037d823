"""The discrete-time graph an imported NIR graph becomes (:class:`DGraph`) and its shapes.

Holds the discrete node types (:class:`DInput`, :class:`DOutput`, :class:`DLinear`,
:class:`DScale`, :class:`DConv`, :class:`DPool`, :class:`DFlatten`, :class:`DNeuron` with its
per-neuron arrays :data:`NEURON_ARRAYS`), the graph :class:`DGraph` with its evaluation order
(:func:`topo_order`: an edge that closes a cycle reads the previous step's output), and
:func:`infer_shapes`, which fills every node's input and output shape along that order.

:mod:`~neurodeploy.exporters.nir_readers` builds these nodes from NIR nodes,
:mod:`~neurodeploy.exporters.nir_writers` writes them back as standard NIR, and
:mod:`~neurodeploy.exporters.nir_import` drives the whole import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError
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
