"""torch DDP-style data parallel training: 2 CPU processes (gloo) on digits.

Each rank trains its replica on its slice of every global batch; the test checks, from
outside the trainer, that the two replicas end with bit-identical parameters, that only
rank 0 wrote files, that the loss went down and the model learned, and that a run resumed
under the same world size ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, tmp: str, epochs: int, resume: bool,
               tag: str, defense: str, device: str) -> None:
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "NEURODEPLOY_QUIET": "1"})
    torch.set_num_threads(1)
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_digits_split
    from neurodeploy.models import ModelConfig, build_model
    from neurodeploy.training.trainer import TrainConfig, train

    split = load_digits_split()
    split = type(split)(split.train.subset(480), split.test.subset(120), split.description)
    torch.manual_seed(0)
    clf = SNNClassifier(build_model(ModelConfig("FC48-FC10", (1, 8, 8), num_steps=4,
                                                readout="rate")), seed=0)
    defense_obj = None
    if defense == "certified":
        from neurodeploy.training.defense import make_defense

        defense_obj = make_defense("certified", {"cert_eps": 0.02})
    cfg = TrainConfig(epochs=epochs, batch_size=48, lr=5e-3, seed=3, device=device)
    res = train(clf, split, cfg, defense=defense_obj, out_dir=f"{tmp}/{tag}", resume=resume,
                quiet=True)
    torch.save({"state": {k: v.cpu() for k, v in clf.model.state_dict().items()},
                "history": res.history}, f"{tmp}/{tag}-rank{rank}.pt")


def _run(tmp, epochs, tag, resume=False, defense="none", world=2, device="cpu"):
    mp.spawn(_rank_main, args=(world, _free_port(), str(tmp), epochs, resume, tag, defense,
                               device), nprocs=world, join=True)
    return [torch.load(tmp / f"{tag}-rank{r}.pt", weights_only=False) for r in range(world)]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_stay_in_sync_and_learn(tmp_path):
    r0, r1 = _run(tmp_path, 2, "plain")
    assert _same(r0["state"], r1["state"])  # replicas identical after every update
    h = r0["history"]
    drop = ("seconds",)  # per-rank wall time
    assert ([{k: v for k, v in e.items() if k not in drop} for e in h]
            == [{k: v for k, v in e.items() if k not in drop} for e in r1["history"]])
    assert h[1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["test_acc"] > 0.5 and h[-1]["world_size"] == 2
    metrics = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    from neurodeploy.models import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "plain" / "model.pt")
    assert _same(model.state_dict(), r0["state"])


@pytest.mark.slow
@pytest.mark.long
def test_resume_under_the_same_world_size_equals_an_uninterrupted_run(tmp_path):
    r0, _ = _run(tmp_path, 2, "plain")
    _run(tmp_path, 1, "resumed")
    q0, q1 = _run(tmp_path, 2, "resumed", resume=True)
    assert _same(q0["state"], r0["state"]) and _same(q1["state"], r0["state"])


@pytest.mark.slow
def test_certified_training_runs_data_parallel(tmp_path):
    r0, r1 = _run(tmp_path, 1, "cert", defense="certified")
    assert _same(r0["state"], r1["state"])
    assert r0["history"][0]["world_size"] == 2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL)")
def test_nccl_two_gpus_stay_in_sync_and_learn(tmp_path):
    r0, r1 = _run(tmp_path, 2, "nccl", device="cuda")
    assert _same(r0["state"], r1["state"])
    assert r0["history"][1]["train_loss"] < r0["history"][0]["train_loss"]


@pytest.mark.slow
@pytest.mark.long
def test_neurodeploy_train_under_torchrun(tmp_path):
    """The command itself under torchrun: rank 0 writes, metrics say world 2, --resume works
    under the same world size and is refused under another."""
    import subprocess
    import sys

    out = tmp_path / "run"
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(_free_port()), "-m", "neurodeploy", "train", "--data", "digits",
            "--arch", "FC32-FC10", "--train-limit", "256", "--test-limit", "100", "--out",
            str(out), "-q", "--threads", "1"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*base, "--epochs", "1"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    base[base.index("--master_port") + 1] = str(_free_port())
    r = subprocess.run([*base, "--epochs", "2", "--resume"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("test accuracy") == 1, r.stdout  # only rank 0 prints the result
    m = json.loads((out / "metrics.json").read_text())
    assert [e["world_size"] for e in m["epochs"]] == [2, 2]
    single = subprocess.run([sys.executable, "-m", "neurodeploy", "train", "--data", "digits",
                             "--arch", "FC32-FC10", "--train-limit", "256", "--out", str(out),
                             "--epochs", "3", "--resume", "-q"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert single.returncode == 2 and "same number" in single.stderr
