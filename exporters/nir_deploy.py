"""A NIR graph from any producer → a deployment plan, with every assumption stated.

``compile_nir(file, profile, num_steps, producer=…, reset=…, dt=…)``:

1. :func:`~neurodeploy.exporters.nir_import.read_graph` reads the file under the producer's
   semantics (printed notes say what was inferred) and applies the exact rewrites;
2. :func:`chip_notes` lists what the chip runs differently from the float reference
   (graded multi-spikes sent as one spike, ``>=`` compared as ``>``, a non-zero initial
   membrane, snntorch's delayed subtraction) — each printed and written into the plan, never
   silent; the compiler refuses what it cannot run at all, naming the node, the field and
   what would make it compile;
3. :func:`~neurodeploy.exporters.nir_writers.to_canonical_nir` writes the graph in the
   neurodeploy convention, which :func:`~neurodeploy.exporters.compiler.compile_graph` compiles.

The plan's ``source["nir_metadata"]`` holds the semantics, the import notes and the chip notes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_dgraph import DGraph, DNeuron
from neurodeploy.exporters.nir_import import read_graph
from neurodeploy.exporters.nir_writers import to_canonical_nir


@dataclass(frozen=True)
class NIRDeployment:
    """What :func:`compile_nir` returns: the plan, the discrete graph, the canonical NIR graph
    and every note (import + chip)."""

    plan: Any
    dgraph: DGraph
    canonical: nir.NIRGraph
    notes: tuple[str, ...]
    chip_notes: tuple[str, ...]


def chip_notes(g: DGraph, plan: Any = None) -> list[str]:
    """Differences between the float reference and the chip's neurons (Loihi LIF, or the
    subtract-reset ``sublif``), as notes. What has no chip mapping at all is refused by the
    compiler (naming the node). With the compiled ``plan``, layers that send graded spikes
    say so instead of the multi-spike clipping note."""
    from neurodeploy.exporters.nir_fidelity import layer_map, precision_notes

    graded = {name for name, k in (layer_map(g, plan) if plan is not None else [])
              if "graded_bits" in plan.layers[k].neuron_params}
    notes: list[str] = []
    for name in g.neurons():
        n = g.nodes[name]
        assert isinstance(n, DNeuron)
        where = f"node {n.source!r}"
        if n.spiking and n.multi_spike and name in graded:
            k = dict(layer_map(g, plan))[name]
            b = int(plan.layers[k].neuron_params["graded_bits"])
            notes.append(f"{where}: graded multi-spikes ⌊v/θ⌋ sent as graded spike payloads "
                         f"({b} bits: counts up to {(1 << b) - 1} per step; the rest stays on "
                         f"v); counts compare v ≥ θ as the float model does")
        elif n.spiking and n.multi_spike:
            tail = ("the rest stays on v (subtract reset) and fires later" if n.reset ==
                    "subtract" else "equal while v < 2θ")
            notes.append(f"{where}: graded multi-spikes (⌊v/θ⌋ per step) are sent as one "
                         f"binary spike on the chip; {tail}")
        if n.spiking and n.spike_op == ">=" and name not in graded:
            notes.append(f"{where}: spikes on v ≥ θ in the float model, v > θ on the chip "
                         f"(differs only when v equals the threshold)")
        if n.v_init is not None:
            notes.append(f"{where}: the float model starts at v = v_leak, the chip at v = 0")
        if not n.spiking:
            notes.append(f"{where}: non-spiking read-out — the chip sends its membrane v each "
                         f"step (a graded value in v units = float · scale · 2^6, the plan's "
                         f"readout 'membrane'); logits are Σ_t v")
    return notes + (precision_notes(g, plan) if plan is not None else [])


def compile_nir(source: nir.NIRGraph | str | os.PathLike, profile: Any, num_steps: int,
                producer: str | None = None, reset: str | None = None,
                dt: float | None = None, tau_units: str | None = None,
                weight_groups: str = "auto") -> NIRDeployment:
    """Read, rewrite, check and compile a NIR graph (module docstring). ``weight_groups``
    ``"auto"`` (default) lets every eligible dense/conv layer take a second synapse group
    (:func:`~neurodeploy.exporters.compiler.compile_graph`); ``"one"``: one 8-bit group.

    Raises
    ------
    ConfigError
        Unknown producer, unreadable or inexpressible graph (naming node and field).
    HardwareFitError
        The graph does not fit the profile.
    """
    from neurodeploy.exporters.compiler import compile_graph

    if int(num_steps) < 1:
        raise ConfigError(f"--steps must be >= 1, got {num_steps}")
    g = read_graph(source, producer=producer, reset=reset, dt=dt, tau_units=tau_units)
    canonical = to_canonical_nir(g)
    canonical.metadata["num_steps"] = int(num_steps)
    in_shape = tuple(int(v) for v in np.asarray(g.nodes[g.input_name].out_shape))
    plan = compile_graph(canonical, profile, int(num_steps), in_shape,
                         weight_groups=weight_groups)
    cnotes = chip_notes(g, plan)
    canonical.metadata["chip_notes"] = "\n".join(cnotes)
    plan.source["nir_metadata"]["chip_notes"] = "\n".join(cnotes)
    return NIRDeployment(plan=plan, dgraph=g, canonical=canonical, notes=tuple(g.notes),
                         chip_notes=tuple(cnotes))


def float_reference(source: nir.NIRGraph | str | os.PathLike, producer: str | None = None,
                    reset: str | None = None, dt: float | None = None,
                    num_steps: int | None = None, surrogate: str | None = None,
                    tau_units: str | None = None):
    """The float model of a NIR file for ``simulate``/``audit``: a
    :class:`~neurodeploy.exporters.nir_interp.NIRModel` (``run(x [T, B, …], record=True)`` →
    trace with ``spikes`` per spiking population and ``logits`` [B, classes]; with
    ``surrogate`` (e.g. ``"atan"``) ``forward(x)`` is differentiable for attacks)."""
    from neurodeploy.exporters.nir_interp import NIRModel

    return NIRModel(read_graph(source, producer=producer, reset=reset, dt=dt,
                               tau_units=tau_units),
                    num_steps=num_steps, surrogate=surrogate)


def float_reference_for_plan(source: nir.NIRGraph | str | os.PathLike, plan: Any = None,
                             producer: str | None = None, reset: str | None = None,
                             dt: float | None = None, surrogate: str | None = None,
                             tau_units: str | None = None):
    """:func:`float_reference` with the semantics a plan was compiled with as defaults.

    The canonical ``model.nir`` that ``export --nir`` writes states its own semantics; the
    original foreign file does not, so the producer, reset and dt recorded in the plan's
    ``source["nir_metadata"]`` (``source_producer``, ``reset``, ``source_dt``, and for norse
    ``tau_unit``) fill in what the caller leaves out. Reads nothing else from the plan.
    """
    meta = (getattr(plan, "source", None) or {}).get("nir_metadata", {}) if plan else {}
    graph = source
    if not isinstance(source, nir.NIRGraph):
        from neurodeploy.exporters.nir_load import load_nir

        graph, _ = load_nir(source)
    own = graph.metadata if isinstance(graph.metadata, dict) else {}
    if producer is None and "producer" not in own and meta.get("source_producer"):
        producer = str(meta["source_producer"])
        reset = reset if reset is not None else meta.get("reset")
        dt = dt if dt is not None else meta.get("source_dt")
        if tau_units is None and producer == "norse":
            tau_units = meta.get("tau_unit")
    return float_reference(graph, producer=producer, reset=reset, dt=dt,
                           num_steps=getattr(plan, "num_steps", None), surrogate=surrogate,
                           tau_units=tau_units)
