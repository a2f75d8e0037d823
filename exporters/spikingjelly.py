"""A SpikingJelly (``activation_based``, 2.0) network → discrete graph → NIR → deployment plan.

SpikingJelly states its neurons in steps (no ``dt``). Per neuron and step, with ``X[t]`` the
output of the layer before it (SpikingJelly 2.0 ``_ops/*/reference.py``)::

    LIFNode, decay_input=True:    H = V + (X − (V − V_r)) / τ
    LIFNode, decay_input=False:   H = V − (V − V_r) / τ + X
    ParametricLIFNode:            the same with 1/τ = sigmoid(w)
    IFNode:                       H = V + X
    spike  S = 1[H − V_th ≥ 0]                     (heaviside: ``x >= 0``)
    hard reset (V_r a number):    V = S·V_r + (1 − S)·H,   V starts at V_r
    soft reset (V_r = None):      V = H − S·V_th,           V starts at 0; V_r reads as 0 above

In the discrete neuron of :mod:`~neurodeploy.exporters.nir_semantics`
(``v ← α·v + g·x + b``, spike ``v ≥ θ``) this is, with ``k = 1/τ``::

    α = 1 − k,  g = k (decay_input) or 1,  b = 0

after one exact change of variable for a hard reset: ``u = V − V_r`` starts at 0, obeys
``u ← (1 − k)·u + g·X`` (LIF, PLIF) or ``u ← u + X`` (IF), fires on ``u ≥ V_th − V_r`` and
resets to 0 — the same spikes, a reset to zero the chip runs (θ = V_th − V_r must be > 0).
A soft reset is the ``subtract`` reset by ``V_th``.

Layers: ``Linear``, ``Conv2d`` (zero padding), ``Flatten``, ``AvgPool2d`` (SpikingJelly's
``layer.*`` or plain ``torch.nn``), ``BatchNorm1d/2d`` folded into the Linear/Conv2d before it
(running statistics: ``W' = γ/√(σ² + ε)·W``, ``b' = γ/√(σ² + ε)·(b − μ) + β``), ``Dropout``
(identity at inference), and the containers (``nn.Sequential``, ``SeqToANNContainer``,
``MultiStepContainer``, ``StepModeContainer``, any module whose children run in order).
Single-step (``'s'``) and multi-step (``'m'``) modes give the same network. Anything else —
``MaxPool2d``, other neurons, recurrent containers — is refused naming the module.

Because a module's ``forward`` may do more than call its children in order, :func:`convert`
checks its result: it runs the module's own forward (float64, on random spike trains) and the
converted graph's float interpreter, and refuses the conversion unless the output spikes are
equal.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.exporters.nir_dgraph import (
    DConv,
    DFlatten,
    DGraph,
    DInput,
    DLinear,
    DNeuron,
    DNode,
    DOutput,
    DPool,
    infer_shapes,
)
from neurodeploy.exporters.nir_semantics import Semantics

PRODUCER = "spikingjelly"
#: seconds per step written into the canonical NIR graph (SpikingJelly's τ is in steps)
DT = 1.0
NEURON_TYPES = ("IFNode", "LIFNode", "ParametricLIFNode")
CHECK_STEPS, CHECK_BATCH, CHECK_RATE = 12, 4, 0.4


def _sj() -> Any:
    try:
        from spikingjelly.activation_based import base, functional, neuron
    except ImportError as exc:
        raise ConfigError("--producer spikingjelly needs the spikingjelly package (pip install "
                          "'neurodeploy[interop]')") from exc
    return base, functional, neuron


# ----------------------------------------------------------------------------- module walk


def _is_container(m: nn.Module) -> bool:
    """Sequential containers (SpikingJelly's are ``nn.Sequential``s) and the user's own module
    classes are opened; a layer of torch or SpikingJelly with children (another neuron with
    its surrogate, a recurrent container, attention) is one unsupported layer."""
    own = not type(m).__module__.startswith(("torch.", "spikingjelly."))
    return isinstance(m, nn.Sequential) or (own and len(list(m.children())) > 0)


def _is_supported_leaf(m: nn.Module) -> bool:
    _, _, neuron = _sj()
    if type(m) in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode):
        return True
    return isinstance(m, nn.Linear | nn.Conv2d | nn.Flatten | nn.AvgPool2d | nn.BatchNorm1d
                      | nn.BatchNorm2d | nn.Dropout | nn.Identity) or _is_sj_dropout(m)


def _is_sj_dropout(m: nn.Module) -> bool:
    return type(m).__name__ in ("Dropout", "Dropout2d") and \
        type(m).__module__.startswith("spikingjelly")


def leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of ``module`` in the order they run: containers are opened (children in
    registration order), supported layers kept, anything else refused naming it."""
    if _is_supported_leaf(module):
        return [(prefix or type(module).__name__, module)]
    children = list(module.named_children())
    if not children or not _is_container(module):
        raise ConfigError(
            f"module {prefix or '(root)'!r} ({type(module).__module__}.{type(module).__name__}) "
            f"has no conversion: supported are SpikingJelly {', '.join(NEURON_TYPES)} and "
            f"Linear, Conv2d, Flatten, AvgPool2d, BatchNorm1d/2d (folded), Dropout")
    out: list[tuple[str, nn.Module]] = []
    for name, child in children:
        out += leaves(child, f"{prefix}.{name}" if prefix else name)
    return out


# ----------------------------------------------------------------------------- layers


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().to(torch.float64).numpy().copy()


def _linear(name: str, m: nn.Linear) -> DLinear:
    return DLinear(source=name, weight=_np(m.weight), bias=_np(m.bias))


def _conv(name: str, m: nn.Conv2d) -> DConv:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise ConfigError(f"module {name!r}: Conv2d padding {m.padding!r} / padding_mode "
                          f"{m.padding_mode!r}: only numeric zero padding is supported")
    return DConv(source=name, weight=_np(m.weight), bias=_np(m.bias),
                 stride=tuple(m.stride), padding=tuple(m.padding), dilation=tuple(m.dilation),
                 groups=int(m.groups))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _avgpool(name: str, m: nn.AvgPool2d) -> DPool:
    pad = _pair(m.padding)
    if m.ceil_mode or m.divisor_override is not None or (any(pad) and not
                                                         m.count_include_pad):
        raise ConfigError(f"module {name!r}: AvgPool2d with ceil_mode, divisor_override or "
                          f"count_include_pad=False has no conversion")
    return DPool(source=name, mode="avg", kernel=_pair(m.kernel_size),
                 stride=_pair(m.stride if m.stride is not None else m.kernel_size), padding=pad)


def _flatten(name: str, m: nn.Flatten) -> DFlatten:
    if m.start_dim == 0:
        raise ConfigError(f"module {name!r}: Flatten(start_dim=0) flattens the batch")
    shift = lambda d: d - 1 if d > 0 else d  # noqa: E731 - drop the batch dimension
    return DFlatten(source=name, start_dim=shift(int(m.start_dim)), end_dim=shift(int(m.end_dim)))


def _fold_bn(name: str, bn: nn.Module, prev: DNode | None) -> None:
    """Fold eval-mode BatchNorm into the Linear/Conv2d before it (module docstring)."""
    if not isinstance(prev, DLinear | DConv):
        raise ConfigError(f"module {name!r}: BatchNorm must follow a Linear or Conv2d to be "
                          f"folded into it (follows {type(prev).__name__[1:] if prev else 'the input'})")
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError(f"module {name!r}: BatchNorm without running statistics "
                          f"(track_running_stats=False) cannot be folded")
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    gamma = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + float(bn.eps))
    if s.size != prev.weight.shape[0]:
        raise ConfigError(f"module {name!r}: BatchNorm of {s.size} features after "
                          f"{prev.source!r} with {prev.weight.shape[0]} outputs")
    b = prev.bias if prev.bias is not None else np.zeros(s.size)
    prev.weight = prev.weight * s.reshape((-1,) + (1,) * (prev.weight.ndim - 1))
    prev.bias = s * (b - mean) + beta
    prev.source = f"{prev.source}+{name}"


