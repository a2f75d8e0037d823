"""``neurodeploy verify --model``: the float model's MILP end to end on a tiny digits checkpoint
(the JSON's statuses, counterexamples replayed in the float model, robust examples spot-checked
on sampled members of the ball) and its exit codes for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.cli import main
from neurodeploy.data.core import load_dataset
from neurodeploy.encoding import host_uniform
from neurodeploy.models import ModelConfig, build_model, save_checkpoint

EPS, N, SEED = 0.05, 8, 3


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC16-FC10", num_steps=4, epochs=2,
                             readout="rate").model.eval()
    path = tmp_path_factory.mktemp("float") / "model.pt"
    save_checkpoint(path, model)
    return model, path


def _classify(model, img: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Float-model classes of images ``[B, P]`` under the known maps ``u`` ``[T, P]``."""
    s = torch.as_tensor((img[None, :, :] > u[:, None, :]).astype(np.float32))
    with torch.no_grad():
        return model.run(s.reshape(s.shape[0], s.shape[1], *model.config.input_shape)
                         ).logits.argmax(1).numpy()


def test_verify_model_end_to_end(ckpt, tmp_path, capsys) -> None:
    model, path = ckpt
    out = tmp_path / "vf.json"
    rc = main(["verify", "--model", str(path), "--data", "digits", "--eps", str(EPS),
               "--samples", str(N), "--timeout", "20", "--seed", str(SEED), "--out", str(out),
               "-q"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["n"] == N and rec["eps"] == EPS and "HiGHS" in rec["solver"]
    assert rec["options"]["model"] == str(path) and rec["options"]["seed"] == SEED
    ex = rec["examples"]
    st = [e["status"] for e in ex]
    assert [e["index"] for e in ex] == list(range(N))
    assert {"robust", "non_robust"} <= set(st) <= {"robust", "non_robust", "unknown"}
    c = rec["summary"]["counts"]
    assert c == {s: st.count(s) for s in ("robust", "non_robust", "unknown")}
    lo, hi = rec["summary"]["robust_accuracy_interval"]
    assert (lo, hi) == (c["robust"] / N, (c["robust"] + c["unknown"]) / N)
    test = load_dataset("digits").test.subset(N)
    x = test.x.reshape(N, -1).numpy()
    u = host_uniform(list(range(N)), SEED, model.config.num_steps, (x.shape[1],)).numpy()
    rng = np.random.default_rng(0)
    for i, e in enumerate(ex):
        assert e["label"] == int(test.y[i])
        if e["status"] == "non_robust":
            img = np.asarray(e.get("counterexample", x[i]), np.float32)
            assert np.abs(img - x[i]).max() <= EPS + 1e-6 and img.min() >= 0 and img.max() <= 1
            # replayed in the float model: misclassified, as the JSON says
            pred = int(_classify(model, img[None], u[:, i])[0])
            assert pred != e["label"] and pred == e["predicted"]
        elif e["status"] == "robust":  # sampled members of the ball never break it
            lo_i, hi_i = np.clip(x[i] - EPS, 0, 1), np.clip(x[i] + EPS, 0, 1)
            imgs = rng.uniform(lo_i, hi_i, size=(200, x.shape[1])).astype(np.float32)
            imgs[:50] = np.where(rng.random((50, x.shape[1])) < 0.5, lo_i, hi_i)  # corners
            assert (_classify(model, imgs, u[:, i]) == e["label"]).all()
    assert "exact robust accuracy" in capsys.readouterr().out


def test_verify_model_bad_input(ckpt, tmp_path, capsys) -> None:
    _, path = ckpt
    out = tmp_path / "vf.json"
    base = ["verify", "--data", "digits", "--samples", "2", "--out", str(out)]
    cases = [
        ["--model", str(tmp_path / "missing.pt"), "--eps", "0.1"],     # no such checkpoint
        ["--model", str(path), "--eps", "1.5"],                        # ε outside [0, 1]
        ["--model", str(path), "--eps", "0.1", "--timeout", "0"],      # timeout not > 0
        ["--model", str(path), "--plan", str(path), "--eps", "0.1"],   # both sides at once
        ["--model", str(path), "--eps", "0.1", "--lava"],              # no Lava for float
        ["--model", str(path), "--eps", "0.1", "--draws", "2"],        # plan-only option
        ["--model", str(path), "--eps", "0.1", "--branch-seconds", "5"],  # plan-only option
    ]
    conv = build_model(ModelConfig("C4k3-FC10", (1, 8, 8), num_steps=2))
    save_checkpoint(tmp_path / "conv.pt", conv)
    cases.append(["--model", str(tmp_path / "conv.pt"), "--eps", "0.1"])  # not encoded
    for extra in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith(("error:", "usage:")), (extra, err)
        assert not out.exists(), extra
