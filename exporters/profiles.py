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
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError, EnvironmentMissingError

_PROFILE_PACKAGE = "neurodeploy.hardware_profiles"
SCHEMA_FILE = "schema.json"


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
    source: str = ""

    # ------------------------------------------------------------- derived integer ranges
    @property
    def total_cores(self) -> int:
        return self.cores_per_chip * self.chips

    @property
    def weight_max_mixed(self) -> int:
        """Largest mixed-sign weight mantissa (254 for 8 bits with LSB dropped)."""
        return 2**self.weight_bits - (2 if self.mixed_sign_drops_lsb else 1)

    @property
    def weight_min_mixed(self) -> int:
        return -(2**self.weight_bits)

    @property
    def weight_max_single(self) -> int:
        """Largest single-sign weight magnitude (255 for 8 bits)."""
        return 2**self.weight_bits - 1

    @property
    def mixed_step(self) -> int:
        """Granularity of mixed-sign mantissas (2 when the LSB is dropped)."""
        return 2 if self.mixed_sign_drops_lsb else 1

    @property
    def vth_max(self) -> int:
        return 2**self.threshold_bits - 1

    @property
    def bias_mant_min(self) -> int:
        return -(2 ** (self.bias_mant_bits - 1))

    @property
    def bias_mant_max(self) -> int:
        return 2 ** (self.bias_mant_bits - 1) - 1

    @property
    def bias_exp_max(self) -> int:
        return 2**self.bias_exp_bits - 1

    @property
    def decay_unity(self) -> int:
        return 2**self.decay_bits

    @property
    def decay_max(self) -> int:
        return 2**self.decay_bits - 1

    @property
    def state_max(self) -> int:
        """Largest |v| (saturation bound), 2^(state_bits−1) − 1."""
        return 2 ** (self.state_bits - 1) - 1

    @property
    def input_limit(self) -> int:
        """|a| must stay below this so that ``a << activation_shift`` does not wrap u."""
        return 2 ** (self.state_bits - 1 - self.activation_shift)

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
        return 2 ** (self.talif_state_bits - 1) - 1

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
        import tomllib
    except ModuleNotFoundError as exc:  # Python 3.10 (the Lava environment)
        raise EnvironmentMissingError(
            "reading hardware profiles needs Python >= 3.11 (tomllib); run this in the main "
            "environment — the Lava side only needs the deployment plan"
        ) from exc
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"hardware profile {str(path)!r} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"hardware profile {str(path)!r} cannot be read: {exc}") from exc


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