# ----------------------------------------------------------------------------- neurons


def _neuron(name: str, m: nn.Module) -> DNeuron:
    """One SpikingJelly neuron layer as a :class:`DNeuron` (module docstring)."""
    _, _, neuron = _sj()
    vth = float(m.v_threshold)
    vr = None if m.v_reset is None else float(m.v_reset)
    if type(m) is neuron.IFNode:
        kind, k, decay_input = "if", 0.0, False
    elif type(m) is neuron.LIFNode:
        kind, k, decay_input = "lif", 1.0 / float(m.tau), bool(m.decay_input)
    else:  # ParametricLIFNode: 1/τ = sigmoid(w), computed in float64
        kind, decay_input = "lif", bool(m.decay_input)
        k = float(torch.sigmoid(m.w.detach().to(torch.float64)).item())
    alpha = 1.0 - k
    gain = k if decay_input else 1.0
    one = np.ones(1)
    common = {"source": name, "kind": kind, "alpha": alpha * one, "gain": gain * one,
              "bias": 0.0 * one, "v_reset": 0.0 * one, "spike_op": ">="}
    if vr is None:
        return DNeuron(**common, theta=vth * one, reset="subtract", reset_amount=vth * one)
    if vth - vr <= 0:
        raise ConfigError(f"module {name!r}: v_threshold {vth:g} ≤ v_reset {vr:g} (the neuron "
                          f"fires on every step)")
    return DNeuron(**common, theta=(vth - vr) * one, reset="zero")


