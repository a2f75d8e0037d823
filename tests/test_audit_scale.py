"""The audit sharded (neurodeploy.audit.sharding): the same report from a serial loop over the
shards and from 2 local Ray workers, shard checkpoints and resume, sharding in the report."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit.run import AuditConfig, audit_shards, run_audit
from neurodeploy.cli import main
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError
from neurodeploy.models import save_checkpoint
from neurodeploy.scale.ray_pool import ray_available


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    clf = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=4,
                           readout="rate")
    return clf.model.eval(), load_digits_split().test


def _cfg(**kw):
    base = dict(eps=(0.1,), attacks=("fgsm", "pgd"), attack_steps=3, eot=1, draws=2,
                samples=20, lava_samples=0, seed=1, certify=False, masking_checks=False,
                shard_size=8)
    base.update(kw)
    return AuditConfig(**base)


def _numbers(path):
    """The report's numbers: rows, comparisons and engine records without wall times."""
    d = json.loads(path.read_text())
    rec = d["robustness"]
    for recs in rec.values():
        for r in recs:
            r.pop("seconds", None)
    return d["accuracy"], d["comparisons"], rec


def test_shard_options_validated_and_defaulted():
    cfg, shards = audit_shards(AuditConfig(), None, None)
    assert shards is None and cfg.shard_size is None
    cfg, shards = audit_shards(AuditConfig(), 2, None)
    assert cfg.shard_size == 100 and shards.workers == 2 and shards.parallel
    cfg, shards = audit_shards(AuditConfig(shard_size=7), None, None)
    assert shards.shard_size == 7 and not shards.parallel
    with pytest.raises(ConfigError, match="not both"):
        audit_shards(AuditConfig(), 2, "auto")
    for bad in (0, -3, True):
        with pytest.raises(ConfigError, match="shard_size"):
            AuditConfig(shard_size=bad)


def test_killed_sharded_audit_resumes_without_redoing_shards(digits_model, tmp_path,
                                                              monkeypatch):
    import neurodeploy.scale.robustness as sr

    model, test = digits_model
    cfg = _cfg(threat_models=("known", "unknown"))
    whole = run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "whole", quiet=True)
    assert whole.meta["sharding"]["shard_size"] == 8
    assert whole.meta["sharding"]["workers"] is None

    real = sr._robustness_task
    calls: list[tuple[int, ...]] = []

    class Killed(Exception):
        pass

    kill = {"at": 3}  # 20 samples / 8 = 3 shards per evaluation: the 4th call is deployed/known

    def flaky(shard, p):
        calls.append(shard.indices)
        if len(calls) == kill["at"] + 1:
            raise Killed
        return real(shard, p)

    monkeypatch.setattr(sr, "_robustness_task", flaky)
    with pytest.raises(Killed):
        run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "cut", quiet=True)
    (state,) = (tmp_path / "cut" / "state").iterdir()
    assert len(list((state / "float_known.shards").glob("shard-*.pt"))) == 3
    assert not (state / "deployed_known.shards").exists() or not list(
        (state / "deployed_known.shards").glob("shard-*.pt"))
    calls.clear()
    kill["at"] = -1
    run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "cut", quiet=True)
    # deployed/known's 3 shards; float/known reused. The unknown draw (select-then-evaluate,
    # neurodeploy.audit.unknown_draw) runs in the driver, resumable from its selection file
    assert len(calls) == 3
    assert (state / "float_unknown_select.pt").is_file()
    assert _numbers(tmp_path / "cut" / "audit.json") == _numbers(tmp_path / "whole" / "audit.json")
    d = json.loads((tmp_path / "cut" / "audit.json").read_text())
    assert d["meta"]["sharding"]["engine"] == "serial loop over the same shards"
    assert d["meta"]["config"]["shard_size"] == 8
    flags = [r["accuracy"] for r in d["accuracy"] if r["eps"] > 0]
    assert any(0 < f < 1 for f in flags)  # informative: some points broken, some not


def test_workers_without_ray_exit_2_with_install_hint(digits_model, tmp_path, monkeypatch,
                                                      capsys):
    import neurodeploy.scale.cli as scli

    monkeypatch.setattr(scli, "ray_available", lambda: False)
    monkeypatch.setattr("neurodeploy.scale.ray_pool.ray_available", lambda: False)
    model, _ = digits_model
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    rc = main(["audit", "--model", str(ck), "--workers", "2", "--out", str(tmp_path / "a")])
    assert rc == 2
    assert "pip install 'neurodeploy[scale]'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.skipif(not ray_available(), reason="ray not installed (pip install 'neurodeploy[scale]')")
def test_audit_cli_two_ray_workers_equal_serial_shards(digits_model, tmp_path):
    model, _ = digits_model
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    base = ["audit", "--model", str(ck), "--samples", "16", "--eps", "0.1", "--attacks",
            "fgsm,pgd", "--attack-steps", "3", "--threat-models", "known", "--lava-samples", "0",
            "--no-certify", "--no-masking-checks", "--shard-size", "8", "--seed", "1", "-q"]
    assert main([*base, "--out", str(tmp_path / "serial")]) == 0
    assert main([*base, "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    import ray

    assert not ray.is_initialized()  # the command stopped its local instance
    assert _numbers(tmp_path / "ray" / "audit.json") == _numbers(tmp_path / "serial" / "audit.json")
    d = json.loads((tmp_path / "ray" / "audit.json").read_text())
    assert d["meta"]["sharding"]["workers"] == 2 and d["meta"]["sharding"]["engine"] == "ray"
    (state,) = (tmp_path / "ray" / "state").iterdir()
    assert len(list((state / "deployed_known.shards").glob("shard-*.pt"))) == 2


@pytest.mark.slow
@pytest.mark.lava
def test_sharded_lava_replay_one_process_tree_per_shard(digits_model, tmp_path):
    from neurodeploy.sims.lava_env import lava_available

    if not lava_available():
        pytest.skip("Lava environment (.venv-lava) not found")
    model, test = digits_model
    rep = run_audit(model, test.x, test.y, "loihi2",
                    _cfg(samples=6, lava_samples=4, shard_size=3), tmp_path, quiet=True)
    assert rep.replay["replays"] == 8 and rep.replay["agree"] == 8
    assert rep.replay["lava_vs_emulator_spike_mismatches"] == 0
    (state,) = (tmp_path / "state").iterdir()
    assert len(list((state / "lava.shards").glob("shard-*.pt"))) == 3  # 8 replays / 3
