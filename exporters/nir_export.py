"""SpikingNet ⇄ NIR (Neuromorphic Intermediate Representation, nir 1.0.8).

Export
------
A :class:`~neurodeploy.models.SpikingNet` becomes a chain of standard NIR primitives::

    Input(C,H,W) → [Flatten] → Affine | Linear | Conv2d | AvgPool2d | SumPool2d → LIF → … → Output

One synaptic node and one neuron node per layer of the architecture string; node names are
``input``, ``flatten<k>``, ``fc<k>``/``conv<k>``/``avgpool<k>``/``sumpool<k>``, ``lif<k>``
(``if<k>`` when α = 1, ``li<k>`` for the non-spiking membrane read-out) and ``output``
(k = 1-based layer index). ``nir.write`` stores it in HDF5; ``nir.read`` reads it back with no
neurodeploy code.

Both directions are tables of one small converter per kind: :data:`SYNAPSE_WRITERS` /
:data:`NEURON_WRITERS` (model → NIR, here) and :data:`SYNAPSE_READERS` /
:data:`NEURON_READERS` (NIR → the compiler's chain, in
:mod:`~neurodeploy.exporters.nir_chain_nodes` with the constants of the mapping);
:func:`parse_graph`, the compiler's reader, walks the graph in
:mod:`~neurodeploy.exporters.nir_chain`. This module holds the export (:func:`to_nir`,
:func:`write_nir`, :func:`write_graph`, :func:`read_nir`) and its inverse :func:`from_nir`,
and re-exports the reader's names (:data:`__all__`). Graphs from other frameworks go through
:mod:`~neurodeploy.exporters.nir_import` (per-producer semantics, exact rewrites) first.

Discrete-time mapping (NIR is continuous-time and stores no time step)
----------------------------------------------------------------------
NIR's LIF is ``τ·dv/dt = (v_leak − v) + R·I``, spike ``z = [v > v_threshold]`` (strict),
``v ← v_reset`` on a spike. Forward Euler with step ``dt`` gives::

    v[t] = (1 − dt/τ)·v[t−1] + (R·dt/τ)·I[t]

so the canonical LIF ``m[t] = I[t] + α·m[t−1]·(1 − s[t−1])`` is written as::

    τ = dt / (1 − α),   R = 1 / (1 − α)   (input gain R·dt/τ = 1),   v_leak = 0,
    v_reset = 0,        v_threshold = θ

with ``dt = 1e-4`` s by default (snntorch's and the NIR paper's convention; ``to_nir(dt=…)``
changes it). ``dt`` is stored in the graph metadata (key ``"dt"``); readers that find no
``dt`` there assume 1e-4. α = 1 (no leak, τ = ∞) is written as NIR ``IF(r = 1)``. The
membrane read-out's non-spiking output layer is NIR ``LI`` with the same τ and R.

Every parameter is written as a **per-neuron array** of the layer's output shape (snntorch's
exporter breaks on scalar β/threshold, research/deploy_path.md §2.1).

Reset
-----
SpikingNet always resets to zero, which is what NIR's LIF (``v_reset``) and Lava's LIF express.
NIR cannot say "subtract"; the NIR docs say backends must not rely on metadata, so metadata is
only a *hint*: we write ``{"reset": "zero"}`` on every neuron node. :func:`parse_graph` (the
compiler's reader) reads the hints ``reset`` (``zero`` / ``subtract``) and ``reset_timing``
(``immediate`` / ``next-step``, snntorch's ``reset_delay``) and compiles them to the chip's
neuron kinds (``lif``, ``sublif``, ``sublif_delayed``, ``lif_delayed``); it also reads
CubaLIF (current decay ``du``) and ``neuron → Linear/Affine → neuron`` recurrent loops; it
refuses a non-zero ``v_leak`` on LIF or ``v_reset``, and per-neuron parameters that differ
within a layer (one ``du``/``dv``/``vth`` per population). A graph with no reset hint is taken
as reset-to-zero, the semantics NIR itself defines. Graphs from other frameworks should come
through :mod:`~neurodeploy.exporters.nir_deploy` (``export --nir``), which states their
semantics and rewrites ``v_leak``, pooling chains and per-neuron thresholds exactly first.
:func:`from_nir` (SpikingNet) still takes zero-reset feed-forward LIF/IF/LI graphs only.

TA-LIF (HoSNN's threshold-adaptive LIF) — a documented metadata extension
--------------------------------------------------------------------------
NIR has no adaptive-threshold primitive. A TA-LIF population (``neuron = "talif"``)::

    m[t] = I[t] + α·m[t−1]·(1 − s[t−1]);   θ[t] = θ[t−1] + θ_v ⊙ (m[t] − NDS[t]);
    s[t] = 1[m[t] > θ[t]];  θ[−1] = θ_base

is written as the **standard** ``LIF`` (``IF`` for α = 1) node of its base neuron — τ, R,
``v_threshold = θ_base`` exactly as above — plus node metadata (:data:`TALIF_META_KEY`)::

    {"neurodeploy.neuron": "talif",        # the extension marker (TALIF_META_KEY)
     "theta_v": float64 [*shape],          # per-neuron θ_v ≥ 0, per time step, dimensionless
     "nds":     float64 [T, *shape],       # NDS[t] in membrane units (same units as v_threshold)
     "theta_base": θ_base, "reset": "zero", "alpha": α, "theta": θ}

Standard NIR tools (``nir.read``, snntorch's importer, …) read the file and see the base LIF:
per the NIR docs metadata is only a hint, so they would run it as a **plain LIF** (θ fixed at
θ_base — exactly TA-LIF with θ_v = 0). neurodeploy's importer (:func:`from_nir`) and compiler
(:func:`parse_graph`) read the extension and rebuild / deploy the adaptive threshold; an
unknown value under :data:`TALIF_META_KEY` is refused rather than silently run as LIF.
θ_v is per *time step* (the discrete model's gain), not per second: ``dt`` does not rescale it.

Graph metadata (hints only; the arithmetic never depends on them except ``dt``): ``dt``,
``producer``, ``arch``, ``input_shape``, ``num_steps``, ``readout``, ``encoding``,
``surrogate``.

snntorch interoperability (snntorch 1.0.0 ``import_from_nir`` on our files)
--------------------------------------------------------------------------
Measured in ``tests/test_nir_export.py`` (run step by step, one sample at a time):

* FC (``Affine`` with bias) and conv + AvgPool2d + SumPool2d graphs with zero-reset LIF:
  spikes of **every layer identical** to ours over 24 steps. snntorch maps LIF →
  ``Leaky(β = 1 − dt/τ, reset_mechanism="zero")``; biases of ``Affine`` and ``Conv2d`` are kept
  (the "bias dropped on Affine import" defect of older versions is not in 1.0.0);
  ``SumPool2d`` falls back to nirtorch's default ``nn.LPPool2d(norm_type=1)``, which equals a
  sum for non-negative spikes.
* Defect 1 (pinned by a test): NIR ``Flatten`` dims exclude the batch (snntorch's own exporter
  shifts them by −1), but the importer maps ``Flatten(start_dim=0)`` to ``nn.Flatten(0, -1)``,
  so a *batched* input is flattened together with its batch dimension and the next ``Linear``
  fails (``mat1 and mat2 shapes cannot be multiplied (1x192 and 64x32)`` for B = 3).
  Workaround: feed one unbatched sample at a time.
* Defect 2 (pinned): NIR ``IF`` (our α = 1 layers) is imported as
  ``Leaky(beta=0.9, init_hidden=False)`` — a leak an IF does not have, and a module returning
  ``(spk, mem)`` inside the graph, so the next synapse fails with ``TypeError: linear():
  argument 'input' … must be Tensor, not tuple``. Fixed upstream after 1.0.0 (β = 1,
  snntorch PR #452). No-leak models therefore do not round-trip through snntorch 1.0.0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nir
import numpy as np

from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.exporters.nir_chain import (  # re-export: the compiler's reader
    ChainLayer,
    NIRChain,
    _meta_float,
    _meta_str,
    graph_dt,
    parse_graph,
)
from neurodeploy.exporters.nir_chain_nodes import (  # re-export: constants, node readers
    DEFAULT_DT,
    GAIN_TOL,
    NEURON_READERS,
    RESET_SUBTRACT,
    RESET_ZERO,
    SYNAPSE_READERS,
    TALIF,
    TALIF_META_KEY,
    Decay,
    _unrolled_conv,  # noqa: F401  (re-export: tests import it from here)
    conv_matrix,
)

if TYPE_CHECKING:  # pragma: no cover
    from neurodeploy.models import SpikingNet

__all__ = [
    "DEFAULT_DT", "GAIN_TOL", "LIF_EQUIVALENT_KINDS", "NEURON_READERS", "NEURON_WRITERS",
    "RESET_SUBTRACT", "RESET_ZERO", "SYNAPSE_READERS", "SYNAPSE_WRITERS", "TALIF",
    "TALIF_META_KEY", "ChainLayer", "Decay", "NIRChain", "conv_matrix", "from_nir", "graph_dt",
    "parse_graph", "read_nir", "to_nir", "write_graph", "write_nir",
]

# ----------------------------------------------------------------------------- export


def _neuron_arrays(alpha: float, theta: float, shape: tuple[int, ...], dt: float
                   ) -> dict[str, np.ndarray]:
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    if alpha >= 1.0:
        return {"r": full(1.0), "v_threshold": full(theta), "v_reset": full(0.0)}
    tau = dt / (1.0 - alpha)
    return {"tau": full(tau), "r": full(1.0 / (1.0 - alpha)), "v_leak": full(0.0),
            "v_threshold": full(theta), "v_reset": full(0.0)}


# Hidden-neuron kinds whose *inference* dynamics are the canonical LIF, with the predicate that
# must hold for a given module. TGO's noisy LIF without noise at inference is exactly the
# canonical LIF in eval mode (the noise is a training-time regulariser).
LIF_EQUIVALENT_KINDS: dict[str, Callable[[Any], bool]] = {
    "noisy": lambda n: not getattr(n, "noise_at_inference", True),
}


def _exports_as_lif(neuron: Any) -> bool:
    pred = LIF_EQUIVALENT_KINDS.get(getattr(neuron, "kind", ""))
    return pred is not None and bool(pred(neuron))


def _hint_params(neuron: Any) -> dict[str, float]:
    return {k: getattr(neuron, k) for k in ("sigma",) if isinstance(getattr(neuron, k, None),
                                                                     float | int)}


# ----------------------------------------------------------------------------- writer tables
# One small converter per layer kind and per neuron kind (model → NIR node); to_nir looks them
# up. A new kind is one function and one table entry.


def _write_fc(spec: Any, syn: Any) -> nir.NIRNode:
    w = syn.weight.detach().cpu().numpy().copy()
    if syn.bias is not None:
        return nir.Affine(weight=w, bias=syn.bias.detach().cpu().numpy().copy())
    return nir.Linear(weight=w)


def _write_conv(spec: Any, syn: Any) -> nir.NIRNode:
    w = syn.weight.detach().cpu().numpy().copy()
    b = (syn.bias.detach().cpu().numpy().copy() if syn.bias is not None
         else np.zeros(w.shape[0], dtype=w.dtype))
    return nir.Conv2d(input_shape=tuple(spec.in_shape[1:]), weight=w, stride=spec.stride,
                      padding=spec.padding, dilation=1, groups=1, bias=b)


def _write_pool(spec: Any, syn: Any) -> nir.NIRNode:
    cls = nir.AvgPool2d if spec.kind == "avgpool" else nir.SumPool2d
    return cls(kernel_size=np.array([spec.kernel, spec.kernel]),
               stride=np.array([spec.stride, spec.stride]), padding=np.array([0, 0]))


SYNAPSE_WRITERS: dict[str, Callable[[Any, Any], nir.NIRNode]] = {
    "fc": _write_fc, "conv": _write_conv, "avgpool": _write_pool, "sumpool": _write_pool,
}
"""Layer kind of the architecture string → its NIR synapse node."""


def _is_li(neuron: Any) -> bool:
    from neurodeploy.neurons import LeakyIntegrator

    return isinstance(neuron, LeakyIntegrator)


def _is_talif(neuron: Any) -> bool:
    return getattr(neuron, "kind", None) == TALIF


def _is_lif(neuron: Any) -> bool:
    from neurodeploy.neurons import LIF

    return type(neuron) is LIF or _exports_as_lif(neuron)


def _write_li(neuron: Any, shape: tuple[int, ...], dt: float, meta: dict[str, Any], where: str,
              last: bool) -> tuple[str, nir.NIRNode]:
    if not last:
        raise ConfigError(f"{where}: a non-spiking LI layer can only be the output layer")
    if neuron.alpha >= 1.0:
        raise ConfigError(f"{where}: membrane read-out with α = 1 (a perfect integrator) has no "
                          f"NIR LI equivalent")
    arr = _neuron_arrays(neuron.alpha, 0.0, shape, dt)
    return "li", nir.LI(tau=arr["tau"], r=arr["r"], v_leak=arr["v_leak"], metadata=meta)


def _write_lif_like(neuron: Any, shape: tuple[int, ...], dt: float, meta: dict[str, Any]
                    ) -> tuple[str, nir.NIRNode]:
    arr = _neuron_arrays(neuron.alpha, neuron.theta, shape, dt)
    if neuron.alpha >= 1.0:
        return "if", nir.IF(**arr, metadata=meta)
    return "lif", nir.LIF(**arr, metadata=meta)


def _write_talif(neuron: Any, shape: tuple[int, ...], dt: float, meta: dict[str, Any],
                 where: str, last: bool) -> tuple[str, nir.NIRNode]:
    meta.update(_talif_metadata(neuron, shape, where))
    return _write_lif_like(neuron, shape, dt, meta)


def _write_lif(neuron: Any, shape: tuple[int, ...], dt: float, meta: dict[str, Any],
               where: str, last: bool) -> tuple[str, nir.NIRNode]:
    if getattr(neuron, "kind", "lif") != "lif":
        meta["trained_as"] = str(neuron.kind)
        meta.update({k: float(v) for k, v in _hint_params(neuron).items()})
    return _write_lif_like(neuron, shape, dt, meta)


NEURON_WRITERS: tuple[tuple[Callable[[Any], bool], Callable[..., tuple[str, nir.NIRNode]]],
                      ...] = ((_is_li, _write_li), (_is_talif, _write_talif),
                              (_is_lif, _write_lif))
"""(accepts(neuron), writer) pairs, first match wins: writer(neuron, shape, dt, metadata,
where, is_last_layer) → (node name prefix, NIR node). A neuron no entry accepts is refused."""


def _inexpressible(neuron: Any, where: str) -> str:
    kind = getattr(neuron, "kind", type(neuron).__name__)
    extra = (" (noise kept at inference: ξ has no NIR primitive; export with "
             "noise_at_inference off to deploy the deterministic LIF)"
             if getattr(neuron, "stochastic", False)
             or getattr(neuron, "noise_at_inference", False) else "")
    return (f"{where}: neuron kind {kind!r} cannot be expressed in NIR{extra}; only the "
            f"canonical zero-reset LIF exports")


def to_nir(model: SpikingNet, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """Export ``model`` as a standard NIR graph (see the module docstring for the mapping).

    TA-LIF populations are written as their base LIF node plus the documented metadata
    extension (module docstring, "TA-LIF").

    Raises
    ------
    ConfigError
        For neurons NIR cannot express: noisy neurons that keep their noise at inference, or
        anything else that is not the canonical zero-reset LIF or TA-LIF. TGO's noisy LIF
        *without* noise at inference is exported as the plain LIF it is in eval mode (metadata
        ``trained_as = "noisy"``, ``sigma``).
    """
    if not (isinstance(dt, float | int) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    dt = float(dt)
    cfg = model.config
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array(cfg.input_shape)})
    }
    edges: list[tuple[str, str]] = []
    prev = "input"
    n = len(model.layer_specs)
    for i, (spec, syn, neuron) in enumerate(
        zip(model.layer_specs, model.synapses, model.neurons, strict=True)
    ):
        k = i + 1
        if spec.flatten_before:
            name = f"flatten{k}"
            nodes[name] = nir.Flatten(input_type={"input": np.array(spec.in_shape)},
                                      start_dim=0, end_dim=-1)
            edges.append((prev, name))
            prev = name
        syn_name = f"{'fc' if spec.kind == 'fc' else spec.kind}{k}"
        nodes[syn_name] = SYNAPSE_WRITERS[spec.kind](spec, syn)
        edges.append((prev, syn_name))
        prev = syn_name
        meta = {"reset": RESET_ZERO, "alpha": float(neuron.alpha), "theta": float(neuron.theta)}
        where = f"layer {k} ({spec.token})"
        writer = next((w for accepts, w in NEURON_WRITERS if accepts(neuron)), None)
        if writer is None:
            raise ConfigError(_inexpressible(neuron, where))
        prefix, nodes_neuron = writer(neuron, tuple(spec.out_shape), dt, meta, where, k == n)
        neu_name = f"{prefix}{k}"
        nodes[neu_name] = nodes_neuron
        edges.append((prev, neu_name))
        prev = neu_name
    nodes["output"] = nir.Output(output_type={"output": np.array(model.layer_specs[-1].out_shape)})
    edges.append((prev, "output"))
    from neurodeploy import __version__

    metadata = {
        "dt": dt,
        "producer": f"neurodeploy {__version__}",
        "arch": cfg.arch,
        "input_shape": np.array(cfg.input_shape),
        "num_steps": int(cfg.num_steps),
        "readout": cfg.readout,
        "encoding": cfg.encoding,
        "surrogate": cfg.surrogate,
        "reset": RESET_ZERO,
        "time_step_convention": "tau = dt/(1-alpha), r = 1/(1-alpha), forward Euler",
    }
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except Exception as exc:  # NIR raises bare ValueError / AssertionError
        raise ConfigError(f"NIR rejected the exported graph: {exc}") from exc


def _talif_metadata(neuron: Any, shape: tuple[int, ...], where: str) -> dict[str, Any]:
    """The TA-LIF metadata extension of one population (θ_v, NDS as float64 arrays)."""
    theta_v = neuron.theta_v.detach().cpu().double().numpy().copy()
    nds = neuron.nds.detach().cpu().double().numpy().copy()
    if theta_v.shape != shape or nds.shape[1:] != shape:
        raise ConfigError(f"{where}: TA-LIF θ_v {theta_v.shape} / NDS {nds.shape} do not match "
                          f"the layer shape {shape}")
    if not (np.all(np.isfinite(theta_v)) and np.all(np.isfinite(nds))):
        raise ConfigError(f"{where}: TA-LIF θ_v or NDS contain NaN/inf")
    if np.any(theta_v < 0):
        raise ConfigError(f"{where}: TA-LIF θ_v has negative entries (min {theta_v.min():g}); "
                          f"θ_v ≥ 0 (clamp it, HoSNN's weight clipper)")
    return {TALIF_META_KEY: TALIF, "theta_v": theta_v, "nds": nds,
            "theta_base": float(neuron.theta)}


def write_nir(model: SpikingNet, path: str | os.PathLike, dt: float = DEFAULT_DT) -> Path:
    """Export ``model`` and write it with ``nir.write`` atomically (temp file + rename)."""
    graph = to_nir(model, dt=dt)
    return write_graph(graph, path)


def write_graph(graph: nir.NIRGraph, path: str | os.PathLike) -> Path:
    """``nir.write`` to a temporary file in the same folder, then rename into place."""
    from neurodeploy.atomicio import write_with  # mode from the umask, temp removed on failure

    path = Path(path)
    write_with(path, lambda tmp: nir.write(tmp, graph), suffix=".nir")
    return path


def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """``nir.read`` with a clear error for a missing, corrupt or non-standard file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"NIR file {str(path)!r} does not exist")
    from neurodeploy.exporters.nir_import import check_graph_arrays

    try:
        graph = nir.read(str(path))
    except AssertionError as exc:  # nir asserts on unknown node types
        raise CheckpointError(f"NIR file {str(path)!r} holds a node type nir 1.0.8 does not "
                              f"know ({exc or 'unknown type'})") from exc
    except Exception as exc:
        raise CheckpointError(f"NIR file {str(path)!r} cannot be read: "
                              f"{type(exc).__name__}: {exc}") from exc
    return check_graph_arrays(graph, f"NIR file {str(path)!r}")  # real numbers only


