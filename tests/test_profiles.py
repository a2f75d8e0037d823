"""Hardware profiles: shipped TOMLs load into frozen dataclasses, every number has a source,
malformed/unknown profiles give clear errors."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
import tomllib

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.profiles import (
    HardwareProfile,
    list_profiles,
    load_profile,
    load_schema,
)

PROFILE_DIR = Path(__file__).resolve().parents[1] / "hardware_profiles"
REPO = PROFILE_DIR.parent


def _loihi2_dict() -> dict:
    with open(PROFILE_DIR / "loihi2.toml", "rb") as fh:
        return tomllib.load(fh)


def _write(tmp_path: Path, data: dict, name: str = "p.toml") -> Path:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            else:
                lines.append(f"{k} = {v}")
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_shipped_profiles_listed_and_load():
    names = list_profiles()
    assert {"loihi1", "loihi2"} <= set(names)
    for n in names:
        p = load_profile(n)
        assert isinstance(p, HardwareProfile) and p.name == n


def test_loihi_numbers_match_lava_fixed_point():
    """The research table (§3, §5): Lava's bit-accurate LIF and 8-bit Dense weights."""
    for name, npc in (("loihi2", 8192), ("loihi1", 1024)):
        p = load_profile(name)
        assert p.cores_per_chip == 128 and p.neurons_per_core == npc
        assert (p.weight_bits, p.weight_exp_min, p.weight_exp_max) == (8, -8, 7)
        assert (p.state_bits, p.decay_bits, p.threshold_bits, p.threshold_shift) == (24, 12, 17, 6)
        assert (p.bias_mant_bits, p.bias_exp_bits, p.activation_shift) == (13, 3, 6)
        assert p.spike_comparison == ">" and p.reset == "zero" and p.synaptic_delay == 1
        # derived integer ranges
        assert (p.weight_min_mixed, p.weight_max_mixed, p.weight_max_single) == (-256, 254, 255)
        assert p.vth_max == 131071 and (p.bias_mant_min, p.bias_mant_max) == (-4096, 4095)
        assert p.bias_exp_max == 7 and p.decay_max == 4095 and p.decay_unity == 4096
        assert p.input_limit == 2**17 and p.state_max == 2**23 - 1
    assert load_profile("loihi2").max_synaptic_delay == 63
    assert load_profile("loihi1").max_synaptic_delay == 62
    assert load_profile("loihi1").max_fan_in_per_core == 4096
    assert load_profile("loihi2").max_fan_in_per_core is None


def test_every_number_has_a_source_comment():
    for f in PROFILE_DIR.glob("*.toml"):
        section = None
        for line in f.read_text().splitlines():
            m = re.match(r"^\[(\w+)\]", line)
            if m:
                section = m.group(1)
                continue
            if section in ("chip", "synapse", "neuron") and re.match(r"^\w+\s*=", line):
                key = line.split("=")[0].strip()
                if key == "chips":
                    continue
                assert "#" in line, f"{f.name}: {key} has no source comment"
                comment = line.split("#", 1)[1]
                assert re.search(r"\[(src|doc|mem|exp)|modelling choice", comment), \
                    f"{f.name}: {key} comment names no source tag"
                if "[mem]" in comment:
                    assert "APPROXIMATE" in comment, f"{f.name}: {key} [mem] not marked"


def test_profile_is_frozen():
    p = load_profile("loihi2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.neurons_per_core = 1  # type: ignore[misc]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as ei:
        load_profile("loihi3")
    msg = str(ei.value)
    assert "loihi3" in msg and "loihi1" in msg and "loihi2" in msg


def test_missing_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "none.toml")


def test_custom_path_profile_loads(tmp_path):
    d = _loihi2_dict()
    d["profile"]["name"] = "tiny"
    d["chip"].update(cores_per_chip=2, neurons_per_core=16, max_fan_in_per_core=100)
    p = load_profile(_write(tmp_path, d))
    assert (p.name, p.cores_per_chip, p.neurons_per_core, p.max_fan_in_per_core) == \
        ("tiny", 2, 16, 100)
    assert p.source.endswith("p.toml")


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["chip"].pop("neurons_per_core"), r"missing \['neurons_per_core'\]"),
    (lambda d: d["chip"].__setitem__("neurons_per_cor", 3), r"unknown field.*neurons_per_cor.*"
                                                            r"valid fields:.*neurons_per_core"),
    (lambda d: d["neuron"].__setitem__("state_bits", "24"), r"neuron.state_bits must be of type "
                                                            r"integer"),
    (lambda d: d["synapse"].__setitem__("weight_bits", 0), r"synapse.weight_bits = 0 is below"),
    (lambda d: d["neuron"].__setitem__("reset", "soft"), r"neuron.reset = 'soft' is not one of"),
    (lambda d: d["synapse"].__setitem__("mixed_sign_drops_lsb", 1), r"must be of type boolean"),
    (lambda d: d.pop("neuron"), r"missing \['neuron'\]"),
    (lambda d: d["synapse"].__setitem__("synaptic_delay", 9) or
     d["synapse"].__setitem__("max_synaptic_delay", 4), r"synaptic_delay 9 > max_synaptic_delay"),
])
def test_malformed_profiles_name_the_field(tmp_path, mutate, needle):
    d = _loihi2_dict()
    mutate(d)
    with pytest.raises(ConfigError, match=needle) as ei:
        load_profile(_write(tmp_path, d))
    assert "p.toml" in str(ei.value)


def test_bad_toml_syntax(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[chip\ncores = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_profile(p)


def test_schema_matches_dataclass_fields():
    schema = load_schema()
    keys = {k for sec in schema["properties"].values() for k in sec["properties"]}
    fields = {f.name for f in dataclasses.fields(HardwareProfile)} - {"source"}
    assert keys == fields


@pytest.mark.lava
def test_profiles_module_imports_in_lava_env_without_torch():
    py = REPO / ".venv-lava" / "bin" / "python"
    if not py.exists():
        pytest.skip("Lava environment (.venv-lava) not built")
    code = ("import sys\nimport neurodeploy.exporters.profiles as p\n"
            "print(p.list_profiles())\n"
            "try:\n    p.load_profile('loihi2')\nexcept Exception as e:\n"
            "    print(type(e).__name__)\nprint('torch' in sys.modules)\n")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert "EnvironmentMissingError" in out.stdout and lines[-1] == "False"
