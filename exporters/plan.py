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
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, NeurodeployError
from neurodeploy.exporters.profiles import LAVA_0_10, FixedPointFormat
from neurodeploy.jsonable import jsonable

PLAN_FORMAT = "neurodeploy-plan"
#: Version 2 adds the header key ``fixed_point`` (the profile's :class:`FixedPointFormat`).
#: Version-1 plans are still read: every one was compiled for Lava 0.10's arithmetic, so they
#: get :data:`~neurodeploy.exporters.profiles.LAVA_0_10`.
#: Version 3 adds ``neuron_params["v_min"]`` (:data:`V_FLOOR_KINDS`) and
#: ``neuron_params["graded_bits"]`` (:data:`GRADED_KINDS`) and ``PlanLayer.weights_lo`` (a second
#: synapse group). A plan is written with
#: the lowest version that holds its fields (2 when no layer has a v floor), so version-2
#: readers still read every plan that does not need the new fields; a version-1/2 file
#: carrying a version-3 field is refused on load.
PLAN_VERSION = 3
READABLE_PLAN_VERSIONS = (1, 2, 3)
LAYER_KINDS = ("dense", "conv", "pool")
#: NIR neuron kinds (H-nir, issue 13): resets, and two input extensions of each:
#: ``<kind>_rec`` carries ``neuron_arrays["w_rec"]`` [N, N] (and optionally ``a_bias``),
#: ``<kind>_cb`` carries ``neuron_arrays["a_bias"]`` [N] (a constant synaptic input).
NIR_BASE_KINDS = ("lif", "sublif", "sublif_delayed", "lif_delayed")
RECURRENT_SUFFIX = "_rec"
CURRENT_BIAS_SUFFIX = "_cb"
#: Non-spiking read-out populations (NIR ``LI``, ``CubaLI`` with ``du``, ``I`` with ``dv = 0``;
#: ``li_cb``: a bias into CubaLI's current): integrate as the LIF, never spike, never reset;
#: the output is the membrane v each step. Only as the last layer.
MEMBRANE_KINDS = ("li", "li" + CURRENT_BIAS_SUFFIX)
NEURON_KINDS = ("lif", "talif", "sublif", "sublif_delayed", "lif_delayed",
                *(k + RECURRENT_SUFFIX for k in NIR_BASE_KINDS),
                *(k + CURRENT_BIAS_SUFFIX for k in NIR_BASE_KINDS), *MEMBRANE_KINDS)
#: Optional per-neuron decays of every NIR kind (not ``talif``): ``neuron_arrays["du"]`` /
#: ``["dv"]`` ``[N]`` (flat plan neuron order) replace the layer's scalar ``du`` / ``dv``,
#: which then hold the population's largest value (for reports). The chip runs them in the
#: programmable ``sublif`` process (Lava's own LIF holds one decay per population).
PER_NEURON_DECAYS = ("du", "dv")
#: Neuron kinds that may carry ``neuron_params["v_min"]`` (plan version 3): an integer lower
#: bound on v in v units, ``−state_max ≤ v_min ≤ 0``, applied after the reset of every step::
#:
#:     s = v ≻ θ;   v ← v − s·θ;   v ← max(v, v_min)
#:
#: (sinabs ``min_v_mem``; its ``from_nir`` gives an IF ``min_v_mem = −θ``, i.e.
#: ``v_min = −(vth << threshold_shift)``). Run by the programmable ``sublif`` process.
V_FLOOR_KINDS = ("sublif", "sublif" + RECURRENT_SUFFIX, "sublif" + CURRENT_BIAS_SUFFIX)
#: Neuron kinds that may send graded spikes, ``neuron_params["graded_bits"] = b`` (plan version
#: 3, 1 ≤ b ≤ :data:`GRADED_BITS_MAX`): the spike is a count, a Loihi 2 graded-spike payload::
#:
#:     n = clip(⌊v / θ⌋, 0, 2^b − 1)   (so n ≥ 1 ⇔ v ≥ θ);   v ← v − n·θ;   send n
#:
#: (sinabs ``MultiSpike`` / rockpool counts up to 2^b − 1 per step). The next layer's synapse
#: multiplies: ``a = W · n``. Not a skip-edge source and not recurrent (``w_rec`` reads 0/1).
GRADED_KINDS = ("sublif", "sublif" + CURRENT_BIAS_SUFFIX)
GRADED_BITS_MAX = 8
#: Plan-version-3 precision fields of the ``*_rec`` / ``*_cb`` kinds (the input the neuron
#: process adds itself), each written only when used:
#:
#: ``neuron_arrays["w_rec_lo"]`` ``[N, N]`` with ``neuron_params["w_rec_exp"] = k``: the
#: recurrent matrix as two synapse groups of 8-bit mantissas (exponents k and 0, ``8 + k``
#: bits), and ``neuron_arrays["a_bias_mant"]`` ``[N]`` with ``neuron_params["a_bias_exp"] = e``
#: (instead of ``a_bias``): the bias into the current as a 13-bit mantissa with a 3-bit
#: exponent in u units (the v bias's ranges, ``bias_mant_bits`` / ``bias_exp_max``), down to
#: 2^−activation_shift of a weight unit::
#:
#:     rec = wrap_port((W_rec · s[t−1]) · 2^k + W_rec_lo · s[t−1] + a_bias)
#:     act = wrap_port((a_forward + rec) << activation_shift + (a_bias_mant << e))
REC_LO_KEYS = ("w_rec_lo", "w_rec_exp")
FINE_CURRENT_BIAS_KEYS = ("a_bias_mant", "a_bias_exp")
#: ``neuron_params`` keys and ``neuron_arrays`` keys that need plan version 3.
V3_PARAMS = ("v_min", "graded_bits", "w_rec_exp", "a_bias_exp")
V3_ARRAYS = ("w_rec_lo", "a_bias_mant")


