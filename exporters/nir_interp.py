"""A float interpreter of any accepted NIR graph (:class:`~neurodeploy.exporters.nir_dgraph.DGraph`).

The float reference ``simulate`` and ``audit`` use for a model given as a NIR file. It runs the
discrete neuron of :mod:`~neurodeploy.exporters.nir_semantics` per neuron (per-neuron α, θ,
gain, bias, v_reset, current decay β and gain), every edge of the graph (skip connections sum
at the destination; an edge that closes a cycle — a recurrent connection — carries the source's
output of the previous step, zeros at t = 0) and the semantics' reset (zero / subtract, with
snntorch's next-step subtraction as an immediate subtraction of θ/α), spike comparison and
graded multi-spikes.

Per time step, in the evaluation order of :meth:`DGraph.order`::

    x_node = Σ_{forward preds} out_pred[t] + Σ_{back preds} out_pred[t − 1]
    out_node[t] = f_node(x_node, state_node)

Tensors are time-first ``[T, B, *shape]``. ``dtype`` (default float32, the producers' own)
sets the arithmetic; tests compare against each producer's simulation with it.

Gradients (for attacks on the float side): ``NIRModel(g, surrogate="atan")`` makes
``forward(x)`` / ``run(x, grad=True)`` differentiable — the forward values are unchanged (the
spike is still the hard threshold; a graded multi-spike keeps its count), the backward pass
of every spike uses the named surrogate of :mod:`neurodeploy.surrogates` on ``v − θ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.exporters.nir_dgraph import (
    NEURON_ARRAYS,
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


@dataclass(frozen=True)
class NIRTrace:
    """What :meth:`NIRModel.run` returns.

    ``spikes``: one ``[T, B, *shape]`` tensor per spiking population (evaluation order);
    ``membranes``: per population (all neurons, spiking or not), ``[T, B, *shape]`` when recorded;
    ``output``: the Output node's value per step ``[T, B, *shape]``; ``logits``: ``[B, N]`` the
    output summed over time (spike counts, or the summed membrane for a membrane read-out).
    """

    spikes: list[torch.Tensor]
    membranes: list[torch.Tensor]
    output: torch.Tensor
    logits: torch.Tensor
    names: list[str]


def _t(a: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=dtype)


class NIRModel(torch.nn.Module):
    """``NIRModel(dgraph).run(x [T, B, *input_shape], record=True) -> NIRTrace``."""

    def __init__(self, g: DGraph, dtype: torch.dtype = torch.float32,
                 num_steps: int | None = None, surrogate: str | None = None) -> None:
        super().__init__()
        self.graph = g
        self.surrogate = surrogate
        self._spike_fn = None
        if surrogate is not None:
            from neurodeploy.surrogates import make_surrogate

            self._spike_fn = make_surrogate(surrogate)
        self._grad = False
        self.dtype = dtype
        self.order, self.back = g.order()
        self.num_steps = num_steps
        self.input_shape = tuple(g.nodes[g.input_name].out_shape)
        self.config = SimpleNamespace(encoding="spikes", input_shape=self.input_shape,
                                      num_steps=num_steps, readout=g.semantics.readout)
        self._device = torch.device("cpu")
        self._params: dict[str, dict[str, Any]] = {}
        self._build()

    def _build(self) -> None:
        d = self.dtype
        for name in self.order:
            n = self.graph.nodes[name]
            p: dict[str, Any] = {}
            if isinstance(n, DLinear):
                p = {"w": _t(n.weight, d), "b": _t(n.bias, d)}
            elif isinstance(n, DConv):
                p = {"w": _t(n.weight, d), "b": _t(n.bias, d)}
            elif isinstance(n, DScale):
                p = {"s": _t(np.broadcast_to(n.scale, n.in_shape).copy(), d)}
            elif isinstance(n, DNeuron):
                p = {k: _t(getattr(n, k), d) for k in NEURON_ARRAYS}
            self._params[name] = {k: (v.to(self._device) if v is not None else None)
                                  for k, v in p.items()}

    def to(self, device: Any = None, *args: Any, **kwargs: Any) -> NIRModel:  # type: ignore[override]
        if device is not None and not isinstance(device, torch.dtype):
            self._device = torch.device(device)
            self._build()
        return self

    def eval(self) -> NIRModel:  # no training state
        return self

    @property
    def spiking_names(self) -> list[str]:
        return [n for n in self.order if isinstance(self.graph.nodes[n], DNeuron)
                and self.graph.nodes[n].spiking]

    # ------------------------------------------------------------------ one node
    def _apply(self, name: str, x: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        n = self.graph.nodes[name]
        p = self._params[name]
        B = x.shape[0]
        if isinstance(n, DInput | DOutput):
            return x
        if isinstance(n, DFlatten):
            return x.reshape((B,) + tuple(n.out_shape))
        if isinstance(n, DLinear):
            y = x.reshape(B, -1) @ p["w"].T
            return y + p["b"] if p["b"] is not None else y
        if isinstance(n, DScale):
            return x * p["s"]
        if isinstance(n, DConv):
            return F.conv2d(x.reshape((B,) + tuple(n.in_shape)), p["w"], p["b"],
                            stride=n.stride, padding=n.padding, dilation=n.dilation,
                            groups=n.groups)
        if isinstance(n, DPool):
            xx = x.reshape((B,) + tuple(n.in_shape))
            y = F.avg_pool2d(xx, n.kernel, n.stride, n.padding, count_include_pad=True)
            if n.mode == "sum":
                y = y * (n.kernel[0] * n.kernel[1])
            return y
        if isinstance(n, DNeuron):
            return self._neuron(name, n, p, x.reshape((B,) + tuple(n.in_shape)), state)
        raise TypeError(f"no interpreter for {type(n).__name__}")  # pragma: no cover

    def _neuron(self, name: str, n: DNeuron, p: dict[str, Any], x: torch.Tensor,
                state: dict[str, Any]) -> torch.Tensor:
        st = state.setdefault(name, {})
        v = st.get("v")
        if v is None:
            v = (torch.zeros_like(x) if p["v_init"] is None
                 else p["v_init"].expand_as(x).clone())
        if p["beta"] is not None:
            i = st.get("i")
            i = p["beta"] * (i if i is not None else torch.zeros_like(x)) + p["syn_gain"] * x
            st["i"] = i
            drive = i
        else:
            drive = x
        v = p["alpha"] * v + p["gain"] * drive + p["bias"]
        if n.zero_hold and "s" in st:  # snntorch Synaptic/RLeaky zero reset
            v = torch.where(st["s"] > 0, torch.zeros_like(v), v)
        if not n.spiking:
            st["v"] = v
            st["v_rec"] = v
            return v
        th = p["theta"]
        if n.multi_spike:
            out = torch.where(v >= th, torch.floor(v / th), torch.zeros_like(v))
        elif n.spike_op == ">=":
            out = (v >= th).to(v.dtype)
        else:
            out = (v > th).to(v.dtype)
        if self._grad and self._spike_fn is not None:  # same values, surrogate gradient
            sg = self._spike_fn(v - th).to(v.dtype)
            out = out.detach() + sg - sg.detach()
        st["v_rec"] = v
        st["s"] = out
        if n.reset == "subtract":
            v = v - out * p["reset_amount"]
        else:
            v = torch.where(out > 0, p["v_reset"], v)
        if p["v_floor"] is not None:  # sinabs min_v_mem: after the reset
            v = torch.maximum(v, p["v_floor"])
        st["v"] = v
        return out

    # ------------------------------------------------------------------ run
    def run(self, x: torch.Tensor, record: bool = True, grad: bool = False) -> NIRTrace:
        """Run ``x`` ``[T, B, *input_shape]``; returns the :class:`NIRTrace`. ``grad=True``
        (needs ``surrogate``) keeps the autograd graph."""
        if grad and self._spike_fn is None:
            from neurodeploy.errors import ConfigError

            raise ConfigError("NIRModel(..., surrogate=…) is needed for gradients")
        self._grad = grad
        try:
            with torch.set_grad_enabled(grad):
                return self._run(x, record)
        finally:
            self._grad = False

    def _run(self, x: torch.Tensor, record: bool) -> NIRTrace:
        x = torch.as_tensor(x).to(self._device, self.dtype)
        T, B = int(x.shape[0]), int(x.shape[1])
        g = self.graph
        prev: dict[str, torch.Tensor] = {}
        state: dict[str, Any] = {}
        neurons = [n for n in self.order if isinstance(g.nodes[n], DNeuron)]
        spk: dict[str, list[torch.Tensor]] = {n: [] for n in self.spiking_names}
        mem: dict[str, list[torch.Tensor]] = {n: [] for n in neurons}
        outs: list[torch.Tensor] = []
        preds = {n: g.preds(n) for n in self.order}
        # t = 0: a recurrent edge carries what its source gives for no spikes (a recurrent
        # Affine's bias, as snntorch's RLeaky adds recurrent(0) at the first step)
        for s, _d in self.back:
            node = g.nodes[s]
            if not isinstance(node, DNeuron):
                zeros = torch.zeros((B,) + tuple(node.in_shape), dtype=self.dtype,
                                    device=self._device)
                prev[s] = self._apply(s, zeros, {})
        for t in range(T):
            cur: dict[str, torch.Tensor] = {}
            for name in self.order:
                node = g.nodes[name]
                if isinstance(node, DInput):
                    val = x[t].reshape((B,) + tuple(node.out_shape))
                else:
                    acc = None
                    for s in preds[name]:
                        if (s, name) in self.back:
                            v = prev.get(s)
                            if v is None:
                                continue
                        else:
                            v = cur[s]
                        v = v.reshape((B,) + tuple(node.in_shape))
                        acc = v if acc is None else acc + v
                    if acc is None:
                        acc = torch.zeros((B,) + tuple(node.in_shape), dtype=self.dtype,
                                          device=self._device)
                    val = self._apply(name, acc, state)
                cur[name] = val
                if name in spk:
                    spk[name].append(val)
                if record and name in mem:
                    mem[name].append(state[name]["v_rec"])
            outs.append(cur[g.output_name])
            prev = cur
        output = torch.stack(outs)
        return NIRTrace(
            spikes=[torch.stack(spk[n]) for n in self.spiking_names],
            membranes=[torch.stack(mem[n]) for n in neurons] if record else [],
            output=output, logits=output.reshape(T, B, -1).sum(0),
            names=self.spiking_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, N]`` of ``x`` ``[T, B, …]``; differentiable with a ``surrogate``."""
        return self.run(x, record=False, grad=self._spike_fn is not None).logits
