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
:data:`NEURON_WRITERS` (model → NIR) and :data:`SYNAPSE_READERS` / :data:`NEURON_READERS`
(NIR → the compiler's chain). Graphs from other frameworks go through
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nir
import numpy as np

from neurodeploy.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from neurodeploy.models import SpikingNet

DEFAULT_DT = 1e-4
"""Seconds per time step assumed by the NIR mapping (snntorch / NIR paper convention)."""

GAIN_TOL = 1e-9
"""Relative tolerance for "input gain R·dt/τ equals 1" and for uniform per-neuron parameters:
float64 round-off of τ = dt/(1−α), R = 1/(1−α); anything larger is a real difference."""

RESET_ZERO = "zero"
RESET_SUBTRACT = "subtract"

TALIF_META_KEY = "neurodeploy.neuron"
"""Neuron-node metadata key marking neurodeploy's neuron extensions (value ``"talif"``)."""

TALIF = "talif"


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
    from neurodeploy.exporters.nir_load import check_graph_arrays

    try:
        graph = nir.read(str(path))
    except AssertionError as exc:  # nir asserts on unknown node types
        raise CheckpointError(f"NIR file {str(path)!r} holds a node type nir 1.0.8 does not "
                              f"know ({exc or 'unknown type'})") from exc
    except Exception as exc:
        raise CheckpointError(f"NIR file {str(path)!r} cannot be read: "
                              f"{type(exc).__name__}: {exc}") from exc
    return check_graph_arrays(graph, f"NIR file {str(path)!r}")  # real numbers only


# ----------------------------------------------------------------------------- parsing


def _pair(v: Any, what: str, where: str) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise ConfigError(f"{where}: {what} {v!r} is not an int or a pair")


def _float_tol(*arrays: Any) -> float:
    """Relative tolerance of "equals 1" / "equals 0" tests: float32 round-off (8 ulp) when a
    producer wrote float32 (snntorch: β = 0.9 → r = 9.999997), float64 round-off otherwise."""
    if any(np.asarray(a).dtype == np.float32 for a in arrays if a is not None):
        return 8 * float(np.finfo(np.float32).eps)
    return GAIN_TOL


def _uniform(arr: Any, field_name: str, where: str, allow_inf: bool = False) -> float:
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"{where}: {field_name} is empty")
    if allow_inf and np.all(np.isposinf(a)):
        return math.inf
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{where}: {field_name} holds NaN/inf")
    v = float(a[0])
    if np.any(np.abs(a - v) > GAIN_TOL * max(1.0, abs(v))):
        raise ConfigError(
            f"{where}: {field_name} differs between neurons ({a.min():g} … {a.max():g}); a Lava "
            f"LIF population (and SpikingNet) has one {field_name} per layer — the NIR "
            f"interpreter (exporters.nir_interp) runs per-neuron values; to deploy, give the "
            f"population one value"
        )
    return v


def _per_neuron(arr: Any, field_name: str, where: str, allow_inf: bool = False
                ) -> float | np.ndarray:
    """One value when the population has one (within :data:`GAIN_TOL`), else the flat
    per-neuron float64 array (NaN refused; ∞ only with ``allow_inf``)."""
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"{where}: {field_name} is empty")
    if np.any(np.isnan(a)) or (not allow_inf and not np.all(np.isfinite(a))):
        raise ConfigError(f"{where}: {field_name} holds NaN/inf")
    v = float(a[0])
    if np.all(a == v) or (math.isfinite(v) and np.all(np.isfinite(a)) and np.all(
            np.abs(a - v) <= GAIN_TOL * max(1.0, abs(v)))):
        return v
    return a