class PlanError(NeurodeployError):
    """A plan file that is missing, corrupt, of another version, or inconsistent (exit 2)."""

    exit_code = 2


#: Keys of a plan header and of each layer header, with their JSON types (``int`` excludes
#: bool; ``float`` accepts an int). Layer keys are the :class:`PlanLayer` fields minus the
#: arrays, so a field added there must be added here (a test keeps them equal).
HEADER_KEYS: dict[str, tuple[type, ...]] = {
    "format": (str,), "version": (int,), "profile": (str,), "num_steps": (int,),
    "input_shape": (list,), "layers": (list,),
}
LAYER_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,), "kind": (str,), "in_shape": (list,), "out_shape": (list,),
    "weight_exp": (int,), "du": (int,), "dv": (int,), "vth": (int,), "bias_exp": (int,),
    "scale": (float, int), "delay": (int,), "stride": (list,), "padding": (list,),
    "groups": (int,), "flatten_before": (bool,), "neuron": (str,), "neuron_params": (dict,),
    "neuron_arrays": (list,), "skip_from": (list,), "weights_lo": (bool,),
}
LAYER_REQUIRED = ("name", "kind", "in_shape", "out_shape", "weight_exp", "du", "dv", "vth",
                  "bias_exp", "scale")
#: Bound on |weight| of a ``raw_weights`` plan (int16: what a chip's weight port can carry).
RAW_WEIGHT_LIMIT = 2**15 - 1
#: Largest synaptic delay a plan may ask for (Loihi's dendritic delay field is 6 bits).
MAX_DELAY = 63


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_words(types: tuple[type, ...]) -> str:
    return {(str,): "a string", (int,): "an integer", (float, int): "a number",
            (list,): "a list", (dict,): "a table", (bool,): "true/false"}.get(types, str(types))