def _exact_param(value: float, hint: float | None) -> float:
    """Prefer the metadata hint when it agrees with the value derived from τ (round-off only)."""
    if hint is not None and abs(hint - value) <= GAIN_TOL * max(1.0, abs(value)):
        return hint
    return value


# ----------------------------------------------------------------------------- import


def from_nir(graph_or_path: nir.NIRGraph | str | os.PathLike,
             num_steps: int | None = None) -> SpikingNet:
    """Build a :class:`SpikingNet` from a NIR graph (or a ``.nir`` file) — the inverse of
    :func:`to_nir`.

    TA-LIF nodes (the metadata extension) make a ``neuron = "talif"`` model with their θ_v and
    NDS; a plain-LIF hidden layer of such a graph becomes a TA-LIF with θ_v = 0 and NDS = 0
    (the same dynamics). The output layer must be plain LIF (SpikingNet's TA-LIF models keep
    a LIF output, as HoSNN does), and the NDS length must equal ``num_steps``.

    ``num_steps`` defaults to the graph metadata's ``num_steps`` (or the NDS length, or 10).
    The architecture string is rebuilt from the node chain; α and θ must be the same in every
    layer (SpikingNet has one of each). Read-out/encoding/surrogate come from metadata hints when present
    (``membrane`` is forced by an ``LI`` output layer).

    Raises
    ------
    ConfigError
        For graphs SpikingNet cannot express (naming the node).
    """
    from neurodeploy.models import ModelConfig, build_model

    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_nir(
        graph_or_path)
    chain = parse_graph(graph)
    meta = chain.metadata
    arch = "-".join([_arch_token(L) for L in chain.layers])
    alpha, theta = _shared_alpha_theta(chain)
    readout = _spiking_net_readout(chain)
    weighted = [L for L in chain.layers if L.weight is not None]
    bias = any(L.bias is not None and np.any(L.bias != 0) for L in weighted)
    talif_layers, num_steps = _talif_layers_and_steps(chain, num_steps)
    encoding = _meta_str(meta, "encoding", "bernoulli")
    if encoding not in ("bernoulli", "direct", "spikes"):
        raise ConfigError(f"graph metadata encoding = {encoding!r} is not one of 'bernoulli', "
                          f"'direct', 'spikes'")
    surrogate = _meta_str(meta, "surrogate", "rect")
    try:
        config = ModelConfig(
            arch=arch, input_shape=chain.input_shape, num_steps=int(num_steps),
            alpha=alpha, theta=theta, surrogate=surrogate, readout=readout,
            encoding=encoding,
            bias=bias, neuron=TALIF if talif_layers else "lif",
        )
        model = build_model(config)
    except ConfigError as exc:
        raise ConfigError(f"NIR graph cannot be built as a SpikingNet: {exc}") from exc
    _check_out_shapes(chain, model)
    _load_parameters(chain, model, talif_layers, num_steps)
    model.eval()
    return model