def _collapse(a: np.ndarray) -> float | np.ndarray:
    """A per-neuron array whose entries are all equal → that value."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return float(a[0]) if np.all(a == a[0]) else a


def _all_zero(arr: Any, field_name: str, where: str) -> None:
    if arr is None:
        return
    a = np.asarray(arr, dtype=np.float64)
    if np.any(a != 0):
        raise ConfigError(f"{where}: {field_name} must be 0 (got values up to "
                          f"{np.abs(a).max():g}); `export --nir` (exporters.nir_deploy) rewrites "
                          f"v_leak into the synapse bias")


def _check_reset_hint(node: nir.NIRNode, where: str) -> str:
    """The node's reset from its metadata hint: ``zero`` (also without a hint, NIR's own
    semantics) or ``subtract`` (compiled to the subtract-reset neuron); anything else refused."""
    meta = getattr(node, "metadata", None) or {}
    hint = None
    for key in ("reset", "reset_mechanism", "snntorch_reset"):
        if key in meta:
            hint = str(np.asarray(meta[key]).item() if isinstance(meta[key], np.ndarray)
                       else meta[key])
            break
    if hint is None or hint.lower() == RESET_ZERO:
        return RESET_ZERO
    if hint.lower() == RESET_SUBTRACT:
        return RESET_SUBTRACT
    raise ConfigError(
        f"{where}: metadata says reset {hint!r}; known resets are 'zero' (Lava's LIF) and "
        f"'subtract' (the sublif neuron)")


Decay = float | np.ndarray
"""One value for the population, or one per neuron (flat) where they differ."""


def _euler_decay(tau: Decay, dt: float, tol: float, what: str, where: str) -> Decay:
    """``1 − dt/τ`` per neuron (τ = ∞ → 1), snapping float32 round-off of τ = dt to 0."""
    t = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if np.any(t <= 0):
        raise ConfigError(f"{where}: {what} must be > 0, got {t.min():g}")
    with np.errstate(divide="ignore"):
        a = np.where(np.isinf(t), 1.0, 1.0 - dt / t)
    a = np.where((a < 0) & (a >= -tol), 0.0, a)  # τ = dt written in float32 (snntorch β = 0)
    if np.any(a < 0):
        raise ConfigError(f"{where}: {what} = {t.min():g} < dt = {dt:g} gives a negative decay "
                          f"1 − dt/τ = {a.min():g}; use the producer's dt (graph metadata "
                          f"'dt', or export --nir … --dt)")
    return float(a[0]) if np.ndim(tau) == 0 else _collapse(a)


def _gain(gain: np.ndarray | float, tol: float) -> Decay:
    """Input gains within ``tol`` of 1 are 1 (float round-off); one value or per neuron."""
    g = np.atleast_1d(np.asarray(gain, dtype=np.float64))
    g = np.where(np.abs(g - 1.0) <= tol, 1.0, g)
    return _collapse(g)


def _lif_params(node: nir.LIF, where: str, dt: float, last: bool
                ) -> tuple[str, Decay, float | None, Decay]:
    tau = _per_neuron(node.tau, "tau", where, allow_inf=True)
    r = _per_neuron(node.r, "r", where, allow_inf=True)
    _all_zero(node.v_leak, "v_leak", where)
    _all_zero(node.v_reset, "v_reset", where)
    tol = _float_tol(node.tau, node.r)
    t_inf, r_b = np.broadcast_arrays(np.isinf(np.asarray(tau)), np.asarray(r, np.float64))
    if np.any(t_inf & ~np.isinf(r_b)):
        raise ConfigError(f"{where}: τ = ∞ with finite r gives input gain 0; write the "
                          f"population as IF")
    alpha = _euler_decay(tau, dt, tol, "tau", where)
    theta = _uniform(node.v_threshold, "v_threshold", where)
    # τ = r = ∞ (snntorch β = 1): the limit of r·dt/τ under r = τ/dt is 1
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(t_inf, 1.0, r_b * dt / np.where(t_inf, 1.0, np.asarray(tau, np.float64)))
    kind = "if" if np.all(np.asarray(alpha) == 1.0) else "lif"
    return kind, alpha, theta, _gain(gain, tol)


def _if_params(node: nir.IF, where: str, dt: float, last: bool
               ) -> tuple[str, Decay, float | None, Decay]:
    _all_zero(node.v_reset, "v_reset", where)
    return "if", 1.0, _uniform(node.v_threshold, "v_threshold", where), _gain(
        _per_neuron(node.r, "r", where), _float_tol(node.r))


def _li_params(node: nir.LI, where: str, dt: float, last: bool
               ) -> tuple[str, Decay, float | None, Decay]:
    if not last:
        raise ConfigError(f"{where}: a non-spiking LI population is only supported as the "
                          f"output layer (its membrane is the read-out)")
    tau = _per_neuron(node.tau, "tau", where)
    _all_zero(node.v_leak, "v_leak", where)
    alpha = _euler_decay(tau, dt, _float_tol(node.tau, node.r), "tau", where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau)
    return "li", alpha, None, _gain(gain, _float_tol(node.tau, node.r))


def _i_params(node: nir.I, where: str, dt: float, last: bool
              ) -> tuple[str, Decay, float | None, Decay]:
    """NIR ``I`` (``dv/dt = R·I``): a non-leaky read-out, LI with α = 1 and gain r."""
    if not last:
        raise ConfigError(f"{where}: a non-spiking I population is only supported as the "
                          f"output layer (its membrane is the read-out)")
    return "li", 1.0, None, _gain(_per_neuron(node.r, "r", where), _float_tol(node.r))


def _cubali_params(node: nir.CubaLI, where: str, dt: float, last: bool
                   ) -> tuple[str, Decay, float | None, Decay]:
    """NIR ``CubaLI``: CubaLIF's current and membrane without the spike (the read-out)."""
    if not last:
        raise ConfigError(f"{where}: a non-spiking CubaLI population is only supported as "
                          f"the output layer (its membrane is the read-out)")
    tau = _per_neuron(node.tau_mem, "tau_mem", where)
    tol = _float_tol(node.tau_mem, node.r, node.tau_syn, node.w_in)
    alpha = _euler_decay(tau, dt, tol, "tau_mem", where)
    _beta, syn_gain = _current_decay(node, dt, where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau) * np.asarray(
        syn_gain)
    return "cubali", alpha, None, _gain(gain, tol)


