"""The fixed-point format is data: one record in the profile, written into the plan, read by
every interpreter; no chip constant is written anywhere else (a grep over the code)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import DeploymentPlan, PlanError
from neurodeploy.exporters.profiles import LAVA_0_10, FixedPointFormat, load_profile
from neurodeploy.sims.emulator import Emulator, random_fc_plan
from neurodeploy.sims.twin import HardwareTwin

REPO = Path(__file__).resolve().parents[1]

#: The interpreters of a plan: they must read every chip constant from the plan's format.
INTERPRETERS = sorted({
    "sims/emulator.py", "sims/twin.py", "sims/lava_runner.py", "sims/kernel.py",
    "sims/backends.py", "exporters/compiler.py", "exporters/quantize.py",
    "exporters/resources.py", "exporters/plan.py",
    "neurodeploy/training/qat.py", "neurodeploy/audit/run.py", "neurodeploy/audit/thresholds.py",
    "neurodeploy/audit/deployed.py", "neurodeploy/bounds/plan_ibp.py",
    "neurodeploy/bounds/plan_soundness.py", "neurodeploy/efficiency.py", "sims/lava_env.py",
    *(str(p.relative_to(REPO)) for p in (REPO / "sims/lava_procs").rglob("*.py")),
})
#: Numbers that are Loihi/Lava arithmetic constants when they appear in code (not in
#: docstrings or comments): 2^12 decay unity and its max, 8-bit weight bounds, 2^6 as a
#: float, 2^23 / 2^24 state bounds, and 17-bit vth max.
CHIP_NUMBERS = {"4096", "4095", "254", "255", "254.0", "255.0", "64.0", "8388608",
                "16777216", "131071", "8388607"}


def _code_tokens(path: Path) -> list[tokenize.TokenInfo]:
    toks = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    return [t for t in toks if t.type not in (tokenize.COMMENT, tokenize.STRING,
                                              tokenize.NL, tokenize.NEWLINE)]


@pytest.mark.parametrize("rel", INTERPRETERS)
def test_no_chip_constant_outside_the_format_module(rel):
    path = REPO / rel
    if not path.exists():
        pytest.skip(f"{rel} not present")
    toks = _code_tokens(path)
    hits = []
    for i, t in enumerate(toks):
        if t.type == tokenize.NUMBER and t.string in CHIP_NUMBERS:
            hits.append(f"{rel}:{t.start[0]}: {t.line.strip()}")
        # shifts and powers by the format's 6 / 12 / 23 / 24 bits: `<< 6`, `2**23`, `2 ** 24`
        if t.type == tokenize.OP and t.string in ("<<", ">>", "**") and i + 1 < len(toks):
            nxt = toks[i + 1]
            if nxt.type == tokenize.NUMBER and nxt.string in ("6", "12", "17", "23", "24"):
                hits.append(f"{rel}:{t.start[0]}: {t.line.strip()}")
    assert not hits, "chip constants outside exporters/profiles.py:\n" + "\n".join(hits)
    src = path.read_text()
    assert "LoihiFixedPoint" not in src and not re.search(r"\bLOIHI\b", src)


def test_the_grep_sees_a_planted_constant(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""u·4096 in a docstring is fine"""\nx = 1 << 6  # 4096 in a comment\n'
                   'y = z * 4096\n')
    toks = _code_tokens(bad)
    numbers = [t.string for t in toks if t.type == tokenize.NUMBER]
    assert "4096" in numbers and numbers.count("4096") == 1  # code only, not doc/comment
    shifts = [toks[i + 1].string for i, t in enumerate(toks) if t.string == "<<"]
    assert shifts == ["6"]


def test_shipped_loihi2_profile_is_lava_0_10_arithmetic():
    assert load_profile("loihi2").fixed_point == LAVA_0_10
    f1 = load_profile("loihi1").fixed_point
    assert dataclasses.replace(f1, talif_theta_v_bits=16, talif_theta_v_shift_max=15,
                               talif_state_bits=24) == LAVA_0_10
    assert f1.talif_state_bits is None  # no programmable neurons on Loihi 1


def test_format_fields_are_named_and_derived():
    f = LAVA_0_10
    assert (f.decay_unity, f.decay_max, f.state_half, f.state_max) == (4096, 4095, 2**23,
                                                                        2**23 - 1)
    assert f.vth_scaled(3) == 3 * 64 and f.v_per_float(2.0) == 128.0
    assert f.u_factor(0) == 4095 and f.v_factor(0) == 4096 and f.u_factor(4095) == 0
    assert (f.weight_min_mixed, f.weight_max_mixed, f.weight_max_single) == (-256, 254, 255)
    assert FixedPointFormat.from_dict(json.loads(json.dumps(f.to_dict()))) == f