def _arch_token(L: ChainLayer) -> str:
    """The architecture-string token of one chain layer (``FC…``, ``C…K…S…P…``, ``AP…``,
    ``SP…``), refusing the synapses SpikingNet has no layer for."""
    where = f"layer {L.index} (node {L.synapse_node!r})"
    if L.kind == "fc":
        return f"FC{L.out_shape[0]}"
    if L.kernel[0] != L.kernel[1] or L.stride[0] != L.stride[1] or \
            L.padding[0] != L.padding[1]:
        raise ConfigError(f"{where}: SpikingNet needs square kernels and equal strides/"
                          f"padding, got kernel {L.kernel}, stride {L.stride}, "
                          f"padding {L.padding}")
    kk, ss, pp = L.kernel[0], L.stride[0], L.padding[0]
    if L.kind == "conv":
        if L.groups != 1:
            raise ConfigError(f"{where}: grouped convolution (groups={L.groups}) is not a "
                              f"SpikingNet layer")
        return f"C{L.out_shape[0]}K{kk}S{ss}P{pp}"
    if ss != kk:
        raise ConfigError(f"{where}: SpikingNet pooling has stride = kernel, got "
                          f"kernel {kk}, stride {ss}")
    return f"{'AP' if L.kind == 'avgpool' else 'SP'}{kk}"