def _cubalif_params(node: nir.CubaLIF, where: str, dt: float, last: bool
                    ) -> tuple[str, Decay, float | None, Decay]:
    tau = _per_neuron(node.tau_mem, "tau_mem", where)
    _all_zero(node.v_reset, "v_reset", where)  # v_leak: the plan's bias (parse_graph)
    tol = _float_tol(node.tau_mem, node.r, node.tau_syn, node.w_in)
    alpha = _euler_decay(tau, dt, tol, "tau_mem", where)
    theta = _uniform(node.v_threshold, "v_threshold", where)
    beta, syn_gain = _current_decay(node, dt, where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau) * np.asarray(
        syn_gain)
    return "cubalif", alpha, theta, _gain(gain, tol)


NEURON_READERS: dict[type, Callable[..., tuple[str, Decay, float | None, Decay]]] = {
    nir.LIF: _lif_params, nir.IF: _if_params, nir.LI: _li_params, nir.CubaLIF: _cubalif_params,
    nir.I: _i_params, nir.CubaLI: _cubali_params,
}
"""NIR neuron type → (kind, α, θ, input gain) reader for the compiler's chain."""


def _neuron_params(node: nir.NIRNode, name: str, dt: float, last: bool
                   ) -> tuple[str, float, float | None, float]:
    """(kind, alpha, theta, gain) of a neuron node, validated (one reader per NIR type)."""
    where = f"node {name!r} ({type(node).__name__})"
    reader = NEURON_READERS.get(type(node))
    if reader is None:
        raise ConfigError(
            f"{where}: unsupported neuron node; supported: LIF (v_leak = 0, v_reset = 0), IF, "
            f"CubaLIF, and LI, CubaLI, I as the output layer (membrane read-out)")
    return reader(node, where, dt, last)