# ----------------------------------------------------------------------------- graph


def _nodes(module: nn.Module) -> tuple[list[DNode], list[str]]:
    _, _, neuron = _sj()
    nodes: list[DNode] = []
    notes: list[str] = []
    for name, m in leaves(module):
        if type(m) in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode):
            nodes.append(_neuron(name, m))
            if m.v_reset not in (None, 0.0):
                notes.append(f"{name}: hard reset to v_reset = {m.v_reset:g} run as a reset to "
                             f"0 of u = V − v_reset with threshold v_threshold − v_reset (exact)")
        elif isinstance(m, nn.Linear):
            nodes.append(_linear(name, m))
        elif isinstance(m, nn.Conv2d):
            nodes.append(_conv(name, m))
        elif isinstance(m, nn.AvgPool2d):
            nodes.append(_avgpool(name, m))
        elif isinstance(m, nn.Flatten):
            nodes.append(_flatten(name, m))
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            _fold_bn(name, m, nodes[-1] if nodes else None)
            notes.append(f"{name}: BatchNorm folded into {nodes[-1].source.split('+')[0]!r}")
        else:  # Dropout, Identity: the identity at inference
            notes.append(f"{name}: {type(m).__name__} is the identity at inference, dropped")
    return nodes, notes


def semantics_of(nodes: list[DNode]) -> Semantics:
    resets = {n.reset for n in nodes if isinstance(n, DNeuron)}
    return Semantics(PRODUCER, DT, reset="subtract" if resets == {"subtract"} else "zero",
                     spike_op=">=")


def to_dgraph(module: nn.Module, input_shape: tuple[int, ...]) -> DGraph:
    """The chain of ``module``'s layers as a :class:`DGraph` (no check against its forward)."""
    nodes, notes = _nodes(module)
    if not any(isinstance(n, DNeuron) for n in nodes):
        raise ConfigError("the module has no SpikingJelly neuron layer")
    if not isinstance(nodes[-1], DNeuron):
        raise ConfigError(f"the last layer {nodes[-1].source!r} is not a neuron: the plan reads "
                          f"out the spike counts of a final neuron layer (add an IFNode/LIFNode "
                          f"after it)")
    shape = tuple(int(v) for v in input_shape)
    chain: list[DNode] = [DInput(source="input", in_shape=shape, out_shape=shape), *nodes,
                          DOutput(source="output")]
    names = ["input"] + [n.source.split("+")[0] for n in nodes] + ["output"]
    g = DGraph(nodes=dict(zip(names, chain, strict=True)),
               edges=list(zip(names[:-1], names[1:], strict=True)), semantics=semantics_of(nodes),
               notes=[f"SpikingJelly module {n}" for n in notes],
               metadata={"producer": PRODUCER})
    g.notes.insert(0, "SpikingJelly neurons: spike on V ≥ V_th (heaviside x ≥ 0), τ in steps "
                      "(dt = 1), hard reset to v_reset or soft reset by v_threshold")
    infer_shapes(g)
    return g


# ----------------------------------------------------------------------------- the check


def _step_mode(module: nn.Module) -> str:
    modes = {getattr(m, "step_mode", None) for m in module.modules()} - {None}
    if len(modes) > 1:
        raise ConfigError(f"the module mixes step modes {sorted(modes)}; set one with "
                          f"spikingjelly.activation_based.functional.set_step_mode")
    return modes.pop() if modes else "s"