def _shared_alpha_theta(chain: NIRChain) -> tuple[float, float]:
    """SpikingNet's one α (layer 1's) and one θ (the first layer that has one, else 0.25),
    after every layer passed :func:`_check_neuron_layer` against them."""
    first = chain.layers[0]
    alpha = _exact_param(first.alpha, first.alpha_hint)
    theta_layers = [L for L in chain.layers if L.theta is not None]
    theta = (_exact_param(theta_layers[0].theta, theta_layers[0].theta_hint)
             if theta_layers else 0.25)
    for L in chain.layers:
        _check_neuron_layer(L, alpha, theta, len(chain.layers))
    if not 0.0 <= alpha <= 1.0:  # parse_graph refuses these; no clamping here
        raise ConfigError(f"α = {alpha!r} outside [0, 1]")
    return alpha, theta


def _check_neuron_layer(L: ChainLayer, alpha: float, theta: float, n_layers: int) -> None:
    """Refuse a layer SpikingNet cannot run: recurrence, skips, per-neuron decays, CubaLIF, a
    non-zero reset, an α or θ other than the model's, an LI population before the output."""
    if L.rec_weight is not None:
        raise ConfigError(f"layer {L.index} (node {L.rec_node!r}): a recurrent connection "
                          f"is not a SpikingNet layer (run the graph with "
                          f"neurodeploy.exporters.nir_interp.NIRModel instead)")
    if L.skips:
        raise ConfigError(f"{L.skip_labels[0]}: SpikingNet is a chain (run the graph with "
                          f"neurodeploy.exporters.nir_interp.NIRModel instead)")
    if L.alphas is not None:
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): per-neuron decays; "
                          f"SpikingNet has one α (run the graph with "
                          f"neurodeploy.exporters.nir_interp.NIRModel instead)")
    if L.neuron in ("cubalif", "cubali"):
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): CubaLIF has a synaptic "
                          f"current SpikingNet does not model (run the graph with "
                          f"neurodeploy.exporters.nir_interp.NIRModel instead)")
    if L.reset != RESET_ZERO:
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): reset {L.reset!r}; "
                          f"SpikingNet resets to zero (run the graph with "
                          f"neurodeploy.exporters.nir_interp.NIRModel instead)")
    a = _exact_param(L.alpha, L.alpha_hint)
    if a != alpha:
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): α = {a!r} differs from "
                          f"layer 1's α = {alpha!r}; SpikingNet has one α for all layers")
    if L.theta is not None and _exact_param(L.theta, L.theta_hint) != theta:
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): θ = {L.theta!r} differs "
                          f"from θ = {theta!r}; SpikingNet has one θ for all layers")
    if L.neuron == "li" and L.index != n_layers:
        raise ConfigError(f"layer {L.index}: LI only as the output layer")