def _current_decay(node: nir.CubaLIF, dt: float, where: str) -> tuple[Decay, Decay]:
    """(β, input gain) of CubaLIF's current ``τ_syn·dI/dt = −I + w_in·S`` (Euler at dt), one
    value or one per neuron each."""
    tau_syn = _per_neuron(node.tau_syn, "tau_syn", where)
    beta = _euler_decay(tau_syn, dt, _float_tol(node.tau_syn), "tau_syn", where)
    if np.any(np.asarray(beta) >= 1.0):
        raise ConfigError(f"{where}: tau_syn = ∞ (no current decay) has no chip mapping")
    gain = np.asarray(_per_neuron(node.w_in, "w_in", where)) * dt / np.asarray(tau_syn)
    return beta, _collapse(gain) if np.ndim(gain) else float(gain)


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


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


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                stride: tuple[int, int], padding: tuple[int, int], groups: int) -> np.ndarray:
    """A grouped 2-D convolution ``(C, H, W) → (C', H', W')`` as the dense matrix
    ``[C'·H'·W', C·H·W]`` (flat C·H·W orders; exact: every entry is a sum of kernel taps, one
    tap unless the kernel overlaps itself, or 0)."""
    C, H, W = in_shape
    Co, Ho, Wo = out_shape
    w = np.asarray(weight, dtype=np.float64)
    _, cin_g, kh, kw = w.shape
    cout_g = Co // groups
    i_in = np.arange(C * H * W).reshape(C, H, W)
    i_out = np.arange(Co * Ho * Wo).reshape(Co, Ho, Wo)
    m = np.zeros((Co * Ho * Wo, C * H * W))
    for o in range(Co):
        c0 = (o // cout_g) * cin_g  # the output channel's group reads channels c0 … c0+cin_g
        for y in range(Ho):
            for x in range(Wo):
                for ci in range(cin_g):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = y * stride[0] - padding[0] + ky
                            ix = x * stride[1] - padding[1] + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                m[i_out[o, y, x], i_in[c0 + ci, iy, ix]] += w[o, ci, ky, kx]
    return m


def _unrolled_conv(node: nir.Conv2d, shape: tuple[int, ...], where: str
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """A recurrent ``Conv2d`` from a ``(C, H, W)`` population onto itself as the dense matrix
    ``W_rec [N, N]`` (flat C·H·W order; column n = the conv of the n-th unit input, exact:
    every entry is one kernel tap or 0) and its per-channel bias."""
    syn = _read_conv2d(node, shape, where)
    if syn.out_shape != shape:
        raise ConfigError(f"{where}: maps {shape} to {syn.out_shape}; a recurrent convolution "
                          f"must keep the population's shape (stride 1, 'same' padding)")
    return conv_matrix(syn.weight, shape, shape, syn.stride, syn.padding, syn.groups), syn.bias


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


@dataclass(frozen=True)
class _Synapse:
    """What a synapse reader returns (float64 weights; pooling has none)."""

    kind: str
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1


def _read_dense(node: nir.Affine | nir.Linear, shape: tuple[int, ...], where: str) -> _Synapse:
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise ConfigError(f"{where}: weight must be 2-D, got shape {weight.shape}")
    if len(shape) != 1:
        raise ConfigError(f"{where}: a dense layer needs a flat input, got shape {shape} "
                          f"(insert a Flatten node)")
    if weight.shape[1] != shape[0]:
        raise ConfigError(f"{where}: weight {weight.shape} does not take {shape[0]} inputs")
    bias = (np.asarray(node.bias, dtype=np.float64).reshape(-1)
            if isinstance(node, nir.Affine) and node.bias is not None else None)
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ConfigError(f"{where}: bias shape {bias.shape} != ({weight.shape[0]},)")
    return _Synapse("fc", (int(weight.shape[0]),), weight, bias)


def _read_conv2d(node: nir.Conv2d, shape: tuple[int, ...], where: str) -> _Synapse:
    weight = np.asarray(node.weight, dtype=np.float64)
    if len(shape) != 3 or weight.ndim != 4:
        raise ConfigError(f"{where}: needs a (C,H,W) input and 4-D weights, got input "
                          f"{shape}, weight {weight.shape}")
    groups = int(node.groups)
    if weight.shape[1] * groups != shape[0]:
        raise ConfigError(f"{where}: weight {weight.shape} with groups={groups} does not "
                          f"take {shape[0]} input channels")
    dil = _pair(node.dilation, "dilation", where)
    if dil != (1, 1):
        raise ConfigError(f"{where}: dilation {dil} is not supported (plans have none)")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride = _pair(node.stride, "stride", where)
    if isinstance(node.padding, str):
        if node.padding == "valid":
            padding = (0, 0)
        elif all(kk % 2 == 1 for kk in kernel) and stride == (1, 1):
            padding = (kernel[0] // 2, kernel[1] // 2)
        else:
            raise ConfigError(f"{where}: padding 'same' needs odd kernels and stride 1")
    else:
        padding = _pair(node.padding, "padding", where)
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if node.bias is not None \
        else None
    if bias is not None and bias.size == 1 and weight.shape[0] > 1:
        bias = np.full(weight.shape[0], float(bias[0]))
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ConfigError(f"{where}: bias shape {bias.shape} != ({weight.shape[0]},)")
    ho = _conv_out(shape[1], kernel[0], stride[0], padding[0])
    wo = _conv_out(shape[2], kernel[1], stride[1], padding[1])
    return _Synapse("conv", (int(weight.shape[0]), ho, wo), weight, bias, kernel, stride,
                    padding, groups)


def _read_pool(node: nir.AvgPool2d | nir.SumPool2d, shape: tuple[int, ...], where: str
               ) -> _Synapse:
    if len(shape) != 3:
        raise ConfigError(f"{where}: pooling needs a (C,H,W) input, got {shape}")
    kernel = _pair(node.kernel_size, "kernel_size", where)
    stride = _pair(node.stride, "stride", where)
    pad = _pair(node.padding, "padding", where)
    if pad != (0, 0):
        raise ConfigError(f"{where}: pooling with padding {pad} is not supported")
    ho = _conv_out(shape[1], kernel[0], stride[0], 0)
    wo = _conv_out(shape[2], kernel[1], stride[1], 0)
    kind = "avgpool" if isinstance(node, nir.AvgPool2d) else "sumpool"
    return _Synapse(kind, (shape[0], ho, wo), kernel=kernel, stride=stride)


SYNAPSE_READERS: dict[type, Callable[[Any, tuple[int, ...], str], _Synapse]] = {
    nir.Affine: _read_dense, nir.Linear: _read_dense, nir.Conv2d: _read_conv2d,
    nir.AvgPool2d: _read_pool, nir.SumPool2d: _read_pool,
}
"""NIR synapse type → reader for the compiler's chain (a pooling node feeding a linear node
directly is fused by ``exporters.nir_rewrite`` first when it comes through ``export --nir``)."""


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
    index_of = {order[0]: 0}  # main-path Input / neuron → chain index (0: the input)
    inp = graph.nodes[order[0]]
    in_type = inp.input_type.get("input") if isinstance(inp.input_type, dict) else None
    if in_type is None:
        raise ConfigError(f"Input node {order[0]!r} has no shape")
    input_shape = tuple(int(v) for v in np.asarray(in_type).ravel())
    shape = input_shape
    body = order[1:-1]
    layers: list[ChainLayer] = []
    i = 0
    while i < len(body):
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
        k = len(layers) + 1
        where = f"node {name!r} ({type(node).__name__})"
        reader = SYNAPSE_READERS.get(type(node))
        if reader is None:
            raise ConfigError(
                f"{where}: expected a synapse (Affine, Linear, Conv2d, AvgPool2d, SumPool2d, "
                f"optionally after Flatten) as layer {k}"
            )
        syn = reader(node, shape, where)
        kind, out_shape, weight, bias = syn.kind, syn.out_shape, syn.weight, syn.bias
        kernel, stride, padding, groups = syn.kernel, syn.stride, syn.padding, syn.groups
        if any(v <= 0 for v in out_shape):
            raise ConfigError(f"{where}: empty output shape {out_shape} for input {shape}")
        if i + 1 >= len(body):
            raise ConfigError(f"{where}: synapse is not followed by a neuron node")
        neu_name = body[i + 1]
        neu = graph.nodes[neu_name]
        last = i + 2 == len(body)
        nkind, alpha, theta, gain = _neuron_params(neu, neu_name, dt, last)
        nwhere = f"node {neu_name!r}"
        for fname in ("tau", "r", "v_threshold", "tau_mem", "tau_syn", "w_in"):
            arr = getattr(neu, fname, None)
            if arr is not None and np.asarray(arr).size not in (1, math.prod(out_shape)):
                raise ConfigError(f"{nwhere}: {fname} has {np.asarray(arr).size} entries, the "
                                  f"layer has {math.prod(out_shape)} neurons")
        rec_weight = rec_node = None
        if neu_name in loops:
            rec_node = loops[neu_name]
            rnode = graph.nodes[rec_node]
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
        skip_ws: list[tuple[int, np.ndarray]] = []
        skip_labels: list[str] = []
        for e in (e for e in skips if e.target == neu_name):
            if kind != "fc":
                raise ConfigError(f"{e.label}: a skip edge into a {kind} layer has no chip "
                                  f"mapping (its delay would need a delayed Conv, which Lava "
                                  f"has not); skip edges into dense (Affine/Linear) layers "
                                  f"compile")
            if e.source not in index_of:
                raise ConfigError(f"{e.label}: its source is not an earlier population of the "
                                  f"main path")
            j = index_of[e.source]
            src_shape = input_shape if j == 0 else layers[j - 1].out_shape
            if len(src_shape) > 1 and e.flatten is None:
                raise ConfigError(f"{e.label}: {e.synapse!r} reads a {src_shape} tensor; "
                                  f"insert a Flatten node")
            sw = _read_dense(graph.nodes[e.synapse], (math.prod(src_shape),), e.label)
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
        meta = getattr(neu, "metadata", None) or {}
        theta_v, nds = _talif_params(meta, nkind, tuple(out_shape), nwhere)
        reset = _check_reset_hint(neu, f"node {neu_name!r} ({type(neu).__name__})")
        timing = _meta_str(getattr(neu, "metadata", None) or {}, "reset_timing", "immediate")
        if timing not in ("immediate", "next-step"):
            raise ConfigError(f"{nwhere}: metadata reset_timing = {timing!r} is not "
                              f"'immediate' or 'next-step'")
        beta = _current_decay(neu, dt, nwhere)[0] if cuba else None
        n_neurons = math.prod(out_shape)
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
        layers.append(ChainLayer(
            index=k, kind=kind, synapse_node=name, neuron_node=neu_name,
            in_shape=pre_shape if flatten else shape, out_shape=tuple(out_shape),
            flatten_before=flatten, weight=weight, bias=bias, alpha=alpha, theta=theta,
            neuron=nkind, kernel=kernel, stride=stride, padding=padding, groups=groups,
            alpha_hint=_meta_float(meta, "alpha"), theta_hint=_meta_float(meta, "theta"),
            theta_v=theta_v, nds=nds, reset=reset, beta=beta, reset_timing=timing,
            rec_weight=rec_weight, rec_node=rec_node, cur_bias=cur_bias,
            alphas=alphas, betas=betas, skips=tuple(skip_ws), skip_labels=tuple(skip_labels),
            v_floor=_v_floor(meta, theta, nwhere),
            multi_spike=bool(np.asarray(meta.get("multi_spike", 0)).item()),
        ))
        index_of[neu_name] = k
        shape = tuple(out_shape)
        i += 2
    if not layers:
        raise ConfigError("NIR graph has no synapse → neuron layer")
    out = graph.nodes[order[-1]]
    out_type = out.output_type.get("output") if isinstance(out.output_type, dict) else None
    if out_type is not None and math.prod(int(v) for v in np.asarray(out_type).ravel()) != \
            math.prod(shape):
        raise ConfigError(f"Output node {order[-1]!r} has shape {list(np.asarray(out_type))}, "
                          f"the last layer produces {shape}")
    meta = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    return NIRChain(input_shape=input_shape, layers=tuple(layers), dt=dt, metadata=meta)


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


def _exact_param(value: float, hint: float | None) -> float:
    """Prefer the metadata hint when it agrees with the value derived from τ (round-off only)."""
    if hint is not None and abs(hint - value) <= GAIN_TOL * max(1.0, abs(value)):
        return hint
    return value


def _meta_str(meta: dict[str, Any], key: str, default: str) -> str:
    if key not in meta:
        return default
    v = meta[key]
    return str(v.item() if isinstance(v, np.ndarray) else v)


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
    import torch

    from neurodeploy.models import READOUTS, ModelConfig, build_model

    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_nir(
        graph_or_path)
    chain = parse_graph(graph)
    meta = chain.metadata
    tokens = []
    for L in chain.layers:
        where = f"layer {L.index} (node {L.synapse_node!r})"
        if L.kind == "fc":
            tokens.append(f"FC{L.out_shape[0]}")
            continue
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
            tokens.append(f"C{L.out_shape[0]}K{kk}S{ss}P{pp}")
        else:
            if ss != kk:
                raise ConfigError(f"{where}: SpikingNet pooling has stride = kernel, got "
                                  f"kernel {kk}, stride {ss}")
            tokens.append(f"{'AP' if L.kind == 'avgpool' else 'SP'}{kk}")
    first = chain.layers[0]
    alpha = _exact_param(first.alpha, first.alpha_hint)
    theta_layers = [L for L in chain.layers if L.theta is not None]
    theta = (_exact_param(theta_layers[0].theta, theta_layers[0].theta_hint)
             if theta_layers else 0.25)
    for L in chain.layers:
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
        if L.neuron == "li" and L.index != len(chain.layers):
            raise ConfigError(f"layer {L.index}: LI only as the output layer")
    if not 0.0 <= alpha <= 1.0:  # parse_graph refuses these; no clamping here
        raise ConfigError(f"α = {alpha!r} outside [0, 1]")
    if chain.layers[-1].neuron == "li":
        readout = "membrane"
    else:
        readout = _meta_str(meta, "readout", "count")  # NIR's own reading: spike counts
        if readout not in READOUTS or readout == "membrane":
            raise ConfigError(f"graph metadata readout = {readout!r}: a spiking output layer "
                              f"reads out one of {[r for r in READOUTS if r != 'membrane']}")
    weighted = [L for L in chain.layers if L.weight is not None]
    bias = any(L.bias is not None and np.any(L.bias != 0) for L in weighted)
    talif_layers = [L for L in chain.layers if L.is_talif]
    if talif_layers and chain.layers[-1].is_talif:
        L = chain.layers[-1]
        raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): a TA-LIF output layer is "
                          f"not a SpikingNet layer (TA-LIF models keep a plain LIF output)")
    nds_steps = {int(L.nds.shape[0]) for L in talif_layers}
    if len(nds_steps) > 1:
        raise ConfigError(f"TA-LIF layers have NDS of different lengths {sorted(nds_steps)}")
    if num_steps is None:
        num_steps = int(_meta_float(meta, "num_steps") or
                        (nds_steps.pop() if nds_steps else 10))
    for L in talif_layers:
        if L.nds.shape[0] != int(num_steps):
            raise ConfigError(f"layer {L.index} (node {L.neuron_node!r}): NDS has "
                              f"{L.nds.shape[0]} steps, the model runs {int(num_steps)}")
    encoding = _meta_str(meta, "encoding", "bernoulli")
    if encoding not in ("bernoulli", "direct", "spikes"):
        raise ConfigError(f"graph metadata encoding = {encoding!r} is not one of 'bernoulli', "
                          f"'direct', 'spikes'")
    surrogate = _meta_str(meta, "surrogate", "rect")
    try:
        config = ModelConfig(
            arch="-".join(tokens), input_shape=chain.input_shape, num_steps=int(num_steps),
            alpha=alpha, theta=theta, surrogate=surrogate, readout=readout,
            encoding=encoding,
            bias=bias, neuron=TALIF if talif_layers else "lif",
        )
        model = build_model(config)
    except ConfigError as exc:
        raise ConfigError(f"NIR graph cannot be built as a SpikingNet: {exc}") from exc
    for L, spec in zip(chain.layers, model.layer_specs, strict=True):
        if tuple(spec.out_shape) != tuple(L.out_shape):
            raise ConfigError(f"layer {L.index} (node {L.synapse_node!r}): output shape "
                              f"{L.out_shape} != SpikingNet's {spec.out_shape}")
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
    model.eval()
    return model