def _int_range(where: str, field_: str, value: Any, lo: int, hi: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PlanError(f"{where}: {field_} = {value!r} is not an integer in [{lo}, {hi}]"
                        + (f" ({why})" if why else ""))
    if not lo <= int(value) <= hi:
        raise PlanError(f"{where}: {field_} = {value} outside the allowed range [{lo}, {hi}]"
                        + (f" ({why})" if why else ""))


def _array_range(where: str, field_: str, a: np.ndarray, lo: int, hi: int, why: str) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise PlanError(f"{where}: {field_} must hold integers, got dtype {a.dtype}")
    if a.size == 0:
        return
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax > hi:
        bad = amin if amin < lo else amax
        idx = np.unravel_index(int(np.argmin(a) if amin < lo else np.argmax(a)), a.shape)
        raise PlanError(f"{where}: {field_}{list(map(int, idx))} = {bad} outside the allowed "
                        f"range [{lo}, {hi}] ({why})")


def _shape_list(where: str, field_: str, value: Any, dims: tuple[int, ...] = (1, 3),
                minimum: int = 1) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) not in dims or not all(
            _is(v, (int,)) and v >= minimum for v in value):
        raise PlanError(f"{where}: {field_} = {value!r} must be a list of {' or '.join(map(str, dims))}"
                        f" integers >= {minimum}")
    return tuple(int(v) for v in value)


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
    neuron : one of :data:`NEURON_KINDS`; ``neuron_arrays`` holds integer per-neuron data
        (TA-LIF's θ_v/NDS, ``w_rec``/``a_bias`` of ``*_rec``/``*_cb``, and per-neuron ``du``/
        ``dv`` of any other kind, see :data:`PER_NEURON_DECAYS`).
    weights_lo : (plan version 3; dense or conv) a second synapse group on the same input: 8-bit
        mantissas ``[N_out, N_in]`` with exponent 0, summed with the first group in the
        neuron's input port — one matrix with ``8 + weight_exp`` bits of resolution::

            a = wrap_port(W_eff(weights) · s · 2^weight_exp + W_eff(weights_lo) · s)

        (``W_eff``: Lava's clip + truncate of each matrix in its own sign mode — conv: the
        mantissas as they are; on the chip two Dense/Conv processes from the same source into
        one ``a_in``; Lava 0.10's Conv ignores the exponent, so the runner hands the first conv
        its mantissas shifted by it). ``weight_exp ≥ 0`` then (also on conv layers).
    skip_from, skip_weights : skip edges into this (dense) layer: source ``j`` (a plan layer
        index before the previous one, or −1 for the network input) and integer weights
        ``[N_out, size of j's output]`` (flat plan order), on the weight grid. Their sum enters
        this layer's input port with layer ``j``'s spikes of the *same* step: on the chip the
        skip synapse delays by the main path's extra latency ``Σ delay`` of layers j+1 … k−1
        (≤ :data:`MAX_DELAY`), so both arrive together.
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
    skip_from: tuple[int, ...] = ()
    skip_weights: tuple[np.ndarray, ...] = ()
    weights_lo: np.ndarray | None = None

    @property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    def header(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("weights", "bias_mant", "neuron_arrays", "skip_weights", "weights_lo"):
            d.pop(k)
        if self.weights_lo is not None:  # written only when used (a version-3 key)
            d["weights_lo"] = True
        d["skip_from"] = [int(j) for j in self.skip_from]
        if not self.skip_from:  # written only when used: such plans stay readable by older
            d.pop("skip_from")  # builds (which do not know the key)
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
    #: Weights handed to the chip as they are, off the compiler's grid (property tests of
    #: Lava's own clipping and LSB truncation); validation then only bounds them by
    #: :data:`RAW_WEIGHT_LIMIT`. Written into the header, so a plan file has to declare it.
    raw_weights: bool = False

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_size

    @property
    def readout(self) -> str:
        """``membrane`` when the last layer is a non-spiking read-out (:data:`MEMBRANE_KINDS`:
        its membrane v per step is the output, summed over time as the logits), else
        ``count`` (output spike counts)."""
        return "membrane" if self.layers and self.layers[-1].neuron in MEMBRANE_KINDS \
            else "count"

    @property
    def latency(self) -> int:
        """Pipeline latency in steps: the sum of the layers' synaptic delays."""
        return int(sum(layer.delay for layer in self.layers))

    def validate(self) -> None:
        """Check the plan against the fixed-point format it declares (``fixed_point``).

        Every integer field and array must fit its width (weights, weight exponent, ``du``,
        ``dv``, ``vth``, bias mantissa and exponent, TA-LIF θ_v/NDS and shift), every float
        must be finite (``scale`` > 0), ``num_steps`` positive, and the shapes must chain.
        Raises :class:`PlanError` naming the layer, the field, the value and the allowed range.
        """
        fmt = self.fixed_point
        _int_range("plan", "num_steps", self.num_steps, 1, 2**31 - 1, "time steps T")
        shape = _shape_list("plan", "input_shape", list(self.input_shape))
        if not self.layers:
            raise PlanError("plan has no layers")
        for i, L in enumerate(self.layers):
            where = f"plan layer {i} ({L.name})"
            if L.kind not in LAYER_KINDS:
                raise PlanError(f"{where}: kind = {L.kind!r} is not one of {list(LAYER_KINDS)}")
            if L.neuron not in NEURON_KINDS:
                raise PlanError(f"{where}: neuron = {L.neuron!r} is not one of "
                                f"{list(NEURON_KINDS)}")
            if L.neuron in MEMBRANE_KINDS and i != len(self.layers) - 1:
                raise PlanError(f"{where}: a non-spiking read-out ({L.neuron}) sends no spikes; "
                                f"it can only be the last layer")
            if tuple(L.in_shape) != shape:
                raise PlanError(f"{where}: in_shape {tuple(L.in_shape)} != previous output {shape}")
            out_shape = _shape_list(where, "out_shape", list(L.out_shape))
            if not isinstance(L.weights, np.ndarray) or not isinstance(L.bias_mant, np.ndarray):
                raise PlanError(f"{where}: weights and bias_mant must be integer arrays")
            if L.kind == "dense":
                _int_range(where, "groups", L.groups, 1, 1, "dense layers are not grouped")
                _shape_list(where, "stride", list(L.stride), dims=(2,))
                _shape_list(where, "padding", list(L.padding), dims=(2,), minimum=0)
                want = (L.out_size, L.in_size)
                if tuple(L.weights.shape) != want:
                    raise PlanError(f"{where}: dense weights shape {L.weights.shape}, expected "
                                    f"{want}")
            else:
                self._check_conv(where, L, shape, out_shape)
            if L.bias_mant.shape != (L.out_size,):
                raise PlanError(f"{where}: bias_mant shape {L.bias_mant.shape}, expected "
                                f"({L.out_size},)")
            # weights: mixed-sign matrices on the even grid, single-sign within the magnitude
            w = L.weights
            if not np.issubdtype(w.dtype, np.integer):
                raise PlanError(f"{where}: weights must hold integers, got dtype {w.dtype}")
            mode = fmt.weight_sign_mode(w)
            if self.raw_weights:
                _array_range(where, "weights", w, -RAW_WEIGHT_LIMIT, RAW_WEIGHT_LIMIT,
                             "raw weights of a plan with raw_weights = true")
            else:
                lo, hi = fmt.weight_range(mode)
                _array_range(where, "weights", w, lo, hi,
                             f"{mode}-sign mantissas of {fmt.weight_bits}-bit weights")
            if not self.raw_weights and mode == "mixed" and fmt.mixed_step > 1 and w.size \
                    and bool((w % 2).any()):
                idx = np.unravel_index(int(np.argmax(w % 2 != 0)), w.shape)
                raise PlanError(f"{where}: weights{list(map(int, idx))} = {int(w[idx])} is odd; "
                                f"mixed-sign mantissas must be multiples of {fmt.mixed_step}")
            _int_range(where, "weight_exp", L.weight_exp, fmt.weight_exp_min, fmt.weight_exp_max,
                       "weight exponent")
            _int_range(where, "du", L.du, 0, fmt.decay_max, f"{fmt.decay_bits}-bit decay")
            _int_range(where, "dv", L.dv, 0, fmt.decay_max, f"{fmt.decay_bits}-bit decay")
            _int_range(where, "vth", L.vth, 0, fmt.vth_max,
                       f"{fmt.threshold_bits}-bit threshold mantissa")
            _array_range(where, "bias_mant", L.bias_mant, fmt.bias_mant_min, fmt.bias_mant_max,
                         f"{fmt.bias_mant_bits}-bit signed bias mantissa")
            _int_range(where, "bias_exp", L.bias_exp, 0, fmt.bias_exp_max,
                       f"{fmt.bias_exp_bits}-bit bias exponent")
            _int_range(where, "delay", L.delay, 0, MAX_DELAY, "synaptic delay in steps")
            if isinstance(L.scale, bool) or not isinstance(L.scale, (int, float, np.floating)) \
                    or not math.isfinite(float(L.scale)) or not float(L.scale) > 0:
                raise PlanError(f"{where}: scale = {L.scale!r} must be a finite number > 0")
            talif = L.neuron == "talif"
            if talif:
                self._check_talif(where, L)
            if "v_min" in L.neuron_params:
                if L.neuron not in V_FLOOR_KINDS:
                    raise PlanError(f"{where}: neuron_params.v_min on a {L.neuron!r} layer; "
                                    f"only {V_FLOOR_KINDS} hold a v floor")
                _int_range(where, "neuron_params.v_min", L.neuron_params["v_min"],
                           -fmt.state_max, 0, "lower bound on v, in v units")
            if L.weights_lo is not None:
                self._check_weights_lo(where, L)
            if "graded_bits" in L.neuron_params:
                if L.neuron not in GRADED_KINDS:
                    raise PlanError(f"{where}: neuron_params.graded_bits on a {L.neuron!r} "
                                    f"layer; only {GRADED_KINDS} send graded spikes")
                _int_range(where, "neuron_params.graded_bits", L.neuron_params["graded_bits"],
                           1, GRADED_BITS_MAX, "graded spike payload bits")
                later = [m for m in self.layers if i in m.skip_from]
                if later:
                    raise PlanError(f"{where}: a graded layer is the source of skip edges "
                                    f"into {[m.name for m in later]} (they read 0/1 spikes)")
            decays = {} if talif else {k: L.neuron_arrays[k] for k in PER_NEURON_DECAYS
                                       if k in L.neuron_arrays}
            for k, a in decays.items():
                if getattr(a, "shape", None) != (L.out_size,):
                    raise PlanError(f"{where}: per-neuron {k} has shape "
                                    f"{getattr(a, 'shape', None)}, expected ({L.out_size},)")
                _array_range(where, k, a, 0, fmt.decay_max, f"{fmt.decay_bits}-bit decay")
            arrays = {k: v for k, v in L.neuron_arrays.items() if k not in decays}
            if talif:
                pass
            elif L.neuron.endswith((RECURRENT_SUFFIX, CURRENT_BIAS_SUFFIX)):
                rec = L.neuron.endswith(RECURRENT_SUFFIX)
                want = {"w_rec": (L.out_size, L.out_size)} if rec else {}
                fine = "a_bias_mant" in arrays
                if (not rec and not fine) or "a_bias" in arrays:
                    want["a_bias"] = (L.out_size,)
                if fine:
                    want["a_bias_mant"] = (L.out_size,)
                if rec and "w_rec_lo" in arrays:
                    want["w_rec_lo"] = (L.out_size, L.out_size)
                got = {k: getattr(v, "shape", None) for k, v in arrays.items()}
                if {k: tuple(v) if v is not None else None for k, v in got.items()} != want:
                    raise PlanError(f"{where}: a {L.neuron} layer needs neuron_arrays {want}, "
                                    f"got {got}")
                if rec:
                    w = L.neuron_arrays["w_rec"]
                    _array_range(where, "w_rec", w, *fmt.weight_range(fmt.weight_sign_mode(w)),
                                 f"{fmt.weight_bits}-bit recurrent weight mantissas")
                if "a_bias" in want:  # a constant input in weight units: the port word
                    _array_range(where, "a_bias", L.neuron_arrays["a_bias"],
                                 -(2 ** (fmt.port_bits - 1)), 2 ** (fmt.port_bits - 1) - 1,
                                 f"{fmt.port_bits}-bit synaptic input")
                self._check_rec_precision(where, L, want)
            elif any(k in L.neuron_params for k in ("w_rec_exp", "a_bias_exp")):
                raise PlanError(f"{where}: neuron_params w_rec_exp / a_bias_exp on a "
                                f"{L.neuron!r} layer; only *_rec / *_cb kinds hold them")
            elif arrays:
                raise PlanError(f"{where}: a {L.neuron} layer has no neuron_arrays but the "
                                f"per-neuron decays {list(PER_NEURON_DECAYS)}, got "
                                f"{sorted(L.neuron_arrays)}")
            self._check_skips(i, where, L)
            shape = out_shape

    def skip_delay(self, k: int, j: int) -> int:
        """Extra steps a skip edge from ``j`` (−1: the input) into layer ``k`` waits so that
        it meets the main path: the synaptic delays of layers j+1 … k−1."""
        return int(sum(self.layers[m].delay for m in range(j + 1, k)))

    def _check_skips(self, i: int, where: str, L: PlanLayer) -> None:
        if not L.skip_from and not L.skip_weights:
            return
        fmt = self.fixed_point
        if len(L.skip_from) != len(L.skip_weights):
            raise PlanError(f"{where}: {len(L.skip_from)} skip sources but "
                            f"{len(L.skip_weights)} skip weight arrays")
        if L.kind != "dense":
            raise PlanError(f"{where}: skip edges only into a dense layer, got {L.kind}")
        if list(L.skip_from) != sorted(set(L.skip_from)):
            raise PlanError(f"{where}: skip_from {list(L.skip_from)} must be increasing and "
                            f"distinct")
        for j, w in zip(L.skip_from, L.skip_weights, strict=True):
            _int_range(where, "skip_from", j, -1, i - 2,
                       "a layer before the previous one, or -1 for the input")
            src = self.input_shape if j < 0 else self.layers[j].out_shape
            want = (L.out_size, int(np.prod(src)))
            if not isinstance(w, np.ndarray) or tuple(w.shape) != want:
                raise PlanError(f"{where}: skip weights from {j} have shape "
                                f"{getattr(w, 'shape', None)}, expected {want}")
            if not np.issubdtype(w.dtype, np.integer):
                raise PlanError(f"{where}: skip weights must hold integers, got {w.dtype}")
            mode = fmt.weight_sign_mode(w)
            if self.raw_weights:
                _array_range(where, f"skip{j}", w, -RAW_WEIGHT_LIMIT, RAW_WEIGHT_LIMIT,
                             "raw weights of a plan with raw_weights = true")
            else:
                _array_range(where, f"skip{j}", w, *fmt.weight_range(mode),
                             f"{mode}-sign mantissas of {fmt.weight_bits}-bit weights")
                if mode == "mixed" and fmt.mixed_step > 1 and bool((w % 2).any()):
                    raise PlanError(f"{where}: skip weights from {j} hold odd mixed-sign "
                                    f"mantissas (multiples of {fmt.mixed_step} needed)")
            d = self.skip_delay(i, j)
            if d > MAX_DELAY:
                raise PlanError(f"{where}: the skip edge from {j} needs an extra delay of {d} "
                                f"steps to meet the main path (at most {MAX_DELAY})")

    def _check_conv(self, where: str, L: PlanLayer, shape: tuple[int, ...],
                    out_shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or len(out_shape) != 3 or L.weights.ndim != 4:
            raise PlanError(f"{where}: conv/pool layers need (C,H,W) shapes and 4-D weights, got "
                            f"in {shape}, out {out_shape}, weights {L.weights.shape}")
        stride = _shape_list(where, "stride", list(L.stride), dims=(2,))
        padding = _shape_list(where, "padding", list(L.padding), dims=(2,), minimum=0)
        _int_range(where, "groups", L.groups, 1, shape[0], "input channels")
        c_out, c_in_g, kh, kw = (int(v) for v in L.weights.shape)
        if shape[0] % L.groups or out_shape[0] % L.groups or c_out != out_shape[0] \
                or c_in_g != shape[0] // L.groups:
            raise PlanError(f"{where}: weights shape {L.weights.shape} does not match in "
                            f"{shape}, out {out_shape}, groups {L.groups}")
        want = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                     zip(shape[1:], padding, (kh, kw), stride, strict=True))
        if want != out_shape[1:]:
            raise PlanError(f"{where}: out_shape {out_shape} but kernel {kh}x{kw}, stride "
                            f"{stride}, padding {padding} on {shape} give {(c_out, *want)}")

    def _check_weights_lo(self, where: str, L: PlanLayer) -> None:
        """A second synapse group: dense, same shape, 8-bit mantissas in its own sign mode,
        ``weight_exp ≥ 0`` on the first group."""
        fmt = self.fixed_point
        lo = L.weights_lo
        if L.kind not in ("dense", "conv") or not isinstance(lo, np.ndarray) \
                or tuple(lo.shape) != tuple(L.weights.shape):
            raise PlanError(f"{where}: weights_lo needs a dense/conv layer and the shape of weights "
                            f"{tuple(L.weights.shape)}, got {getattr(lo, 'shape', None)}")
        if L.weight_exp < 0:
            raise PlanError(f"{where}: weights_lo with weight_exp {L.weight_exp} < 0 (the "
                            f"first group's floor would not be exact)")
        mode = FixedPointFormat.weight_sign_mode(lo)
        lo_r, hi_r = fmt.weight_range(mode)
        _array_range(where, "weights_lo", lo, lo_r, hi_r,
                     f"{mode}-sign mantissas of {fmt.weight_bits}-bit weights")
        if mode == "mixed" and fmt.mixed_step > 1 and bool((lo % 2).any()):
            raise PlanError(f"{where}: mixed-sign weights_lo must be multiples of "
                            f"{fmt.mixed_step}")

    def _check_rec_precision(self, where: str, L: PlanLayer, want: dict[str, Any]) -> None:
        """The v3 precision fields of a ``*_rec`` / ``*_cb`` layer (:data:`REC_LO_KEYS`,
        :data:`FINE_CURRENT_BIAS_KEYS`): each array with its exponent, both in range."""
        fmt = self.fixed_point
        if "a_bias" in want and "a_bias_mant" in want:
            raise PlanError(f"{where}: a_bias and a_bias_mant both given (one current bias)")
        for arr, exp, lo, hi, why in (
                ("w_rec_lo", "w_rec_exp", 0, fmt.weight_exp_max, "recurrent group exponent"),
                ("a_bias_mant", "a_bias_exp", 0, fmt.bias_exp_max,
                 f"{fmt.bias_exp_bits}-bit current bias exponent")):
            if (arr in want) != (exp in L.neuron_params):
                raise PlanError(f"{where}: neuron_arrays {arr} and neuron_params {exp} go "
                                f"together (one without the other)")
            if exp in L.neuron_params:
                _int_range(where, f"neuron_params.{exp}", L.neuron_params[exp], lo, hi, why)
        if "w_rec_lo" in want:
            lo_w = L.neuron_arrays["w_rec_lo"]
            _array_range(where, "w_rec_lo", lo_w,
                         *fmt.weight_range(fmt.weight_sign_mode(lo_w)),
                         f"{fmt.weight_bits}-bit recurrent weight mantissas")
        if "a_bias_mant" in want:
            _array_range(where, "a_bias_mant", L.neuron_arrays["a_bias_mant"],
                         fmt.bias_mant_min, fmt.bias_mant_max,
                         f"{fmt.bias_mant_bits}-bit signed current bias mantissa")

    def _check_talif(self, where: str, L: PlanLayer) -> None:
        fmt = self.fixed_point
        where = f"{where}: talif"
        if fmt.talif_state_bits is None or fmt.talif_theta_v_bits is None \
                or fmt.talif_theta_v_shift_max is None:
            raise PlanError(f"{where} layer, but the plan's fixed-point format has no TA-LIF "
                            f"widths")
        params = L.neuron_params
        _int_range(where, "neuron_params.theta_v_shift", params.get("theta_v_shift"), 0,
                   fmt.talif_theta_v_shift_max, "TA-LIF θ_v shift")
        _int_range(where, "neuron_params.theta_bits", params.get("theta_bits"), 1,
                   fmt.talif_state_bits, "TA-LIF state width")
        want = {"theta_v": (L.out_size,), "nds": (int(self.num_steps), L.out_size)}
        if set(L.neuron_arrays) != set(want):
            raise PlanError(f"{where} neuron_arrays {sorted(L.neuron_arrays)}, expected "
                            f"{sorted(want)}")
        for k, shp in want.items():
            a = L.neuron_arrays[k]
            if not isinstance(a, np.ndarray) or tuple(a.shape) != shp:
                raise PlanError(f"{where} {k} shape {getattr(a, 'shape', None)}, expected {shp}")
        _array_range(where, "theta_v", L.neuron_arrays["theta_v"], 0,
                     2**fmt.talif_theta_v_bits - 1, f"{fmt.talif_theta_v_bits}-bit θ_v mantissa")
        lim = fmt.talif_theta_max()
        _array_range(where, "nds", L.neuron_arrays["nds"], -lim, lim,
                     f"{fmt.talif_state_bits}-bit TA-LIF state")

    def min_version(self) -> int:
        """The lowest plan version that holds every field of this plan (3 with a v floor)."""
        return 3 if any(k in L.neuron_params for L in self.layers for k in V3_PARAMS) or any(
            k in L.neuron_arrays for L in self.layers for k in V3_ARRAYS) or any(
            L.weights_lo is not None for L in self.layers) else 2

    def in_max(self, k: int) -> int:
        """The largest value one input of layer ``k`` carries per step: 2^b − 1 after a graded
        layer (``graded_bits = b``), else 1 (binary spikes)."""
        if k == 0:
            return 1
        b = self.layers[k - 1].neuron_params.get("graded_bits")
        return (1 << int(b)) - 1 if b else 1

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan atomically as ``.npz`` (a temporary file renamed into place)."""
        self.validate()
        arrays: dict[str, np.ndarray] = {}
        for i, L in enumerate(self.layers):
            arrays[f"layer{i}.weights"] = np.ascontiguousarray(L.weights, dtype=np.int32)
            arrays[f"layer{i}.bias_mant"] = np.ascontiguousarray(L.bias_mant, dtype=np.int32)
            for k, v in L.neuron_arrays.items():
                arrays[f"layer{i}.n.{k}"] = np.ascontiguousarray(v, dtype=np.int32)
            for m, w in enumerate(L.skip_weights):
                arrays[f"layer{i}.skip{m}"] = np.ascontiguousarray(w, dtype=np.int32)
            if L.weights_lo is not None:
                arrays[f"layer{i}.weights_lo"] = np.ascontiguousarray(L.weights_lo,
                                                                      dtype=np.int32)
        header = {
            "format": PLAN_FORMAT,
            "version": self.min_version(),
            "profile": self.profile,
            "num_steps": int(self.num_steps),
            "input_shape": list(self.input_shape),
            "layers": [L.header() for L in self.layers],
            "resources": self.resources,
            "quantization": self.quantization,
            "source": self.source,
            "fixed_point": self.fixed_point.to_dict(),
        }
        if self.raw_weights:
            header["raw_weights"] = True
        arrays["header"] = np.array(json.dumps(jsonable(header)))
        from neurodeploy.atomicio import write_with  # stdlib only; mode from the umask

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        write_with(path, write, suffix=".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeploymentPlan:
        """Read and validate a plan; raises :class:`PlanError` naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan {str(path)!r} does not exist")
        import zipfile

        if not zipfile.is_zipfile(path):
            raise PlanError(f"plan {str(path)!r} is not a deployment plan (not an .npz archive)")
        from neurodeploy.safeload import load_npz

        # no pickles (object arrays refused); zipfile checks every member's CRC-32
        files = load_npz(path, "plan (corrupt or not data only)", PlanError)
        if "header" not in files:
            raise PlanError(f"{path}: not a deployment plan (no header)")
        from neurodeploy.safeload import loads_json

        h = loads_json(str(files["header"]), f"{path}: corrupt plan header", PlanError)
        if not isinstance(h, dict):
            raise PlanError(f"{path}: corrupt plan header (not a JSON object)")
        if h.get("format") != PLAN_FORMAT:
            raise PlanError(f"{path}: not a deployment plan (format {h.get('format')!r})")
        if h.get("version") not in READABLE_PLAN_VERSIONS:
            raise PlanError(f"{path}: plan version {h.get('version')} unsupported "
                            f"(this build reads versions {list(READABLE_PLAN_VERSIONS)})")
        for key, types in HEADER_KEYS.items():
            if key not in h:
                raise PlanError(f"{path}: plan header lacks {key!r}")
            if not _is(h[key], types):
                raise PlanError(f"{path}: plan header {key} = {h[key]!r:.80} must be "
                                f"{_type_words(types)}")
        if h["version"] >= 2 and "fixed_point" not in h:
            raise PlanError(f"{path}: version-{h['version']} plan lacks its fixed_point format")
        try:
            fmt = (FixedPointFormat.from_dict(h["fixed_point"], f"{path}: fixed_point")
                   if "fixed_point" in h else LAVA_0_10)
        except (ConfigError, TypeError, ValueError) as exc:
            raise PlanError(str(exc)) from exc
        layers = tuple(_layer_from_header(path, i, lh, files) for i, lh in enumerate(h["layers"]))
        extra = {k: h.get(k, {}) for k in ("resources", "quantization", "source")}
        for k, v in extra.items():
            if not isinstance(v, dict):
                raise PlanError(f"{path}: plan header {k} must be a table")
        raw = h.get("raw_weights", False)
        if not isinstance(raw, bool):
            raise PlanError(f"{path}: plan header raw_weights = {raw!r} must be true/false")
        new = sorted({k for L in layers for k in V3_PARAMS if k in L.neuron_params}
                     | {k for L in layers for k in V3_ARRAYS if k in L.neuron_arrays}
                     | {"weights_lo" for L in layers if L.weights_lo is not None})
        if h["version"] < 3 and new:
            raise PlanError(f"{path}: version-{h['version']} plan carries {new}, "
                            f"version-3 fields")
        plan = cls(h["profile"], h["num_steps"], tuple(h["input_shape"]), layers,
                   extra["resources"], extra["quantization"], extra["source"], fixed_point=fmt,
                   raw_weights=raw)
        try:
            plan.validate()
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from exc
        return plan


def _layer_from_header(path: Path, i: int, lh: Any, files: dict[str, np.ndarray]) -> PlanLayer:
    """One :class:`PlanLayer` from its header and arrays; PlanError names a missing, unknown
    or mistyped key and a missing or non-integer array."""
    where = f"{path}: plan layer {i}"
    if not isinstance(lh, dict):
        raise PlanError(f"{where}: header is not a table")
    where = f"{path}: plan layer {i} ({lh.get('name', '?')})"
    unknown = sorted(set(lh) - set(LAYER_KEYS))
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {unknown}")
    for key in LAYER_REQUIRED:
        if key not in lh:
            raise PlanError(f"{where}: lacks {key!r}")
    for key, value in lh.items():
        if not _is(value, LAYER_KEYS[key]):
            raise PlanError(f"{where}: {key} = {value!r:.80} must be "
                            f"{_type_words(LAYER_KEYS[key])}")
    names = lh.get("neuron_arrays", [])
    if not all(isinstance(n, str) for n in names):
        raise PlanError(f"{where}: neuron_arrays must list names")
    skips = lh.get("skip_from", [])
    if not all(_is(j, (int,)) for j in skips):
        raise PlanError(f"{where}: skip_from must list layer indices")
    arrays = {}
    lo = bool(lh.get("weights_lo", False))
    for key in ["weights", "bias_mant", *[f"n.{n}" for n in names],
                *[f"skip{m}" for m in range(len(skips))], *(["weights_lo"] if lo else [])]:
        a = files.get(f"layer{i}.{key}")
        if a is None:
            raise PlanError(f"{where}: array {key!r} is missing")
        if not np.issubdtype(a.dtype, np.integer):
            raise PlanError(f"{where}: array {key!r} must hold integers, got dtype {a.dtype}")
        arrays[key] = a
    args = {k: v for k, v in lh.items() if k not in ("neuron_arrays", "weights_lo")}
    if lo:
        args["weights_lo"] = arrays["weights_lo"]
    args["skip_weights"] = tuple(arrays[f"skip{m}"] for m in range(len(skips)))
    for k in ("in_shape", "out_shape", "stride", "padding", "skip_from"):
        if k in args:
            args[k] = tuple(args[k])
    return PlanLayer(weights=arrays["weights"], bias_mant=arrays["bias_mant"],
                     neuron_arrays={n: arrays[f"n.{n}"] for n in names}, **args)