def run_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's own forward of ``x`` ``[T, B, …]`` (states reset before), in its step
    mode: the whole sequence at once (``'m'``) or step by step (``'s'``)."""
    _, functional, _ = _sj()
    functional.reset_net(module)
    with torch.no_grad():
        if _step_mode(module) == "m":
            out = module(x)
        else:
            out = torch.stack([module(x[t]) for t in range(x.shape[0])])
    functional.reset_net(module)
    return out


def check(module: nn.Module, g: DGraph, seed: int = 0) -> tuple[int, int]:
    """Spikes of the module's own forward vs the graph's interpreter, float64, on random spike
    trains; returns (output values compared, output spikes among them) — all equal."""
    from neurodeploy.exporters.nir_interp import NIRModel

    ref = copy.deepcopy(module).to(torch.float64).eval()
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(g.nodes[g.input_name].out_shape)
    x = (torch.rand((CHECK_STEPS, CHECK_BATCH) + shape, generator=gen) < CHECK_RATE).double()
    try:
        want = run_module(ref, x)
    except Exception as exc:
        raise ConfigError(f"the module's own forward fails on spikes of shape "
                          f"{tuple(x.shape)} [T, B, C, H, W]: {type(exc).__name__}: {exc}") from exc
    got = NIRModel(g, dtype=torch.float64).run(x, record=False).output
    if want.numel() != got.numel():
        raise ConfigError(f"the module's forward gives {tuple(want.shape)}, the converted chain "
                          f"{tuple(got.shape)}: forward() is not its layers in order")
    bad = int((want.reshape(got.shape) != got).sum())
    if bad:
        raise ConfigError(f"the converted graph differs from the module's own forward in {bad} "
                          f"of {got.numel()} output values: forward() must run its layers in "
                          f"registration order, with nothing in between")
    return int(got.numel()), int(got.sum())


def convert(module: nn.Module, input_shape: tuple[int, ...], verify: bool = True) -> DGraph:
    """A SpikingJelly network → :class:`DGraph` (module docstring), checked against the
    module's own forward unless ``verify`` is False.

    Raises
    ------
    ConfigError
        A module with no conversion (named), a BatchNorm with nothing to fold into, a network
        whose forward the chain of its layers does not reproduce.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}")
    m = copy.deepcopy(module).eval()
    g = to_dgraph(m, input_shape)
    if verify:
        n, spikes = check(m, g)
        g.notes.append(f"checked: the converted graph reproduces the module's own forward "
                       f"({n} output values, {spikes} spikes, float64, {CHECK_STEPS} steps of "
                       f"random spikes)")
    return g


# ----------------------------------------------------------------------------- deploy


@dataclass(frozen=True)
class TorchModuleSpec:
    """``FILE.py:FACTORY`` and an optional state dict file."""

    path: str
    factory: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str, weights: str | None = None) -> TorchModuleSpec:
        path, sep, factory = str(text).rpartition(":")
        if not sep or not path.endswith(".py") or not factory.isidentifier():
            raise ConfigError(f"--torch-module {text!r}: expected FILE.py:FACTORY (a function "
                              f"or class in FILE.py that returns the nn.Module)")
        return cls(path, factory, weights)

    def __str__(self) -> str:
        return f"{self.path}:{self.factory}"


def load_module(spec: TorchModuleSpec) -> nn.Module:
    """Import ``spec.path``, call ``spec.factory()``, load ``spec.weights`` (a state dict)."""
    p = Path(spec.path)
    if not p.is_file():
        raise ConfigError(f"--torch-module: {spec.path!r} does not exist")
    _sj()
    mod_spec = importlib.util.spec_from_file_location(f"_nd_torch_module_{p.stem}", p)
    mod = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(mod)
        net = getattr(mod, spec.factory)()
    except AttributeError as exc:
        raise ConfigError(f"--torch-module {spec}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"--torch-module {spec}: building the module failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--torch-module {spec}: {spec.factory}() returned "
                          f"{type(net).__name__}, not a torch.nn.Module")
    if spec.weights:
        _load_weights(net, spec.weights)
    return net


def _load_weights(net: nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise CheckpointError(f"--weights {path!r} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"--weights {path!r} cannot be read as a state dict: "
                              f"{type(exc).__name__}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    try:
        net.load_state_dict(sd, strict=True)
    except Exception as exc:
        raise CheckpointError(f"--weights {path!r} does not fit the module: {exc}") from exc


def compile_module(module: nn.Module, profile: Any, num_steps: int,
                   input_shape: tuple[int, ...]) -> Any:
    """Convert, rewrite exactly, list the chip notes and compile: a
    :class:`~neurodeploy.exporters.nir_deploy.NIRDeployment` (its ``canonical`` graph is the
    standard NIR file of the network, in the neurodeploy convention)."""
    from neurodeploy.exporters.compiler import compile_graph
    from neurodeploy.exporters.nir_deploy import NIRDeployment, chip_notes
    from neurodeploy.exporters.nir_rewrite import rewrite_all
    from neurodeploy.exporters.nir_writers import to_canonical_nir

    if int(num_steps) < 1:
        raise ConfigError(f"--steps must be >= 1, got {num_steps}")
    g = rewrite_all(convert(module, input_shape))
    cnotes = chip_notes(g)
    canonical = to_canonical_nir(g, dt=DT)
    canonical.metadata["chip_notes"] = "\n".join(cnotes)
    canonical.metadata["num_steps"] = int(num_steps)
    shape = tuple(int(v) for v in g.nodes[g.input_name].out_shape)
    plan = compile_graph(canonical, profile, int(num_steps), shape)
    return NIRDeployment(plan=plan, dgraph=g, canonical=canonical, notes=tuple(g.notes),
                         chip_notes=tuple(cnotes))