def _spiking_net_readout(chain: NIRChain) -> str:
    """``membrane`` for an LI output layer, else the metadata hint (default ``count``)."""
    from neurodeploy.models import READOUTS

    if chain.layers[-1].neuron == "li":
        return "membrane"
    readout = _meta_str(chain.metadata, "readout", "count")  # NIR's own reading: spike counts
    if readout not in READOUTS or readout == "membrane":
        raise ConfigError(f"graph metadata readout = {readout!r}: a spiking output layer "
                          f"reads out one of {[r for r in READOUTS if r != 'membrane']}")
    return readout


def _talif_layers_and_steps(chain: NIRChain, num_steps: int | None
                            ) -> tuple[list[ChainLayer], int]:
    """The TA-LIF layers (hidden only) and the step count: the caller's, else the metadata's,
    else the NDS length, else 10; every NDS must have that many steps."""
    talif_layers = [L for L in chain.layers if L.is_talif]
    if talif_layers and chain.layers[-1].is_talif:
        L = chain.layers[-1]
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): a TA-LIF output layer is "
                          f"not a SpikingNet layer (TA-LIF models keep a plain LIF output)")
    nds_steps = {int(L.nds.shape[0]) for L in talif_layers}
    if len(nds_steps) > 1:
        raise ConfigError(f"TA-LIF layers have NDS of different lengths {sorted(nds_steps)}")
    if num_steps is None:
        num_steps = int(_meta_float(chain.metadata, "num_steps") or
                        (nds_steps.pop() if nds_steps else 10))
    for L in talif_layers:
        if L.nds.shape[0] != int(num_steps):
            raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): NDS has "
                              f"{L.nds.shape[0]} steps, the model runs {int(num_steps)}")
    return talif_layers, num_steps


