"""Hardware profiles: frozen, validated descriptions of a Loihi-style chip.

A profile is a TOML file (``hardware_profiles/<name>.toml``, installed as package data of
``neurodeploy.hardware_profiles``) with four sections — ``[profile]``, ``[chip]``,
``[synapse]``, ``[neuron]`` — validated against ``hardware_profiles/schema.json`` (a small
subset of JSON Schema: type, minimum, maximum, enum, required, additionalProperties). Keys are
unique across sections and become the fields of :class:`HardwareProfile`. Every number in the
shipped files carries a comment with its source; ``[mem]`` marks approximate values.

Derived fixed-point ranges (Lava's ``PyLifModelBitAcc`` for the Loihi profiles)::

    mixed-sign weights   even values in [−2^wb, 2^wb − 2]        (wb = weight_bits)
    single-sign weights  [0, 2^wb − 1]  or  [−(2^wb − 1), 0]
    vth                  [0, 2^threshold_bits − 1], compared as v > vth << threshold_shift
    bias                 mant ∈ [−2^(bm−1), 2^(bm−1) − 1], exp ∈ [0, 2^be − 1], bias = mant << exp
    u, v                 signed state_bits; synaptic input a enters as a << activation_shift,
                         so |a| < 2^(state_bits − 1 − activation_shift) avoids u wrapping
    decays               du, dv ∈ [0, 2^decay_bits − 1]
    TA-LIF (optional)    θ_v mantissa ∈ [0, 2^talif_theta_v_bits − 1], shift ≤ talif_theta_v_shift_max,
                         θ and NDS signed talif_state_bits (θ saturates); only when
                         programmable_neurons (Loihi 2 microcode; Loihi 1's LIF is fixed)

Environments: reading TOML needs ``tomllib`` (Python ≥ 3.11), so profiles load in the main
environment only; the module itself imports on Python 3.10 (the Lava environment) and raises
:class:`~neurodeploy.errors.EnvironmentMissingError` there when asked to load a TOML file —
the Lava side needs only plans, which carry everything it runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError, EnvironmentMissingError

_PROFILE_PACKAGE = "neurodeploy.hardware_profiles"
SCHEMA_FILE = "schema.json"

#: Rounding modes, overflow rules and comparisons a :class:`FixedPointFormat` may name.
DECAY_ROUNDINGS = ("toward_zero",)
WEIGHT_EXP_ROUNDINGS = ("floor",)
U_OVERFLOWS = ("wrap_once", "wrap", "saturate")
V_OVERFLOWS = ("saturate", "wrap")
SPIKE_COMPARISONS = (">", ">=")
RESETS = ("zero", "subtract")


@dataclass(frozen=True)
class FixedPointFormat:
    """The integer arithmetic of one chip: every width, shift, rounding and overflow rule.

    It is written into each deployment plan (``DeploymentPlan.fixed_point``) and every
    interpreter of a plan — emulator, hardware twin, Lava runner and its TA-LIF process, QAT,
    audit — reads its constants from there. Per layer and step (``>>₀`` rounds toward zero)::

        a  = (W · s) << weight_exp                (>> for a negative exponent: weight_exp_rounding)
        a  = wrap_{conv_output_bits}(conv(s, W))  conv / pool
        u  = over_u( (u·(2^decay_bits − du − current_decay_offset)) >>₀ decay_bits
                     + (a << activation_shift) )
        v  = over_v( (v·(2^decay_bits − dv − voltage_decay_offset)) >>₀ decay_bits + u
                     + (bias_mant << bias_exp) )
        s  = v  spike_comparison  (vth << threshold_shift)
        v  = 0 where s (reset "zero"), v − (vth << threshold_shift) (reset "subtract")

    ``over_u`` / ``over_v`` are the ``u_overflow`` / ``v_overflow`` rules on ``state_bits``
    signed bits: ``wrap_once`` (Lava: one conditional ±2^state_bits), ``wrap`` (two's
    complement), ``saturate`` (clip to ±(2^(state_bits−1) − 1)). Intermediate sums live in
    ``port_bits``-bit words (Lava's Python models: int32). Weight mantissas have
    ``weight_bits`` bits plus sign; mixed-sign matrices lose the LSB when
    ``mixed_sign_drops_lsb``. A spike leaves a layer ``synaptic_delay`` steps later. The
    ``talif_*`` fields are the TA-LIF microcode neuron's widths (None: no TA-LIF).
    """

    weight_bits: int
    weight_exp_min: int
    weight_exp_max: int
    mixed_sign_drops_lsb: bool
    weight_exp_rounding: str
    synaptic_delay: int
    state_bits: int
    port_bits: int
    conv_output_bits: int
    decay_bits: int
    current_decay_offset: int
    voltage_decay_offset: int
    decay_rounding: str
    threshold_bits: int
    threshold_shift: int
    activation_shift: int
    bias_mant_bits: int
    bias_exp_bits: int
    u_overflow: str
    v_overflow: str
    spike_comparison: str
    reset: str
    talif_theta_v_bits: int | None = None
    talif_theta_v_shift_max: int | None = None
    talif_state_bits: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("decay_rounding", DECAY_ROUNDINGS),
                              ("weight_exp_rounding", WEIGHT_EXP_ROUNDINGS),
                              ("u_overflow", U_OVERFLOWS), ("v_overflow", V_OVERFLOWS),
                              ("spike_comparison", SPIKE_COMPARISONS), ("reset", RESETS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"fixed-point format: {name} = {getattr(self, name)!r} is not "
                                  f"one of {list(allowed)}")
        if not self.state_bits <= self.port_bits <= 62 or self.conv_output_bits > self.port_bits:
            raise ConfigError(f"fixed-point format: need state_bits ({self.state_bits}) <= "
                              f"port_bits ({self.port_bits}) <= 62 and conv_output_bits "
                              f"({self.conv_output_bits}) <= port_bits")

    # ---------------------------------------------------------------- derived constants
    @property
    def decay_unity(self) -> int:
        """``2^decay_bits``: a decay d multiplies by ``(decay_unity − d − offset) / decay_unity``."""
        return 1 << self.decay_bits

    @property
    def decay_max(self) -> int:
        return (1 << self.decay_bits) - 1

    @property
    def state_half(self) -> int:
        """``2^(state_bits − 1)``: the wrap point of u."""
        return 1 << (self.state_bits - 1)

    @property
    def state_max(self) -> int:
        """Largest |v| (saturation bound), ``2^(state_bits−1) − 1``."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def vth_max(self) -> int:
        return (1 << self.threshold_bits) - 1

    @property
    def weight_max_mixed(self) -> int:
        """Largest mixed-sign weight mantissa (254 for 8 bits with the LSB dropped)."""
        return (1 << self.weight_bits) - (2 if self.mixed_sign_drops_lsb else 1)

    @property
    def weight_min_mixed(self) -> int:
        return -(1 << self.weight_bits)

    @property
    def weight_max_single(self) -> int:
        """Largest single-sign weight magnitude (255 for 8 bits)."""
        return (1 << self.weight_bits) - 1

    @property
    def mixed_step(self) -> int:
        """Granularity of mixed-sign mantissas (2 when the LSB is dropped)."""
        return 2 if self.mixed_sign_drops_lsb else 1

    @property
    def input_limit(self) -> int:
        """|a| must stay below this so that ``a << activation_shift`` does not wrap u."""
        return 1 << (self.state_bits - 1 - self.activation_shift)

    @property
    def bias_mant_min(self) -> int:
        return -(1 << (self.bias_mant_bits - 1))

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def bias_exp_max(self) -> int:
        return (1 << self.bias_exp_bits) - 1

    def u_factor(self, du: int) -> int:
        """Integer current decay factor ``2^decay_bits − (du + current_decay_offset)``."""
        return self.decay_unity - (int(du) + self.current_decay_offset)

    def v_factor(self, dv: int) -> int:
        """Integer voltage decay factor ``2^decay_bits − (dv + voltage_decay_offset)``."""
        return self.decay_unity - (int(dv) + self.voltage_decay_offset)

    def vth_scaled(self, vth: int) -> int:
        """The threshold in v units, ``vth << threshold_shift``."""
        return int(vth) << self.threshold_shift

    def v_per_float(self, scale: float) -> float:
        """v units per float unit of a layer with float→integer ``scale``: ``scale·2^shift``."""
        return float(scale) * float(1 << self.threshold_shift)

    def bias_units(self, bias_exp: int) -> float:
        """Weight units of one bias mantissa step: ``2^(bias_exp − activation_shift)``."""
        return 2.0 ** (int(bias_exp) - self.activation_shift)

    def talif_theta_max(self, bits: int | None = None) -> int:
        """Largest |θ| of a TA-LIF neuron with ``bits``-bit θ (default ``talif_state_bits``)."""
        bits = self.talif_state_bits if bits is None else bits
        if bits is None:
            raise ConfigError("fixed-point format defines no TA-LIF state width")
        return (1 << (int(bits) - 1)) - 1

    # ---------------------------------------------------------------- weights
    @staticmethod
    def weight_sign_mode(w: Any) -> str:
        """``"mixed"``, ``"excitatory"`` (all ≥ 0) or ``"inhibitory"`` (all ≤ 0, some < 0) of a
        numpy array or torch tensor."""
        pos, neg = bool((w > 0).any()), bool((w < 0).any())
        if pos and neg:
            return "mixed"
        return "inhibitory" if neg else "excitatory"

    def weight_range(self, mode: str) -> tuple[int, int]:
        """Mantissa range for a sign mode (see :meth:`weight_sign_mode`)."""
        if mode == "mixed":
            return self.weight_min_mixed, self.weight_max_mixed
        if mode == "excitatory":
            return 0, self.weight_max_single
        if mode == "inhibitory":
            return -self.weight_max_single, 0
        raise ConfigError(f"unknown weight sign mode {mode!r}; valid: mixed, excitatory, "
                          f"inhibitory")

    def quantize_weights(self, w: Any, scale: float, mode: str) -> Any:
        """Weight mantissas on the chip's grid, the one rule shared by compiler and QAT::

            mixed:        step·round(w·scale / step) clipped to [weight_min_mixed, weight_max_mixed]
            excitatory:   round(w·scale) clipped to [0, weight_max_single]
            inhibitory:   round(w·scale) clipped to [−weight_max_single, 0]

        (``step = mixed_step``; ``round`` is half-to-even for numpy and torch alike). Works on
        numpy arrays and torch tensors and returns integer values in ``w``'s float type.
        """
        lo, hi = self.weight_range(mode)
        step = self.mixed_step if mode == "mixed" else 1
        return ((w * (float(scale) / step)).round() * step).clip(lo, hi)

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "fixed-point format"
                  ) -> FixedPointFormat:
        """Build the record from :meth:`to_dict` output; :class:`ConfigError` names unknown,
        missing or mistyped fields."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; valid: {sorted(names)}")
        required = [n for n, f in names.items() if f.default is MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {missing}")
        for k, v in data.items():
            want = str if k in _FORMAT_STR_FIELDS else bool if k == "mixed_sign_drops_lsb" else int
            ok = v is None and names[k].default is None or (
                isinstance(v, want) and (want is bool or not isinstance(v, bool)))
            if not ok:
                raise ConfigError(f"{where}: field {k} = {v!r} must be {want.__name__}")
        return cls(**data)


_FORMAT_STR_FIELDS = frozenset({"weight_exp_rounding", "decay_rounding", "u_overflow",
                                "v_overflow", "spike_comparison", "reset"})

#: The arithmetic Lava 0.10's bit-accurate ``PyLifModelBitAcc`` / ``PyDenseModelBitAcc`` /
#: ``PyConvModelFixed`` implement (read in the installed source: lif/models.py 89-108,
#: conv/models.py 79, dense/models.py 64-68). The Lava runner runs exactly this format and
#: refuses plans with another one; version-1 plans (written before plans carried their format)
#: are read with it. ``tests/test_profiles.py`` checks that the shipped loihi2 profile equals it.
LAVA_0_10 = FixedPointFormat(
    weight_bits=8, weight_exp_min=-8, weight_exp_max=7, mixed_sign_drops_lsb=True,
    weight_exp_rounding="floor", synaptic_delay=1, state_bits=24, port_bits=32,
    conv_output_bits=24, decay_bits=12, current_decay_offset=1, voltage_decay_offset=0,
    decay_rounding="toward_zero", threshold_bits=17, threshold_shift=6, activation_shift=6,
    bias_mant_bits=13, bias_exp_bits=3, u_overflow="wrap_once", v_overflow="saturate",
    spike_comparison=">", reset="zero",
    talif_theta_v_bits=16, talif_theta_v_shift_max=15, talif_state_bits=24,
)


@dataclass(frozen=True)
class HardwareProfile:
    """One chip's limits and fixed-point formats (see the module docstring and schema.json)."""

    name: str
    description: str
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bytes_per_core: int
    bits_per_synapse: int
    weight_bits: int
    weight_exp_min: int
    weight_exp_max: int
    mixed_sign_drops_lsb: bool
    synaptic_delay: int
    max_synaptic_delay: int
    state_bits: int
    decay_bits: int
    threshold_bits: int
    threshold_shift: int
    activation_shift: int
    bias_mant_bits: int
    bias_exp_bits: int
    spike_comparison: str
    reset: str
    chips: int = 1
    max_fan_in_per_core: int | None = None
    max_fan_out_per_core: int | None = None
    # Programmable (microcode) neurons and the TA-LIF formats: this project's design for a
    # TA-LIF on Loihi 2's programmable cores (Orchard et al. 2021); absent = no TA-LIF.
    programmable_neurons: bool = False
    talif_theta_v_bits: int | None = None
    talif_theta_v_shift_max: int | None = None
    talif_state_bits: int | None = None
    # Graded spikes (Loihi 2): payload bits of a spike message; 0 = binary spikes only.
    graded_spike_bits: int = 0
    # [arithmetic]: rounding and overflow of the integer step (optional section; absent keys
    # take Lava 0.10's behaviour, the values of :data:`LAVA_0_10`).
    port_bits: int = LAVA_0_10.port_bits
    conv_output_bits: int = LAVA_0_10.conv_output_bits
    current_decay_offset: int = LAVA_0_10.current_decay_offset
    voltage_decay_offset: int = LAVA_0_10.voltage_decay_offset
    decay_rounding: str = LAVA_0_10.decay_rounding
    weight_exp_rounding: str = LAVA_0_10.weight_exp_rounding
    u_overflow: str = LAVA_0_10.u_overflow
    v_overflow: str = LAVA_0_10.v_overflow
    # [cost] (optional): per-operation energy and time of the chip with their source, used by
    # neurodeploy.efficiency for energy/latency per inference estimates (None: no estimate).
    energy_per_synop_pj: float | None = None
    energy_per_neuron_update_active_pj: float | None = None
    energy_per_neuron_update_inactive_pj: float | None = None
    energy_per_spike_pj: float | None = None
    time_per_synop_ns: float | None = None
    time_per_neuron_update_active_ns: float | None = None
    time_per_neuron_update_inactive_ns: float | None = None
    time_barrier_sync_ns: float | None = None
    cost_source: str = ""
    cost_approximate: bool = True
    source: str = ""

    # ------------------------------------------------------------- derived integer ranges
    @property
    def total_cores(self) -> int:
        return self.cores_per_chip * self.chips

    # The fixed-point ranges are the format's (one definition, FixedPointFormat).
    @property
    def weight_max_mixed(self) -> int:
        """Largest mixed-sign weight mantissa (254 for 8 bits with LSB dropped)."""
        return self.fixed_point.weight_max_mixed

    @property
    def weight_min_mixed(self) -> int:
        return self.fixed_point.weight_min_mixed

    @property
    def weight_max_single(self) -> int:
        """Largest single-sign weight magnitude (255 for 8 bits)."""
        return self.fixed_point.weight_max_single

    @property
    def mixed_step(self) -> int:
        """Granularity of mixed-sign mantissas (2 when the LSB is dropped)."""
        return self.fixed_point.mixed_step

    @property
    def vth_max(self) -> int:
        return self.fixed_point.vth_max

    @property
    def bias_mant_min(self) -> int:
        return self.fixed_point.bias_mant_min

    @property
    def bias_mant_max(self) -> int:
        return self.fixed_point.bias_mant_max

    @property
    def bias_exp_max(self) -> int:
        return self.fixed_point.bias_exp_max

    @property
    def decay_unity(self) -> int:
        return self.fixed_point.decay_unity

    @property
    def decay_max(self) -> int:
        return self.fixed_point.decay_max

    @property
    def state_max(self) -> int:
        """Largest |v| (saturation bound), 2^(state_bits−1) − 1."""
        return self.fixed_point.state_max

    @property
    def input_limit(self) -> int:
        """|a| must stay below this so that ``a << activation_shift`` does not wrap u."""
        return self.fixed_point.input_limit

    @property
    def supports_talif(self) -> bool:
        """True when the profile can run the TA-LIF microcode neuron (all its formats given)."""
        return bool(self.programmable_neurons) and None not in (
            self.talif_theta_v_bits, self.talif_theta_v_shift_max, self.talif_state_bits)

    @property
    def talif_state_max(self) -> int:
        """Largest |θ| and |NDS| of a TA-LIF neuron, 2^(talif_state_bits−1) − 1."""
        if self.talif_state_bits is None:
            raise ConfigError(f"profile {self.name!r} defines no TA-LIF state width")
        return self.fixed_point.talif_theta_max()

    @cached_property
    def fixed_point(self) -> FixedPointFormat:
        """This profile's integer arithmetic as the frozen record every interpreter reads."""
        return FixedPointFormat(**{f.name: getattr(self, f.name) for f in fields(FixedPointFormat)})

    def limits(self) -> dict[str, Any]:
        """The limits the compiler checks, for the resource report."""
        return {
            "cores_per_chip": self.cores_per_chip, "chips": self.chips,
            "neurons_per_core": self.neurons_per_core,
            "synaptic_memory_bytes_per_core": self.synaptic_memory_bytes_per_core,
            "bits_per_synapse": self.bits_per_synapse,
            "max_fan_in_per_core": self.max_fan_in_per_core,
            "max_fan_out_per_core": self.max_fan_out_per_core,
            "weight_bits": self.weight_bits, "threshold_bits": self.threshold_bits,
            "state_bits": self.state_bits, "bias_mant_bits": self.bias_mant_bits,
            "bias_exp_bits": self.bias_exp_bits, "decay_bits": self.decay_bits,
            "synaptic_delay": self.synaptic_delay,
            "programmable_neurons": self.programmable_neurons,
            "talif_theta_v_bits": self.talif_theta_v_bits,
            "talif_theta_v_shift_max": self.talif_theta_v_shift_max,
            "talif_state_bits": self.talif_state_bits,
            "graded_spike_bits": self.graded_spike_bits,
        }


