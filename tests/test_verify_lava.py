"""Counterexamples of the exact verifier replayed on the real Lava runner (no mock): Lava's
decision equals the emulator's, recorded per example; ``--lava`` without Lava is exit 4."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from neurodeploy.cli import main
from neurodeploy.sims.emulator import random_fc_plan
from neurodeploy.sims.lava_env import lava_available
from neurodeploy.verify.lava_replay import LavaReplayError, check_replay

needs_lava = pytest.mark.skipif(not lava_available(), reason="Lava environment not found")


def _plan(tmp_path):
    """A small dense plan 64-12-10 (T = 4) on which ε = 0.1 breaks most digits examples and
    some survive (a bias on the first example's class)."""
    from neurodeploy.data.core import load_dataset

    rng = np.random.default_rng(7)
    plan = random_fc_plan(rng, (64, 12, 10), num_steps=4, weight_scale=60.0, vth=60, bias_max=0,
                          bias_exp=7)
    y0 = int(load_dataset("digits").test.y[0])
    bias = np.zeros(10, np.int32)
    bias[y0] = 4000
    out = dataclasses.replace(plan.layers[1], bias_mant=bias)
    plan = dataclasses.replace(plan, layers=(plan.layers[0], out))
    path = tmp_path / "plan.npz"
    plan.save(path)
    return plan, path


@pytest.mark.lava
@needs_lava
def test_counterexamples_replay_on_lava(tmp_path, capsys) -> None:
    plan, path = _plan(tmp_path)
    out = tmp_path / "v.json"
    rc = main(["verify", "--plan", str(path), "--data", "digits", "--eps", "0.1",
               "--samples", "6", "--timeout", "20", "--lava", "--out", str(out), "-q"])
    assert rc == 0
    rec = json.loads(out.read_text())
    lava = rec["lava_replay"]
    broken = [e for e in rec["examples"] if e["status"] == "non_robust"]
    assert lava["run"] and lava["replayed"] == len(broken) >= 2
    assert lava["agree"] == lava["replayed"] and lava["disagree"] == []
    assert lava["output_spike_mismatches"] == 0  # the emulator is bit-exact with Lava
    for e in rec["examples"]:
        assert e["lava_replayed"] is (e["status"] == "non_robust")
        if e["lava_replayed"]:  # Lava decides the counterexample as the emulator did
            assert e["lava_predicted"] == e["predicted"] != e["label"]
    assert "Lava replay of counterexamples" in capsys.readouterr().out


def test_lava_flag_without_lava_is_exit_4(tmp_path, monkeypatch, capsys) -> None:
    _, path = _plan(tmp_path)
    monkeypatch.setenv("NEURODEPLOY_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    from neurodeploy.sims import lava_env

    if lava_env.lava_missing_reason() is None:
        pytest.skip("cannot hide the Lava environment from this process")
    out = tmp_path / "v.json"
    rc = main(["verify", "--plan", str(path), "--eps", "0.1", "--samples", "2", "--lava",
               "--out", str(out)])
    assert rc == 4 and not out.exists()
    assert capsys.readouterr().err.strip().startswith("error:")
    # --no-lava: no replay, recorded as such
    rc = main(["verify", "--plan", str(path), "--eps", "0.1", "--samples", "2", "--no-lava",
               "--out", str(out), "-q"])
    rec = json.loads(out.read_text())
    assert rc == 0 and rec["lava_replay"] == {"run": False, "why": "--no-lava"}
    assert all(e["lava_replayed"] is False for e in rec["examples"])


def test_a_disagreement_is_an_error() -> None:
    check_replay({"replayed": 3, "agree": 3, "disagree": []})
    with pytest.raises(LavaReplayError, match="2 of 3") as exc:
        check_replay({"replayed": 3, "agree": 1, "disagree": [4, 9]})
    assert exc.value.exit_code == 1


@pytest.mark.long  # ~20 s: the audit's Lava stage and the replay, two Lava runs
@pytest.mark.lava
@needs_lava
def test_audit_exact_counterexamples_replay_on_lava(tmp_path) -> None:
    """``audit --exact`` with Lava: the deployed side's counterexamples (every ε) run through
    Lava in one run and are decided as on the emulator, recorded per example."""
    import torch

    from neurodeploy.audit.run import AuditConfig, run_audit
    from neurodeploy.data.core import load_digits_split
    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC12-FC10", (1, 8, 8), num_steps=3)).eval()
    test = load_digits_split().test
    cfg = AuditConfig(eps=(0.1,), attacks=("fgsm",), threat_models=("known",), samples=6,
                      lava_samples=2, certify=False, masking_checks=False, exact=True,
                      exact_timeout=5.0)
    report = run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "a", quiet=True)
    lava = report.exact["lava_replay"]
    dep = next(r for r in report.exact["rows"] if r["side"] == "deployed")
    broken = [r for r in dep["examples"] if r["status"] == "non_robust"]
    assert lava["run"] and lava["replayed"] == len(broken) >= 1
    assert lava["agree"] == lava["replayed"] and lava["output_spike_mismatches"] == 0
    for r in dep["examples"]:
        assert r["lava_replayed"] is (r["status"] == "non_robust")
        if r["lava_replayed"]:
            assert r["lava_predicted"] == r["predicted"]
    assert any("counterexamples on Lava" in v for v in report.verdicts)
