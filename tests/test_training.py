"""The trainer: it learns, it is seeded, it resumes exactly, it drives the Defense interface."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import Dataset, DatasetSplit, load_digits_split
from neurodeploy.data.events import saccade_dataset
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model, load_checkpoint
from neurodeploy.training.defense import BatchContext, Defense
from neurodeploy.training.trainer import TrainConfig, TrainingError, train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared machine


def _split(n_train: int = 400, n_test: int = 200) -> DatasetSplit:
    s = load_digits_split()
    return DatasetSplit(s.train.subset(n_train), s.test.subset(n_test), "digits subset")


def _clf(arch: str = "FC64-FC10", seed: int = 0, **kw) -> SNNClassifier:
    torch.manual_seed(seed)
    return SNNClassifier(build_model(ModelConfig(arch, (1, 8, 8), **kw)), seed=seed)


def test_short_run_learns():
    split = _split(600, 300)
    clf = _clf()
    res = train(clf, split, TrainConfig(epochs=4, batch_size=32, lr=3e-3), quiet=True)
    # chance is 10 %; this run reaches ~90 % — 70 % leaves room for BLAS differences only
    assert res.final_test_acc > 0.7
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]


def test_same_seed_same_weights_different_seed_differs():
    split = _split(128, 32)
    cfg = TrainConfig(epochs=1, batch_size=32)
    a, b, c = _clf(seed=1), _clf(seed=1), _clf(seed=1)
    train(a, split, cfg, quiet=True)
    train(b, split, cfg, quiet=True)
    train(c, split, TrainConfig(epochs=1, batch_size=32, seed=2), quiet=True)
    for (k, va), vb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert any(
        not torch.equal(va, vc)
        for va, vc in zip(a.model.state_dict().values(), c.model.state_dict().values(), strict=True)
    )


class _Crash(Defense):
    """Plain CE that 'crashes' (KeyboardInterrupt) when epoch 3 starts."""

    def loss(self, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return super().loss(ctx)


@pytest.mark.parametrize("how", ["crash-cosine", "extend-step"])
def test_resume_equals_uninterrupted_run(tmp_path, how):
    """3 epochs at once == 2 epochs (crashed in epoch 3, or a 2-epoch run extended) + resume."""
    split = _split(160, 40)
    schedule = how.split("-")[1]
    cfg = TrainConfig(
        epochs=3,
        batch_size=32,
        optimizer="sgd",
        lr=0.05,
        schedule=schedule,
        step_size=1,
        gamma=0.5,
        grad_clip=1.0,
    )
    full = _clf(seed=4)
    res_full = train(full, split, cfg, out_dir=tmp_path / "full", quiet=True)
    out = tmp_path / "resumed"
    if how.startswith("crash"):
        with pytest.raises(KeyboardInterrupt):
            train(_clf(seed=4), split, cfg, defense=_Crash(), out_dir=out, quiet=True)
    else:
        train(_clf(seed=4), split, dataclasses.replace(cfg, epochs=2), out_dir=out, quiet=True)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    again = _clf(seed=4)  # a new process builds the same model with the same seed
    res = train(again, split, cfg, out_dir=out, resume=True, quiet=True)
    assert res.resumed_from_epoch == 2
    for (k, va), vb in zip(
        full.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert [r["test_acc"] for r in res.history] == [r["test_acc"] for r in res_full.history]
    assert [r["lr"] for r in res.history] == [r["lr"] for r in res_full.history]
    assert res.history[2]["lr"] < res.history[0]["lr"]


def test_resume_refuses_a_changed_config(tmp_path):
    split = _split(64, 16)
    train(_clf(), split, TrainConfig(epochs=1, batch_size=32), out_dir=tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="lr"):
        train(
            _clf(),
            split,
            TrainConfig(epochs=2, batch_size=32, lr=0.1),
            out_dir=tmp_path,
            resume=True,
            quiet=True,
        )


def test_lr_schedules():
    step = TrainConfig(epochs=10, schedule="step", step_size=3, gamma=0.5)
    assert [step.lr_factor(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    cos = TrainConfig(epochs=4, schedule="cosine")
    assert cos.lr_factor(0) == 1.0 and cos.lr_factor(4) == pytest.approx(0.0, abs=1e-15)
    assert cos.lr_factor(2) == pytest.approx(0.5, abs=1e-15)


def test_outputs_checkpoints_and_metrics(tmp_path):
    split = _split(96, 32)
    res = train(
        _clf(),
        split,
        TrainConfig(epochs=2, batch_size=32),
        out_dir=tmp_path,
        quiet=True,
        extra={"data_source": "digits"},
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    for row in metrics["epochs"]:
        assert {"train_loss", "train_acc", "test_acc", "lr", "seconds"} <= set(row)
    assert metrics["train_config"]["epochs"] == 2
    model, rec = load_checkpoint(tmp_path / "model.pt")
    assert rec["config"]["arch"] == "FC64-FC10" and "torch" in rec["versions"]
    assert rec["extra"]["train_config"]["batch_size"] == 32
    assert rec["extra"]["defense"] == {"defense": "none"}
    assert rec["extra"]["data_source"] == "digits" and rec["extra"]["epoch"] == 2
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    assert res.files["model"].endswith("model.pt")


class Recording(Defense):
    name = "recording"

    def __init__(self):
        self.prepared = 0
        self.steps = 0
        self.progress: list[float] = []

    def prepare(self, classifier, train_x, train_y):
        self.prepared += 1
        self.n_train = len(train_y)

    def loss(self, ctx: BatchContext):
        self.progress.append(ctx.progress)
        loss, m = super().loss(ctx)
        return loss, {**m, "custom": 2.0 * ctx.epoch}

    def after_step(self, classifier):
        self.steps += 1

    def checkpoint_extra(self):
        return {"defense": self.name, "steps": self.steps}


def test_defense_interface_is_driven(tmp_path):
    split = _split(100, 20)
    d = Recording()
    train(
        _clf(), split, TrainConfig(epochs=2, batch_size=25), defense=d, out_dir=tmp_path, quiet=True
    )
    assert d.prepared == 1 and d.n_train == 100
    assert d.steps == 8  # 4 batches × 2 epochs, one after_step per optimizer step
    assert d.progress == [i / 8 for i in range(8)]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["custom"] for r in metrics["epochs"]] == [0.0, 2.0]
    _, rec = load_checkpoint(tmp_path / "model.pt")
    assert rec["extra"]["defense"] == {"defense": "recording", "steps": 8}


def test_diverging_loss_raises():
    class NaNLoss(Defense):
        def loss(self, ctx):
            loss, m = super().loss(ctx)
            return loss * float("nan"), m

    with pytest.raises(TrainingError, match="epoch 1, batch 1"):
        train(_clf(), _split(64, 16), TrainConfig(epochs=1), defense=NaNLoss(), quiet=True)


def test_config_validation_and_shape_check():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="unknown train setting"):
        TrainConfig.from_dict({"epoch": 3})
    big = DatasetSplit(
        Dataset(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64), "x"),
        Dataset(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64), "y"),
        "",
    )
    with pytest.raises(ConfigError, match=r"\(1, 8, 8\)"):
        train(_clf(), big, TrainConfig(epochs=1), quiet=True)


def test_spike_input_training_runs_and_learns_something():
    """Saccade events from digits, pass-through encoding: the loop works on time-first data."""
    s = load_digits_split()
    tr, te = saccade_dataset(s.train.subset(300), 6), saccade_dataset(s.test.subset(100), 6)
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC64-FC10", tr.input_shape, num_steps=6, encoding="spikes"))
    res = train(
        SNNClassifier(model),
        DatasetSplit(tr, te, "saccades"),
        TrainConfig(epochs=3, batch_size=32, lr=3e-3),
        quiet=True,
    )
    assert res.final_test_acc > 0.3  # chance 10 %
    assert not math.isnan(res.history[-1]["train_loss"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(_clf(), _split(32, 8), TrainConfig(epochs=1, device="cuda"), quiet=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda():
    clf = _clf()
    res = train(clf, _split(128, 32), TrainConfig(epochs=1, device="cuda"), quiet=True)
    assert next(clf.model.parameters()).is_cuda and clf.generator.device.type == "cuda"
    assert res.final_test_acc is not None
