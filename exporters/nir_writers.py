"""A discrete graph → standard NIR in the neurodeploy convention (the *canonical* graph).

:data:`WRITERS` maps each discrete node type to its NIR node (neurons: Euler at ``dt`` with
``τ = dt/(1 − α)``, ``r = g/(1 − α)`` so that ``r·dt/τ = g``, ``v_leak = b/(1 − α)``; IF
for α = 1; reset, spike comparison, floors and the like in node metadata);
:func:`to_canonical_nir` writes a whole :class:`~neurodeploy.exporters.nir_dgraph.DGraph`,
which the compiler reads with :func:`~neurodeploy.exporters.nir_chain.parse_graph`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_dgraph import (
    DConv,
    DFlatten,
    DGraph,
    DInput,
    DLinear,
    DNeuron,
    DOutput,
    DPool,
    DScale,
)

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