def _check_out_shapes(chain: NIRChain, model: SpikingNet) -> None:
    """The built model's layer output shapes must be the graph's."""
    for L, spec in zip(chain.layers, model.layer_specs, strict=True):
        if tuple(spec.out_shape) != tuple(L.out_shape):
            raise ConfigError(f"layer {L.index} (node {L.synapse_node!r}): output shape "
                              f"{L.out_shape} != SpikingNet's {spec.out_shape}")


def _load_parameters(chain: NIRChain, model: SpikingNet, talif_layers: list[ChainLayer],
                     num_steps: int) -> None:
    """Copy the graph's weights and biases (and the TA-LIF θ_v / NDS; zero for plain-LIF
    hidden layers of a TA-LIF model) into the built model."""
    import torch

    with torch.no_grad():
        for L, syn in zip(chain.layers, model.synapses, strict=True):
            if L.weight is None:
                continue
            syn.weight.copy_(torch.as_tensor(L.weight, dtype=syn.weight.dtype))
            if syn.bias is not None:
                b = L.bias if L.bias is not None else np.zeros(L.weight.shape[0])
                syn.bias.copy_(torch.as_tensor(b, dtype=syn.bias.dtype))
        if talif_layers:
            for L, neuron in zip(chain.layers[:-1], model.neurons[:-1], strict=True):
                theta_v = L.theta_v if L.is_talif else np.zeros(L.out_shape)
                nds = L.nds if L.is_talif else np.zeros((int(num_steps),) + L.out_shape)
                neuron.theta_v.copy_(torch.as_tensor(theta_v, dtype=neuron.theta_v.dtype))
                neuron.set_nds(torch.as_tensor(nds, dtype=neuron.nds.dtype))
