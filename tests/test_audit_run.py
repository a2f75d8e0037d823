"""The audit end to end on a small trained digits model: host spikes, replay semantics,
backend rows, Lava replay equal to the emulator, report files."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit.run import AuditConfig, host_spikes, run_audit
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError
from neurodeploy.exporters.compiler import compile_model
from neurodeploy.sims.emulator import Emulator
from neurodeploy.sims.lava_env import lava_available


def test_host_spikes_depend_on_example_index_not_batch():
    x = torch.rand(6, 1, 8, 8)
    idx = torch.arange(6)
    full = host_spikes(x, idx, seed=3, num_steps=5)
    part = host_spikes(x[[4, 1]], idx[[4, 1]], seed=3, num_steps=5)
    assert torch.equal(full[:, [4, 1]], part)
    other = host_spikes(x, idx, seed=4, num_steps=5)
    assert not torch.equal(full, other)
    assert set(full.unique().tolist()) <= {0.0, 1.0}


def test_audit_config_rejects_bad_eps():
    with pytest.raises(ConfigError):
        AuditConfig(eps=(0.0,))
    with pytest.raises(ConfigError):
        AuditConfig(eps=(1.5,))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    torch.manual_seed(0)
    clf = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=4,
                           readout="rate")
    model = clf.model.eval()
    test = load_digits_split().test
    cfg = AuditConfig(eps=(0.1,), attacks=("pgd",), attack_steps=4, eot=2, square_queries=15,
                      samples=24, lava_samples=8 if lava_available() else 0, seed=1,
                      certify=True, masking_checks=False)
    out = tmp_path_factory.mktemp("audit")
    report = run_audit(model, test.x, test.y, "loihi2", cfg, out, quiet=True)
    return model, test, cfg, report, out


def test_audit_rows_and_replay_semantics(audited):
    model, test, cfg, report, out = audited
    backends = report.backends()
    assert backends[:2] == ["float", "emulator"]
    # clean row of the emulator = the emulator run on the host spikes, recomputed here
    plan = compile_model(model, profile="loihi2")
    n = cfg.samples
    sp = host_spikes(test.x[:n], torch.arange(n), cfg.seed, model.config.num_steps)
    emu = Emulator(plan).run(sp, record=True)
    acc = float((torch.as_tensor(emu.layer_spikes[-1]).sum(0).argmax(1) == test.y[:n]).float().mean())
    assert report.clean("emulator").accuracy == pytest.approx(acc)
    for b in ("float", "emulator"):
        worst = report.lookup(b, "worst", 0.1).accuracy
        per_attack = [r.accuracy for r in report.accuracy
                      if r.backend == b and r.attack not in ("clean", "worst")]
        assert per_attack, b
        # a point is robust only if every attack's replay failed on it
        assert worst <= min(per_attack) + 1e-12
        assert worst <= report.clean(b).accuracy
    sources = {r.attack for r in report.accuracy if r.backend == "emulator"}
    assert {"float:pgd", "twin:pgd", "emulator:square"} <= sources
    float_sources = {r.attack for r in report.accuracy if r.backend == "float"}
    assert {"float:pgd", "twin:pgd", "float:square"} <= float_sources
    assert "emulator:square" not in float_sources and "float:square" not in sources


def test_audit_lava_replay_matches_emulator(audited):
    _, _, _, report, _ = audited
    if not lava_available():
        pytest.skip("Lava environment (.venv-lava) not found")
    assert report.replay["clean_lava_equals_emulator"] is True
    assert report.replay["lava_vs_emulator_spike_mismatches"] == 0
    for r in report.accuracy:
        if r.backend == "lava":
            assert r.n == 8


def test_audit_report_files(audited):
    _, _, _, report, out = audited
    d = json.loads((out / "audit.json").read_text())
    assert d["format"] == "neurodeploy-audit"
    assert d["meta"]["samples"] == 24 and d["meta"]["seed"] == 1
    assert len(d["layers"]) == 2 and all(0.5 < row["agreement_emulator"] <= 1 for row in d["layers"])
    assert d["layers"][0]["weight_error"] is not None
    assert "verified_error" in d["certified"]
    assert any("ε=0.1" in v for v in report.verdicts)
    assert (out / "audit.html").read_text().count("data:image/png;base64,") >= 3


def test_pipeline_end_to_end_with_resume(tmp_path):
    """train → evaluate → export → simulate → audit into one folder, then a resume skips all."""
    from neurodeploy.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        '[data]\nsource = "digits"\ntrain_limit = 300\ntest_limit = 40\n'
        '[model]\narch = "FC32-FC10"\nnum_steps = 5\n'
        "[train]\nepochs = 2\n[evaluate]\nseeds = [0]\n"
        '[simulate]\nbackends = ["emulator", "lava"]\nlava_samples = 10\n'
        "[audit]\neps = [0.1]\nattacks = [\"fgsm\"]\nattack_steps = 2\neot = 1\n"
        "square_queries = 5\nsamples = 12\nlava_samples = 6\nmasking_checks = false\n"
    )
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(cfg), "--out", str(out), "-q"]) == 0
    state = json.loads((out / "pipeline_state.json").read_text())
    assert list(state["completed"]) == ["train", "evaluate", "export", "simulate", "audit"]
    for rel in ("train/model.pt", "export/model.nir", "export/plan.npz",
                "simulate_emulator.json", "audit/audit.json", "audit/audit.html", "audit/audit.md"):
        assert (out / rel).is_file(), rel
    sim = json.loads((out / "simulate_emulator.json").read_text())
    assert sim["samples"] == 40 and 0 <= sim["accuracy_backend"] <= 1
    if lava_available():
        assert json.loads((out / "simulate_lava.json").read_text())["samples"] == 10
    stamp = (out / "audit" / "audit.json").stat().st_mtime_ns
    assert main(["pipeline", "--config", str(cfg), "--out", str(out), "--resume", "-q"]) == 0
    assert (out / "audit" / "audit.json").stat().st_mtime_ns == stamp


def test_pipeline_rejects_unknown_audit_key(tmp_path):
    from neurodeploy.pipeline import load_config

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[audit]\nepss = [0.1]\n")
    with pytest.raises(ConfigError, match="epss"):
        load_config(cfg)