@pytest.mark.parametrize("change, match", [
    ({"u_overflow": "explode"}, "u_overflow"),
    ({"reset": "random"}, "reset"),
    ({"port_bits": 16}, "port_bits"),
])
def test_format_refuses_unknown_rules(change, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(LAVA_0_10, **change)


def test_format_from_dict_names_bad_fields():
    d = LAVA_0_10.to_dict()
    with pytest.raises(ConfigError, match="unknown field"):
        FixedPointFormat.from_dict({**d, "vth_shift": 6})
    d2 = dict(d)
    d2.pop("state_bits")
    with pytest.raises(ConfigError, match="missing field.*state_bits"):
        FixedPointFormat.from_dict(d2)
    with pytest.raises(ConfigError, match="threshold_shift"):
        FixedPointFormat.from_dict({**d, "threshold_shift": "6"})


def test_plan_carries_its_format_through_save_and_load(tmp_path):
    fmt = dataclasses.replace(LAVA_0_10, port_bits=40)
    plan = dataclasses.replace(random_fc_plan(np.random.default_rng(0), (6, 5, 3)),
                               fixed_point=fmt)
    plan.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    assert back.fixed_point == fmt and back.fixed_point != LAVA_0_10


def _rewrite_header(src: Path, dst: Path, edit) -> None:
    with np.load(src, allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    h = json.loads(str(files["header"]))
    edit(h)
    files["header"] = np.array(json.dumps(h))
    np.savez(dst, **files)


def test_version_1_plans_load_with_lava_arithmetic_and_bad_formats_are_named(tmp_path):
    plan = random_fc_plan(np.random.default_rng(1), (4, 3))
    plan.save(tmp_path / "p.npz")

    def v1(h):
        h["version"] = 1
        h.pop("fixed_point")

    _rewrite_header(tmp_path / "p.npz", tmp_path / "v1.npz", v1)
    assert DeploymentPlan.load(tmp_path / "v1.npz").fixed_point == LAVA_0_10
    _rewrite_header(tmp_path / "p.npz", tmp_path / "nofmt.npz", lambda h: h.pop("fixed_point"))
    with pytest.raises(PlanError, match="lacks its fixed_point"):
        DeploymentPlan.load(tmp_path / "nofmt.npz")
    _rewrite_header(tmp_path / "p.npz", tmp_path / "bad.npz",
                    lambda h: h["fixed_point"].update(u_overflow="explode"))
    with pytest.raises(PlanError, match="u_overflow"):
        DeploymentPlan.load(tmp_path / "bad.npz")


def test_interpreters_read_the_plan_format():
    """A plan whose format differs only in the threshold shift changes what the emulator and
    the twin compute, identically; the Lava runner refuses it (Lava's shift is fixed)."""
    from neurodeploy.sims.lava_runner import check_plan_supported

    rng = np.random.default_rng(3)
    plan = random_fc_plan(rng, (12, 10, 4), num_steps=8, weight_scale=60.0, vth=40)
    shifted = dataclasses.replace(plan, fixed_point=dataclasses.replace(
        LAVA_0_10, threshold_shift=4))
    x = torch.as_tensor(rng.random((8, 16, 12)) < 0.5).to(torch.uint8)
    a = Emulator(plan).run(x).layer_spikes
    b = Emulator(shifted).run(x).layer_spikes
    assert any(not torch.equal(p, q) for p, q in zip(a, b, strict=True))
    tw = HardwareTwin(shifted, encoding="spikes").run(x.double()).spikes
    for e, t in zip(b, tw, strict=True):
        assert torch.equal(e.to(torch.float64), t)
    with pytest.raises(PlanError, match="threshold_shift"):
        check_plan_supported(shifted)


def test_compiler_and_qat_share_one_quantizer():
    """QAT's grid is the compiler's: the same mantissas for every sign mode, on torch and numpy."""
    from neurodeploy.training.qat import _OnGrid

    rng = np.random.default_rng(4)
    for w in (rng.normal(0, 1, (5, 7)), np.abs(rng.normal(0, 1, (5, 7))),
              -np.abs(rng.normal(0, 1, (5, 7)))):
        mode = LAVA_0_10.weight_sign_mode(w)
        scale = 254.0 / np.abs(w).max() * 1.3  # beyond the range: clipping is exercised
        q_np = LAVA_0_10.quantize_weights(w, scale, mode)
        q_t = _OnGrid(scale, mode, LAVA_0_10)(torch.as_tensor(w)) * scale
        assert np.array_equal(q_np, np.round(q_t.detach().numpy()))
        lo, hi = LAVA_0_10.weight_range(mode)
        assert q_np.min() >= lo and q_np.max() <= hi
        if mode == "mixed":
            assert not np.any(q_np % 2)
        if mode == "inhibitory":
            assert q_np.max() <= 0 and q_np.min() == -255
