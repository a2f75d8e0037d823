"""Sharded work (neurodeploy.scale): the task plan, per-task seeds, checkpoints and resume,
and identical results from the serial loop and from 2 local Ray workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurodeploy.classifier import SNNClassifier
from neurodeploy.cli import main
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model, save_checkpoint
from neurodeploy.scale import make_shards, run_sharded
from neurodeploy.scale.certify import certify_sharded
from neurodeploy.scale.ray_pool import ray_available


def _trained_digits(steps: int = 4):
    split = load_digits_split()
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC32-FC10", (1, 8, 8), num_steps=steps, readout="rate"))
    clf = SNNClassifier(model, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(len(split.train.y), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(clf(split.train.x[idx]) * 4,
                                                     split.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), split


def test_plan_depends_on_indices_and_size_only():
    a = make_shards(10, 4, grid=[0, 1])
    assert [s.indices for s in a] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)] * 2
    assert [s.grid for s in a] == [0, 0, 0, 1, 1, 1]
    assert [s.number for s in a] == list(range(6))
    # seeds come from the content (grid point, indices), not from the position
    b = make_shards([8, 9], 4, grid=[1])
    assert b[0].seed(7) == a[5].seed(7) and b[0].number != a[5].number
    seeds = {s.seed(7) for s in a}
    assert len(seeds) == 6 and a[0].seed(7) != a[0].seed(8)
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="shard size"):
            make_shards(10, bad)
    with pytest.raises(ConfigError, match="distinct"):
        make_shards([1, 1, 2], 2)


def _task(shard, payload):
    """A task with randomness seeded from the shard; records its calls in a folder."""
    Path(payload["log"], f"{shard.number}-{len(list(Path(payload['log']).iterdir()))}").touch()
    if shard.number in payload.get("fail_at", ()):
        raise RuntimeError("killed")
    g = torch.Generator().manual_seed(shard.seed(payload["seed"]))
    x = payload["x"][list(shard.indices)]
    return {"y": x * torch.rand(x.shape, generator=g), "grid": shard.grid}


def test_resume_skips_finished_shards_and_refuses_another_job(tmp_path):
    x = torch.arange(23, dtype=torch.float32)
    log = tmp_path / "log"
    log.mkdir()
    ref = run_sharded(_task, 23, 5, payload={"x": x, "seed": 3, "log": str(log)}, grid=["a", "b"])
    assert len(ref) == 10 and len(list(log.iterdir())) == 10
    state = tmp_path / "state"
    payload = {"x": x, "seed": 3, "log": str(log), "fail_at": (6,)}
    for f in log.iterdir():
        f.unlink()
    with pytest.raises(RuntimeError, match="killed"):
        run_sharded(_task, 23, 5, payload=payload, grid=["a", "b"], state_dir=state,
                    fingerprint="job")
    assert len(list(state.glob("shard-*.pt"))) == 6  # tasks 0..5 finished and were saved
    for f in log.iterdir():
        f.unlink()
    payload["fail_at"] = ()
    res = run_sharded(_task, 23, 5, payload=payload, grid=["a", "b"], state_dir=state,
                      fingerprint="job")
    assert sorted(int(f.name.split("-")[0]) for f in log.iterdir()) == [6, 7, 8, 9]
    for r, e in zip(res, ref, strict=True):
        assert r["grid"] == e["grid"] and torch.equal(r["y"], e["y"])
    with pytest.raises(ConfigError, match="different job"):
        run_sharded(_task, 23, 5, payload=payload, grid=["a", "b"], state_dir=state,
                    fingerprint="another job")
    with pytest.raises(ConfigError, match="different job"):  # same config, other shard size
        run_sharded(_task, 23, 4, payload=payload, grid=["a", "b"], state_dir=state,
                    fingerprint="job")


def test_certify_cli_shards_checkpoint_and_resume(tmp_path, monkeypatch):
    model, _ = _trained_digits()
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    base = ["certify", "--model", str(ck), "--samples", "30", "--eps", "0.01", "--draws", "2",
            "--method", "ibp", "--shard-size", "8", "-q"]
    out1 = tmp_path / "a.json"
    assert main([*base, "--out", str(out1)]) == 0
    assert not (tmp_path / "a.json.shards").exists()  # removed once the result is written
    # a killed run: the 3rd task fails; finished shards stay, the rerun computes only the rest
    import neurodeploy.scale.certify as sc

    real = sc._certify_task
    calls = []
    kill = {"at": 2}

    def flaky(shard, p):
        calls.append(shard.number)
        if shard.number == kill["at"]:
            raise KeyboardInterrupt
        return real(shard, p)

    monkeypatch.setattr(sc, "_certify_task", flaky)
    out2 = tmp_path / "b.json"
    assert main([*base, "--out", str(out2)]) == 130
    assert len(list((tmp_path / "b.json.shards").glob("shard-*.pt"))) == 2
    calls.clear()
    kill["at"] = None
    assert main([*base, "--out", str(out2)]) == 0
    assert calls == [2, 3, 4, 5, 6, 7]  # 30 samples / 8 = 4 shards × 2 draws, 0 and 1 reused
    a, b = json.loads(out1.read_text()), json.loads(out2.read_text())
    for m in a["methods"]:
        for k in ("verified_error_per_draw", "clean_accuracy"):
            assert a["methods"][m][k] == b["methods"][m][k]
    assert a["sharding"]["shard_size"] == 8 and a["sharding"]["workers"] is None


def test_workers_without_ray_says_how_to_install(monkeypatch, capsys, tmp_path):
    import neurodeploy.scale.cli as scli

    monkeypatch.setattr(scli, "ray_available", lambda: False)
    monkeypatch.setattr("neurodeploy.scale.ray_pool.ray_available", lambda: False)
    model = build_model(ModelConfig("FC8-FC10", (1, 8, 8), num_steps=2, readout="rate"))
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {})
    rc = main(["certify", "--model", str(ck), "--samples", "4", "--eps", "0.01", "--workers", "2"])
    assert rc == 2
    assert "pip install 'neurodeploy[scale]'" in capsys.readouterr().err
    for bad in (["--workers", "0"], ["--shard-size", "0"],
                ["--workers", "2", "--ray-address", "auto"]):
        assert main(["certify", "--model", str(ck), "--samples", "4", "--eps", "0.01", *bad]) == 2


@pytest.mark.skipif(not ray_available(), reason="ray not installed (pip install 'neurodeploy[scale]')")
def test_two_ray_workers_give_results_identical_to_serial(tmp_path):
    """certify and the attack engine, sharded: serial loop vs 2 local Ray workers (one Ray
    instance, started and stopped by ``ray_session`` as the commands do)."""
    import ray

    from neurodeploy.scale.ray_pool import ray_session
    from neurodeploy.scale.robustness import evaluate_robustness_sharded

    model, split = _trained_digits()
    x, y = split.test.x[:40], split.test.y[:40]
    ckw = dict(seed=5, draws=2, batch_size=16, shard_size=12)
    clf = SNNClassifier(model, seed=0)
    attacks = [("fgsm", {}), ("pgd", {"n_iter": 3})]
    akw = dict(seed=1, draws=2, eot_iter=1, shard_size=10)
    eps = [0.05, 0.1]
    cert_serial = certify_sharded(model, x, y, 0.01, None, ("ibp", "crown"), **ckw)
    att_serial = evaluate_robustness_sharded(clf, x[:24], y[:24], attacks, eps, **akw)
    with ray_session(workers=2):
        cert_ray = certify_sharded(model, x, y, 0.01, None, ("ibp", "crown"), workers=2, **ckw)
        att_ray = evaluate_robustness_sharded(clf, x[:24], y[:24], attacks, eps, workers=2,
                                              state_dir=tmp_path / "st", **akw)
    assert not ray.is_initialized()
    for m in ("ibp", "crown"):
        for k in ("verified", "clean_correct", "margin_lb"):
            assert torch.equal(cert_serial.samples[m][k], cert_ray.samples[m][k]), (m, k)
        assert cert_serial.per_method[m]["verified_error"] == cert_ray.per_method[m]["verified_error"]
    assert len(list((tmp_path / "st").glob("shard-*.pt"))) == 3
    for e in eps:
        assert torch.equal(att_serial.robust[e], att_ray.robust[e])
        assert torch.equal(att_serial.adversarial[e], att_ray.adversarial[e])
        assert att_serial.broken_by[e] == att_ray.broken_by[e]
        assert att_serial.cumulative[e] == att_ray.cumulative[e]
    assert att_serial.clean_accuracy == att_ray.clean_accuracy
    # not degenerate: a trained net, informative bounds, attacks that break some points only
    assert min(cert_serial.per_method["ibp"]["clean_accuracy"]) > 0.6
    assert 0.0 < cert_serial.samples["crown"]["verified"].float().mean() < 1.0
    assert cert_serial.samples["crown"]["margin_lb"].unique().numel() > 100
    assert 0 < att_serial.robust_accuracy[0.05][0] < att_serial.clean_accuracy[0]
    assert any(b == "fgsm" for b in att_serial.broken_by[0.1])


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.skipif(not ray_available(), reason="ray not installed (pip install 'neurodeploy[scale]')")
def test_lava_replay_as_separate_tasks_equals_one_run():
    import numpy as np

    from neurodeploy.scale.lava import replay_lava_sharded
    from neurodeploy.sims.emulator import random_fc_plan
    from neurodeploy.sims.lava_env import lava_available, run_lava

    if not lava_available():
        pytest.skip("Lava environment (.venv-lava) not found")
    rng = np.random.default_rng(2)
    plan = random_fc_plan(rng, (12, 10, 6), num_steps=5)
    x = (rng.random((5, 6, 12)) < 0.5).astype(np.uint8)
    one = run_lava(plan, x, record_layers=True)
    par = replay_lava_sharded(plan, x, 2, record_layers=True, workers=2)
    assert par["shards"] == 3
    assert np.array_equal(one.out_spikes, par["out_spikes"])
    for a, b in zip(one.layer_spikes, par["layer_spikes"], strict=True):
        assert np.array_equal(a, b)
    assert one.out_spikes.sum() > 0


def test_attack_cli_shards_checkpoint_and_resume(tmp_path, monkeypatch):
    model, _ = _trained_digits()
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    base = ["attack", "--model", str(ck), "--samples", "24", "--eps", "0.05,0.1",
            "--attacks", "fgsm,pgd", "--set", "pgd.n_iter=3", "--no-checks",
            "--shard-size", "8", "--seed", "2", "-q"]
    out1 = tmp_path / "a.json"
    assert main([*base, "--out", str(out1)]) == 0
    assert not (tmp_path / "a.json.shards-known").exists()  # removed once written
    import neurodeploy.scale.robustness as sr

    real = sr._robustness_task
    calls, kill = [], {"at": 1}

    def flaky(shard, p):
        calls.append(shard.number)
        if shard.number == kill["at"]:
            raise KeyboardInterrupt
        return real(shard, p)

    monkeypatch.setattr(sr, "_robustness_task", flaky)
    out2 = tmp_path / "b.json"
    assert main([*base, "--out", str(out2)]) == 130
    assert len(list((tmp_path / "b.json.shards-known").glob("shard-*.pt"))) == 1
    calls.clear()
    kill["at"] = None
    assert main([*base, "--out", str(out2), "--resume"]) == 0
    assert calls == [1, 2]  # shard 0 was reloaded, not recomputed
    a = json.loads(out1.read_text())["results"][0]
    b = json.loads(out2.read_text())["results"][0]
    assert a["per_eps"] == b["per_eps"] and a["sharding"]["shard_size"] == 8
    flags = [f for e in a["per_eps"] for f in e["robust_flags"][0]]
    assert 0 < sum(flags) < len(flags)  # informative: some points broken, some not


@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason="ray not installed (pip install 'neurodeploy[scale]')")
def test_attack_and_certify_cli_two_workers_equal_serial(tmp_path):
    model, _ = _trained_digits()
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    att = ["attack", "--model", str(ck), "--samples", "24", "--eps", "0.1", "--attacks",
           "fgsm,pgd", "--set", "pgd.n_iter=3", "--no-checks", "--shard-size", "8", "-q"]
    cert = ["certify", "--model", str(ck), "--samples", "30", "--eps", "0.01", "--shard-size",
            "8", "-q"]
    outs = {}
    for tag, extra in (("serial", []), ("ray", ["--workers", "2"])):
        outs[f"att-{tag}"] = tmp_path / f"att-{tag}.json"
        outs[f"cert-{tag}"] = tmp_path / f"cert-{tag}.json"
        assert main([*att, *extra, "--out", str(outs[f"att-{tag}"])]) == 0
        assert main([*cert, *extra, "--out", str(outs[f"cert-{tag}"])]) == 0
    a, b = (json.loads(outs[f"att-{t}"].read_text())["results"][0] for t in ("serial", "ray"))
    assert a["per_eps"] == b["per_eps"] and b["sharding"]["workers"] == 2
    c, d = (json.loads(outs[f"cert-{t}"].read_text()) for t in ("serial", "ray"))
    for m in c["methods"]:
        assert c["methods"][m]["verified_error_per_draw"] == \
            d["methods"][m]["verified_error_per_draw"]