# ----------------------------------------------------------------------------- loading


def _profile_dir() -> Path:
    return Path(str(resources.files(_PROFILE_PACKAGE)))


def load_schema() -> dict[str, Any]:
    """The JSON schema shipped with the profiles."""
    path = _profile_dir() / SCHEMA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:  # pragma: no cover - broken install
        raise ConfigError(f"hardware profile schema {path} cannot be read: {exc}") from exc


def list_profiles() -> list[str]:
    """Names of the shipped profiles (``hardware_profiles/*.toml``), sorted."""
    return sorted(p.stem for p in _profile_dir().glob("*.toml"))


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,),
}


def _validate(value: Any, schema: dict[str, Any], where: str, source: str) -> None:
    """Validate ``value`` against the schema subset; raise ConfigError naming field and file."""
    typ = schema.get("type")
    if typ is not None:
        ok = isinstance(value, _JSON_TYPES[typ]) and not (
            typ in ("integer", "number") and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{source}: {where} must be of type {typ}, got "
                              f"{type(value).__name__} {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ConfigError(f"{source}: {where} = {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        raise ConfigError(f"{source}: {where} = {value!r} is below the minimum "
                          f"{schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ConfigError(f"{source}: {where} = {value!r} is above the maximum "
                          f"{schema['maximum']}")
    if typ == "object":
        props = schema.get("properties", {})
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            raise ConfigError(f"{source}: {where or 'profile'} is missing {missing}; required: "
                              f"{schema.get('required')}")
        if schema.get("additionalProperties") is False:
            unknown = sorted(set(value) - set(props))
            if unknown:
                raise ConfigError(f"{source}: unknown field(s) {unknown} in "
                                  f"{where or 'the profile'}; valid fields: {sorted(props)}")
        for k, v in value.items():
            if k in props:
                _validate(v, props[k], f"{where}.{k}" if where else k, source)


def profile_from_dict(data: dict[str, Any], source: str = "<dict>") -> HardwareProfile:
    """Validate a parsed TOML document and build the frozen profile."""
    _validate(data, load_schema(), "", source)
    flat: dict[str, Any] = {}
    for section in data.values():
        flat.update(section)
    if flat["weight_exp_min"] > flat["weight_exp_max"]:
        raise ConfigError(f"{source}: weight_exp_min {flat['weight_exp_min']} > weight_exp_max "
                          f"{flat['weight_exp_max']}")
    if flat["synaptic_delay"] > flat["max_synaptic_delay"]:
        raise ConfigError(f"{source}: synaptic_delay {flat['synaptic_delay']} > "
                          f"max_synaptic_delay {flat['max_synaptic_delay']}")
    if flat["activation_shift"] >= flat["state_bits"] - 1:
        raise ConfigError(f"{source}: activation_shift {flat['activation_shift']} leaves no "
                          f"room in a {flat['state_bits']}-bit state")
    if flat["threshold_bits"] + flat["threshold_shift"] > flat["state_bits"] - 1:
        raise ConfigError(f"{source}: vth << threshold_shift does not fit the "
                          f"{flat['state_bits']}-bit state")
    talif = [k for k in ("talif_theta_v_bits", "talif_theta_v_shift_max", "talif_state_bits")
             if k in flat]
    if flat.get("programmable_neurons") and 0 < len(talif) < 3:
        raise ConfigError(f"{source}: TA-LIF formats are all-or-nothing; got only {talif}")
    if "talif_state_bits" in flat and flat["talif_state_bits"] < flat["state_bits"]:
        raise ConfigError(f"{source}: talif_state_bits {flat['talif_state_bits']} < state_bits "
                          f"{flat['state_bits']}: θ could not hold vth << threshold_shift or "
                          f"an NDS in v units")
    names = {f.name for f in fields(HardwareProfile)}
    return HardwareProfile(**{k: v for k, v in flat.items() if k in names}, source=source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # noqa: F401 - the Lava side (Python 3.10) has none
    except ModuleNotFoundError as exc:  # Python 3.10 (the Lava environment)
        raise EnvironmentMissingError(
            "reading hardware profiles needs Python >= 3.11 (tomllib); run this in the main "
            "environment — the Lava side only needs the deployment plan"
        ) from exc
    from neurodeploy.safeload import loads_toml

    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"hardware profile {str(path)!r} cannot be read: {exc}") from exc
    return loads_toml(text, f"hardware profile {str(path)!r}", ConfigError)  # syntax, depth


def load_profile(name_or_path: str | os.PathLike | HardwareProfile) -> HardwareProfile:
    """Load a shipped profile by name (``"loihi2"``) or any profile TOML by path.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the valid names), unreadable or invalid TOML, or a
        field that is missing, unknown, of the wrong type or out of range (named).
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith(".toml") or os.sep in text or "/" in text
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"hardware profile file {text!r} does not exist; shipped "
                              f"profiles: {', '.join(list_profiles())}")
    else:
        path = _profile_dir() / f"{text}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown hardware profile {text!r}; valid names: "
                              f"{', '.join(list_profiles())} (or a path to a .toml file)")
    return profile_from_dict(_read_toml(path), source=str(path))
