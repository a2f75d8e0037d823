"""Plans are validated against the fixed-point format they declare, on load, in both Python
environments: a property test writes random violations into valid plan files and checks that
every one is refused with a :class:`PlanError` naming the layer and field (exit 2 on the
command line), and that none crashes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.exporters.plan import (
    LAYER_KEYS,
    DeploymentPlan,
    PlanError,
    PlanLayer,
)
from neurodeploy.sims.emulator import random_fc_plan
from neurodeploy.sims.lava_env import lava_available

REPO = Path(__file__).resolve().parents[1]


def conv_plan() -> DeploymentPlan:
    """A valid conv → dense plan on the compiler's grid (even mixed-sign weights)."""
    rng = np.random.default_rng(1)
    conv = PlanLayer(name="conv1", kind="conv", in_shape=(1, 6, 6), out_shape=(2, 3, 3),
                     weights=(2 * rng.integers(-100, 100, (2, 1, 2, 2))).astype(np.int32),
                     weight_exp=0, du=4095, dv=1024, vth=300,
                     bias_mant=rng.integers(-50, 50, 18).astype(np.int32), bias_exp=3,
                     scale=12.5, stride=(2, 2))
    fc = PlanLayer(name="fc2", kind="dense", in_shape=(2, 3, 3), out_shape=(4,),
                   weights=(2 * rng.integers(-100, 100, (4, 18))).astype(np.int32),
                   weight_exp=1, du=4095, dv=0, vth=200, bias_mant=np.zeros(4, np.int32),
                   bias_exp=0, scale=3.0, flatten_before=True)
    return DeploymentPlan("test", 5, (1, 6, 6), (conv, fc))


def valid_plans() -> list[DeploymentPlan]:
    return [random_fc_plan(np.random.default_rng(0), (6, 5, 3), num_steps=4), conv_plan()]


