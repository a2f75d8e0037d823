"""Any NIR graph → a discrete-time graph (:class:`DGraph`), by node-type tables.

Reading is three steps, each a small pure function:

1. :func:`load_nir` (:mod:`~neurodeploy.exporters.nir_load`) — ``nir.read`` (falling back to
   ``type_check=False`` and repairing the batch dimension some exporters write into
   ``Input``/``Output``, rockpool 3.1.0), then :func:`flatten_subgraphs` (nested ``NIRGraph``
   nodes, e.g. snntorch's ``RLeaky``, become ``outer.inner`` nodes of one flat graph).
2. :func:`to_dgraph` (here) — one converter per NIR node type (:data:`READERS`,
   :mod:`~neurodeploy.exporters.nir_readers`) turns each node into a discrete node
   (:class:`DLinear`, :class:`DConv`, :class:`DPool`, :class:`DFlatten`, :class:`DNeuron`, …,
   :mod:`~neurodeploy.exporters.nir_dgraph`) under a
   :class:`~neurodeploy.exporters.nir_semantics.Semantics`; shapes are inferred along the
   graph. Unknown node types and out-of-range values raise :class:`ConfigError` naming the
   node, the field and what would make it work.
3. :mod:`~neurodeploy.exporters.nir_rewrite` — exact rewrites (each tested for equality).

:func:`read_graph` (here) runs the three steps with the semantics decided for the file.
The reverse direction (:data:`WRITERS`, :mod:`~neurodeploy.exporters.nir_writers`: discrete
node → standard NIR node under the neurodeploy convention, Euler with ``r·dt/τ = g``) writes
the *canonical* graph the compiler reads.

Neuron parameters are per-neuron float64 arrays; edges may form cycles (recurrent connections:
an edge that closes a cycle reads the previous step's output, as every producer simulates it).

Every name of those modules that this module exported before the split is re-exported here
(:data:`__all__`), so ``from neurodeploy.exporters.nir_import import …`` keeps working.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_dgraph import (  # re-export: the discrete graph
    NEURON_ARRAYS,
    DConv,
    DFlatten,
    DGraph,
    DInput,
    DLinear,
    DNeuron,
    DNode,
    DOutput,
    DPool,
    DScale,
    infer_shapes,
    topo_order,
)
from neurodeploy.exporters.nir_load import (  # re-export: reading files
    check_graph_arrays,
    flatten_subgraphs,
    load_nir,
)
from neurodeploy.exporters.nir_readers import (  # re-export: NIR node → discrete node
    READERS,
    ReadContext,
    read_affine,
    read_conv2d,
    read_cubali,
    read_cubalif,
    read_flatten,
    read_i,
    read_if,
    read_input,
    read_li,
    read_lif,
    read_linear,
    read_node,
    read_output,
    read_pool,
    read_scale,
)
from neurodeploy.exporters.nir_semantics import Semantics
from neurodeploy.exporters.nir_writers import (  # re-export: discrete node → NIR
    WRITERS,
    to_canonical_nir,
    write_conv,
    write_flatten,
    write_input,
    write_linear,
    write_neuron,
    write_output,
    write_pool,
    write_scale,
)

__all__ = [
    "NEURON_ARRAYS", "READERS", "TAU_FIELDS", "WRITERS", "DConv", "DFlatten", "DGraph",
    "DInput", "DLinear", "DNeuron", "DNode", "DOutput", "DPool", "DScale", "ReadContext",
    "check_graph_arrays", "file_taus", "flatten_subgraphs", "infer_shapes", "load_nir",
    "read_affine", "read_conv2d", "read_cubali", "read_cubalif", "read_flatten", "read_graph",
    "read_i", "read_if", "read_input", "read_li", "read_lif", "read_linear", "read_node",
    "read_output", "read_pool", "read_scale", "to_canonical_nir", "to_dgraph", "topo_order",
    "write_conv", "write_flatten", "write_input", "write_linear", "write_neuron",
    "write_output", "write_pool", "write_scale",
]

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
