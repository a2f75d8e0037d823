"""The deployment plan: the contract between ``exporters`` (writer) and ``sims`` (readers).

A plan holds, per layer, everything a Loihi-style fixed-point core needs — integer weight
mantissas and exponent, the LIF's ``du``/``dv``/``vth`` and bias mantissa/exponent, shapes and
the synaptic pipeline delay — plus the resource map and the quantization report. It is saved
as one ``.npz`` file (``numpy.load(..., allow_pickle=False)``): a JSON header under the key
``header`` and integer arrays under ``layer<i>.<field>``. This module imports numpy only, so
both environments (main, and the Python 3.10 Lava one) read plans with it.

Fixed-point semantics of a layer (Lava ``PyLifModelBitAcc`` + ``Dense``/``Conv`` bit-accurate,
research/deploy_path.md §3), per time step, in integer arithmetic::

    a     = (W_int · s_in) << weight_exp        (>> for a negative exponent, floor)
    u     = wrap24( (u·(4096 − du − 1)) >>₀ 12 + (a << 6) )      # du = 4095 ⇒ u = a << 6
    v     = sat24( (v·(4096 − dv)) >>₀ 12 + u + (bias_mant << bias_exp) )
    s     = v > (vth << 6);   v[s] = 0

where ``>>₀`` rounds toward zero. In float units ``W ≈ W_int / scale``, ``θ ≈ vth / scale``,
``b ≈ bias_mant·2^(bias_exp−6) / scale``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.profiles import LAVA_0_10, FixedPointFormat

PLAN_FORMAT = "neurodeploy-plan"
#: Version 2 adds the header key ``fixed_point`` (the profile's :class:`FixedPointFormat`).
#: Version-1 plans are still read: every one was compiled for Lava 0.10's arithmetic, so they
#: get :data:`~neurodeploy.exporters.profiles.LAVA_0_10`.
PLAN_VERSION = 2
READABLE_PLAN_VERSIONS = (1, 2)
LAYER_KINDS = ("dense", "conv", "pool")
NEURON_KINDS = ("lif", "talif", "sublif")


class PlanError(ValueError):
    """A plan file that is missing, corrupt, of another version, or inconsistent."""

    exit_code = 2


@dataclass(frozen=True)
class PlanLayer:
    """One synaptic layer + its neuron population, in integers.

    Attributes
    ----------
    name : e.g. ``"layer1"``.
    kind : ``dense`` (weights ``[N_out, N_in]``), ``conv`` (weights ``[C_out, C_in/groups, kH, kW]``,
        PyTorch cross-correlation layout — the Lava runner flips/transposes at its boundary)
        or ``pool`` (a ``conv`` with fixed weights and ``groups = C``).
    in_shape, out_shape : ``(C, H, W)`` or ``(N,)``; ``flatten_before`` flattens the input first.
    weights : int32 weight mantissas (mixed-sign matrices hold even values in [−256, 254]).
    weight_exp : Dense weight exponent (effective weight = mantissa · 2^weight_exp).
    du, dv : 12-bit current / voltage decays (``du = 4095``: no synaptic current state).
    vth : 17-bit threshold mantissa (compared as ``v > vth << 6``).
    bias_mant, bias_exp : per-neuron 13-bit bias mantissa (int32 array, flat), shared exponent.
    scale : float→integer factor of this layer (``W_int ≈ W · scale``).
    delay : synaptic pipeline delay in steps (Lava Dense/Conv: 1).
    neuron : ``lif`` or ``talif``; ``neuron_arrays`` holds integer per-neuron data of TA-LIF.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weights: np.ndarray
    weight_exp: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: int
    scale: float
    delay: int = 1
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    flatten_before: bool = False
    neuron: str = "lif"
    neuron_params: dict[str, Any] = field(default_factory=dict)
    neuron_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    def header(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("weights", "bias_mant", "neuron_arrays"):
            d.pop(k)
        d["in_shape"] = list(self.in_shape)
        d["out_shape"] = list(self.out_shape)
        d["stride"] = list(self.stride)
        d["padding"] = list(self.padding)
        d["neuron_arrays"] = sorted(self.neuron_arrays)
        return d


@dataclass(frozen=True)
class DeploymentPlan:
    """A whole network for one hardware profile.

    ``input_shape`` excludes time and batch; ``num_steps`` is the model's T; ``resources``
    is the core map (cores used, neurons/synapses per core …); ``quantization`` the
    per-layer error report; ``source`` the model config and library versions it came from;
    ``fixed_point`` the integer arithmetic every interpreter runs the plan with (the
    compiler writes its profile's; plans built by hand default to Lava 0.10's).
    """

    profile: str
    num_steps: int
    input_shape: tuple[int, ...]
    layers: tuple[PlanLayer, ...]
    resources: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    fixed_point: FixedPointFormat = LAVA_0_10

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_size

    @property
    def latency(self) -> int:
        """Pipeline latency in steps: the sum of the layers' synaptic delays."""
        return int(sum(layer.delay for layer in self.layers))

    def validate(self) -> None:
        """Raise :class:`PlanError` naming the layer and field on any inconsistency."""
        if not self.layers:
            raise PlanError("plan has no layers")
        shape = tuple(self.input_shape)
        for i, L in enumerate(self.layers):
            where = f"plan layer {i} ({L.name})"
            if L.kind not in LAYER_KINDS:
                raise PlanError(f"{where}: unknown kind {L.kind!r}")
            if L.neuron not in NEURON_KINDS:
                raise PlanError(f"{where}: unknown neuron {L.neuron!r}")
            if tuple(L.in_shape) != shape:
                raise PlanError(f"{where}: in_shape {L.in_shape} != previous output {shape}")
            if not np.issubdtype(L.weights.dtype, np.integer):
                raise PlanError(f"{where}: weights must be integers, got {L.weights.dtype}")
            if L.kind == "dense":
                want = (L.out_size, L.in_size)
                if tuple(L.weights.shape) != want:
                    raise PlanError(f"{where}: dense weights {L.weights.shape}, expected {want}")
            else:
                if len(L.in_shape) != 3 or len(L.out_shape) != 3 or L.weights.ndim != 4:
                    raise PlanError(f"{where}: conv/pool layers need (C,H,W) shapes, 4-D weights")
            if L.bias_mant.shape != (L.out_size,):
                raise PlanError(f"{where}: bias_mant shape {L.bias_mant.shape}, expected "
                                f"({L.out_size},)")
            fmt = self.fixed_point
            for name, val, lo, hi in (("du", L.du, 0, fmt.decay_max),
                                      ("dv", L.dv, 0, fmt.decay_max),
                                      ("vth", L.vth, 0, fmt.vth_max), ("delay", L.delay, 0, 63)):
                if not lo <= int(val) <= hi:
                    raise PlanError(f"{where}: {name} = {val} outside [{lo}, {hi}]")
            shape = tuple(L.out_shape)

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan atomically as ``.npz`` (a temporary file renamed into place)."""
        self.validate()
        arrays: dict[str, np.ndarray] = {}
        for i, L in enumerate(self.layers):
            arrays[f"layer{i}.weights"] = np.ascontiguousarray(L.weights, dtype=np.int32)
            arrays[f"layer{i}.bias_mant"] = np.ascontiguousarray(L.bias_mant, dtype=np.int32)
            for k, v in L.neuron_arrays.items():
                arrays[f"layer{i}.n.{k}"] = np.ascontiguousarray(v, dtype=np.int32)
        header = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "profile": self.profile,
            "num_steps": int(self.num_steps),
            "input_shape": list(self.input_shape),
            "layers": [L.header() for L in self.layers],
            "resources": self.resources,
            "quantization": self.quantization,
            "source": self.source,
            "fixed_point": self.fixed_point.to_dict(),
        }
        arrays["header"] = np.array(json.dumps(header, default=_json_default))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeploymentPlan:
        """Read and validate a plan; raises :class:`PlanError` naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
        except Exception as exc:
            raise PlanError(f"plan {str(path)!r} cannot be read: {exc}") from exc
        if "header" not in files:
            raise PlanError(f"{path}: not a deployment plan (no header)")
        try:
            h = json.loads(str(files["header"]))
        except json.JSONDecodeError as exc:
            raise PlanError(f"{path}: corrupt plan header: {exc}") from exc
        if h.get("format") != PLAN_FORMAT:
            raise PlanError(f"{path}: not a deployment plan (format {h.get('format')!r})")
        if h.get("version") not in READABLE_PLAN_VERSIONS:
            raise PlanError(f"{path}: plan version {h.get('version')} unsupported "
                            f"(this build reads versions {list(READABLE_PLAN_VERSIONS)})")
        if h["version"] >= 2 and "fixed_point" not in h:
            raise PlanError(f"{path}: version-{h['version']} plan lacks its fixed_point format")
        try:
            fmt = (FixedPointFormat.from_dict(h["fixed_point"], f"{path}: fixed_point")
                   if "fixed_point" in h else LAVA_0_10)
        except ConfigError as exc:
            raise PlanError(str(exc)) from exc
        layers = []
        for i, lh in enumerate(h["layers"]):
            try:
                arrays = {k: files[f"layer{i}.n.{k}"] for k in lh.pop("neuron_arrays")}
                layers.append(PlanLayer(
                    weights=files[f"layer{i}.weights"],
                    bias_mant=files[f"layer{i}.bias_mant"],
                    neuron_arrays=arrays,
                    **{**lh,
                       "in_shape": tuple(lh["in_shape"]), "out_shape": tuple(lh["out_shape"]),
                       "stride": tuple(lh["stride"]), "padding": tuple(lh["padding"])},
                ))
            except (KeyError, TypeError) as exc:
                raise PlanError(f"{path}: layer {i} is incomplete ({exc})") from exc
        plan = cls(h["profile"], h["num_steps"], tuple(h["input_shape"]), tuple(layers),
                   h.get("resources", {}), h.get("quantization", {}), h.get("source", {}),
                   fixed_point=fmt)
        plan.validate()
        return plan


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