def read_npz(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    return json.loads(str(files.pop("header"))), files


def write_npz(path: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, header=np.array(json.dumps(header)), **arrays)


def test_valid_plans_round_trip(tmp_path: Path) -> None:
    for i, plan in enumerate(valid_plans()):
        plan.save(tmp_path / f"p{i}.npz")
        back = DeploymentPlan.load(tmp_path / f"p{i}.npz")
        assert [L.name for L in back.layers] == [L.name for L in plan.layers]
        for a, b in zip(back.layers, plan.layers, strict=True):
            assert np.array_equal(a.weights, b.weights) and a.vth == b.vth


def test_layer_keys_are_the_plan_layer_fields() -> None:
    names = {f.name for f in dataclasses.fields(PlanLayer)} - {"weights", "bias_mant",
                                                               "skip_weights"}  # arrays
    assert set(LAYER_KEYS) == names


# Each violation: (description, function(header, arrays, fmt) -> None mutating them, words
# the message must contain). ``L`` picks the layer.
def _layer(h: dict, i: int) -> dict:
    return h["layers"][i % len(h["layers"])]


VALUE_EDITS = {
    # field: values that break the declared format (Lava 0.10 / loihi2 widths)
    "weight_exp": [-9, 8, 100, "0", 1.5, None, True],
    "du": [-1, 4096, "4095", 2.0],
    "dv": [-1, 4096, 1e9, None],
    "vth": [-1, 2**17, 10**12, "100", 0.5],
    "bias_exp": [-1, 8, 12, "3"],
    "scale": [float("nan"), float("inf"), -1.0, 0.0, "1.0", None],
    "delay": [-1, 64, 1000, "1"],
    "in_shape": [[7], [0], [-3], "x", [1, 2]],
    "out_shape": [[0], [10**6], "y", [2, 2, 2, 2]],
    "kind": ["dens", 3, None],
    "neuron": ["lif2", "", None],
    "name": [3, None],
    "flatten_before": ["yes", 2],
    "neuron_params": ["x", 3],
    "groups": [0, -1, "1"],
}
HEADER_EDITS = {
    "num_steps": [0, -5, "10", 2.5, None, True],
    "input_shape": [[], "6", [0], [-1], None],
    "layers": [[], "x", None, {}],
    "profile": [3, None],
    "version": [0, 99, "2"],
    "format": ["other", None],
}


@st.composite
def violations(draw):
    kind = draw(st.sampled_from(["layer_value", "drop_layer_key", "unknown_layer_key",
                                 "header_value", "drop_header_key", "weights", "bias",
                                 "array_dtype", "array_shape", "drop_array", "fixed_point",
                                 "bytes"]))
    plan_index = draw(st.integers(0, 1))
    layer = draw(st.integers(0, 1))
    if kind == "layer_value":
        key = draw(st.sampled_from(sorted(VALUE_EDITS)))
        return kind, plan_index, layer, key, draw(st.sampled_from(VALUE_EDITS[key]))
    if kind == "header_value":
        key = draw(st.sampled_from(sorted(HEADER_EDITS)))
        return kind, plan_index, layer, key, draw(st.sampled_from(HEADER_EDITS[key]))
    if kind == "drop_layer_key":
        return kind, plan_index, layer, draw(st.sampled_from(
            ["name", "kind", "in_shape", "out_shape", "weight_exp", "du", "dv", "vth",
             "bias_exp", "scale"])), None
    if kind == "drop_header_key":
        return kind, plan_index, layer, draw(st.sampled_from(sorted(HEADER_EDITS))), None
    if kind == "weights":
        # 9-bit mantissas, beyond the mixed-sign range, odd mixed-sign values
        return kind, plan_index, layer, None, draw(st.sampled_from(
            [255, 256, 300, -257, -300, 511, -(2**20), 2**31 - 1, 3, -5]))
    if kind == "bias":
        return kind, plan_index, layer, None, draw(st.sampled_from(
            [4096, -4097, 2**15, 2**16, -(2**16), 2**31 - 1]))
    if kind == "fixed_point":
        return kind, plan_index, layer, draw(st.sampled_from(
            ["drop", "unknown", "weight_bits", "reset"])), None
    if kind == "bytes":
        return kind, plan_index, layer, draw(st.sampled_from(["truncate", "flip", "text"])), \
            draw(st.integers(0, 10**6))
    return kind, plan_index, layer, draw(st.sampled_from(["weights", "bias_mant"])), None


def apply(path: Path, v: tuple) -> None:
    kind, _, layer, key, value = v
    h, arrays = read_npz(path)
    i = layer % len(h["layers"])
    L = h["layers"][i]
    if kind == "layer_value":
        if key in ("in_shape",) and i == 0 and value == [1, 2]:
            value = [5]
        L[key] = value
        if key == "neuron_params" and L.get("neuron") == "lif":
            L["neuron"] = "talif"  # a talif layer must have its parameters
    elif kind == "drop_layer_key":
        del L[key]
    elif kind == "unknown_layer_key":
        L["weight_bitz"] = 8
    elif kind == "header_value":
        h[key] = value
    elif kind == "drop_header_key":
        del h[key]
    elif kind == "weights":
        w = arrays[f"layer{i}.weights"].copy()
        w.reshape(-1)[len(w.reshape(-1)) // 2] = value
        if value in (3, -5):  # odd entry in a mixed-sign matrix
            w.reshape(-1)[0], w.reshape(-1)[1] = 2, -2
        arrays[f"layer{i}.weights"] = w.astype(np.int64)
    elif kind == "bias":
        b = arrays[f"layer{i}.bias_mant"].astype(np.int64)
        b[0] = value
        arrays[f"layer{i}.bias_mant"] = b
    elif kind == "array_dtype":
        arrays[f"layer{i}.{key}"] = arrays[f"layer{i}.{key}"].astype(np.float32) + 0.5
    elif kind == "array_shape":
        arrays[f"layer{i}.{key}"] = np.concatenate([arrays[f"layer{i}.{key}"].reshape(-1), [0]])
    elif kind == "drop_array":
        del arrays[f"layer{i}.{key}"]
    elif kind == "fixed_point":
        fp = h["fixed_point"]
        if key == "drop":
            del h["fixed_point"]
        elif key == "unknown":
            fp["weight_bitz"] = 8
        elif key == "weight_bits":
            fp["weight_bits"] = "8"
        else:
            fp["reset"] = "explode"
    if kind == "bytes":
        data = bytearray(path.read_bytes())
        if key == "truncate":
            path.write_bytes(bytes(data[: value % max(1, len(data) - 1)]))
        elif key == "flip":
            pos = 40 + value % (len(data) - 200)  # inside the members, not the directory
            data[pos] ^= 0x10
            path.write_bytes(bytes(data))
        else:
            path.write_text("plan = 'not really'\n")
        return
    write_npz(path, h, arrays)


def _still_valid(path: Path, v: tuple) -> bool:
    """A byte flip can land in bytes nothing reads (zip padding, an unused header field); such
    files must then load *identically* — never as a different plan."""
    return v[0] == "bytes" and v[3] == "flip"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(v=violations())
def test_every_violation_is_refused_with_a_named_field(tmp_path: Path, v: tuple) -> None:
    plan = valid_plans()[v[1]]
    path = tmp_path / "plan.npz"
    plan.save(path)
    apply(path, v)
    try:
        back = DeploymentPlan.load(path)
    except PlanError as exc:
        msg = str(exc)
        assert "\n" not in msg.strip()
        if v[0] in ("layer_value", "drop_layer_key", "weights", "bias", "array_dtype",
                    "drop_array") and "plan layer" in msg:
            assert v[3] is None or v[3] in msg or v[0] in ("weights", "bias") or "shape" in msg
        if v[0] == "weights":
            assert "weights" in msg and "range" in msg or "odd" in msg
        if v[0] == "bias":
            assert "bias_mant" in msg and "range" in msg
        return
    assert _still_valid(path, v), f"accepted: {v}"
    for a, b in zip(back.layers, plan.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias_mant, b.bias_mant)
        assert a.header() == b.header()


@pytest.mark.parametrize("plan_index", [0, 1])
def test_every_listed_bad_value_is_refused(tmp_path: Path, plan_index: int) -> None:
    """The exhaustive companion of the property test: every value of VALUE_EDITS and
    HEADER_EDITS, in every layer of both plans."""
    cases = [("layer_value", plan_index, layer, key, val)
             for layer in (0, 1) for key, vals in VALUE_EDITS.items() for val in vals]
    cases += [("header_value", plan_index, 0, key, val)
              for key, vals in HEADER_EDITS.items() for val in vals]
    for k, v in enumerate(cases):
        path = tmp_path / f"p{k}.npz"
        valid_plans()[plan_index].save(path)
        apply(path, v)
        with pytest.raises(PlanError):
            DeploymentPlan.load(path)
            print(v)


@pytest.mark.parametrize("edit, words", [
    (("weights", 0, 0, None, 300), ["plan layer 0", "weights", "300", "[-256, 254]"]),
    (("layer_value", 0, 0, "weight_exp", 9), ["weight_exp = 9", "[-8, 7]"]),
    (("layer_value", 0, 1, "scale", float("nan")), ["plan layer 1", "scale", "nan"]),
    (("bias", 0, 0, None, 2**16), ["bias_mant", "65536", "[-4096, 4095]"]),
    (("layer_value", 0, 0, "bias_exp", 12), ["bias_exp = 12", "[0, 7]"]),
    (("header_value", 0, 0, "num_steps", 0), ["num_steps = 0", "[1,"]),
    (("layer_value", 0, 0, "vth", "100"), ["vth", "'100'"]),
    (("drop_header_key", 0, 0, "layers", None), ["lacks 'layers'"]),
])
def test_messages_name_layer_field_value_and_range(tmp_path: Path, edit, words) -> None:
    path = tmp_path / "plan.npz"
    valid_plans()[0].save(path)
    apply(path, edit)
    with pytest.raises(PlanError) as info:
        DeploymentPlan.load(path)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_cli_refuses_a_bad_plan_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "plan.npz"
    valid_plans()[0].save(path)
    apply(path, ("weights", 0, 0, None, 511))
    r = subprocess.run([sys.executable, "-m", "neurodeploy", "simulate", "--plan", str(path),
                        "--data", "digits"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "511" in lines[0], r.stderr


@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="Lava environment (.venv-lava) not found")
def test_lava_environment_refuses_the_same_violations(tmp_path: Path) -> None:
    """The Lava side (Python 3.10, numpy < 2, no torch) runs the same validation."""
    from neurodeploy.sims.lava_env import find_lava_python

    edits = [("weights", 0, 0, None, 300), ("layer_value", 0, 0, "weight_exp", 9),
             ("layer_value", 0, 1, "scale", float("inf")), ("bias", 1, 0, None, 2**16),
             ("header_value", 0, 0, "num_steps", -1), ("drop_header_key", 0, 0, "layers", None)]
    paths = []
    for k, e in enumerate(edits):
        p = tmp_path / f"bad{k}.npz"
        valid_plans()[e[1]].save(p)
        apply(p, e)
        paths.append(str(p))
    good = tmp_path / "good.npz"
    valid_plans()[1].save(good)
    code = ("import sys\nfrom neurodeploy.exporters.plan import DeploymentPlan, PlanError\n"
            "DeploymentPlan.load(sys.argv[1])\n"
            "for p in sys.argv[2:]:\n"
            "    try:\n        DeploymentPlan.load(p)\n    except PlanError as e:\n"
            "        print('refused', str(e).split(': ', 1)[1][:60])\n"
            "    else:\n        print('ACCEPTED', p)\n")
    r = subprocess.run([find_lava_python(), "-c", code, str(good), *paths], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == len(edits) and all(ln.startswith("refused") for ln in out), r.stdout

