"""Reading ``.nir`` files for the import: the file checks and the producers' file quirks.

:func:`load_nir` reads a file with ``nir.read`` (falling back to ``type_check=False`` and
repairing the batch dimension some exporters write into ``Input``/``Output``, rockpool 3.1.0),
:func:`check_graph_arrays` refuses array fields that are not real numbers, and
:func:`flatten_subgraphs` inlines nested ``NIRGraph`` nodes (e.g. snntorch's ``RLeaky``) as
``outer.inner`` nodes of one flat graph. Used by :mod:`~neurodeploy.exporters.nir_import` and
:func:`~neurodeploy.exporters.nir_export.read_nir`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import CheckpointError, ConfigError

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
