"""The training loop: BPTT through the unrolled SNN with a surrogate gradient.

One loop for every defense. Per batch the defense returns the loss (plain cross-entropy for
``none``); the trainer owns everything else::

    for epoch e, batch b (shuffled by a seeded generator):
        ctx  = BatchContext(classifier, x, y, epoch=e, progress=(e + b/nb) / epochs)
        loss = defense.loss(ctx)                       # BPTT through T steps
        loss.backward(); clip ‖∇‖₂ ≤ grad_clip; optimizer.step()
        defense.after_step(classifier)
    lr(e) = lr · factor(e)                             # none | step | cosine, per epoch

Outputs in ``out_dir`` (all written atomically):

- ``metrics.json``  per-epoch metrics (train loss/acc, test acc, lr, seconds, and the mean of
  every number the defense reports), plus the train config and data description;
- ``last.pt``       full training state for ``resume=True``: model, optimizer, scheduler, the
  shuffle / encoder / global RNG states, history and best accuracy / epoch;
- ``best.pt``       the model with the highest test accuracy so far, and ``model.pt`` the final
  model — both :func:`~neurodeploy.models.save_checkpoint` records with the model config,
  library versions and ``extra`` = train config, defense ``checkpoint_extra()``, epoch,
  accuracy and data description.

Resuming restores every piece of state, so an interrupted run finishes with exactly the same
weights as an uninterrupted one with the same seed (tested).

``last.pt`` is the commit record of an epoch: it is written last, after ``best.pt``,
``model.pt`` and ``metrics.json``. A kill before it re-runs the epoch, which rewrites those
files with the same content; a kill after it finds them all written. (Writing ``metrics.json``
after ``last.pt`` left, after a kill between the two in the final epoch, the previous epoch's
metrics in place for good: the resumed run had no epoch left to run.) Resuming a finished run
rewrites ``metrics.json`` from ``last.pt``, which also heals folders left that way. The caller must build the
classifier the same way both times (same seed), because :meth:`Defense.prepare` is called on
the freshly built model before the saved state is loaded.

There is no separate validation split: ``best.pt`` is selected on the test split (as in
certify_snn); report ``final_test_acc`` (``model.pt``) as the unbiased figure.

Data parallel: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) the same loop runs
one replica per process — each rank takes ``batch[rank::N]`` of every global batch and the
gradients are all-reduced to the global-batch mean before clipping and the step; rank 0
evaluates and writes the files (see :mod:`neurodeploy.scale.ddp`). Every defense works
unchanged, certified training included.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from neurodeploy.data.core import Dataset, DatasetSplit
from neurodeploy.errors import CheckpointError, ConfigError, NeurodeployError
from neurodeploy.evaluation import evaluate
from neurodeploy.models import atomic_torch_save, library_versions, save_checkpoint
from neurodeploy.runtime import crash_point, progress_disabled, resolve_device
from neurodeploy.scale.ddp import Replicas
from neurodeploy.training.defense import BatchContext, Defense
from neurodeploy.training.metrics import write_json_atomic

STATE_FORMAT = "neurodeploy-train-state"
STATE_VERSION = 1


class TrainingError(NeurodeployError):
    """Training diverged (NaN/inf loss) or cannot continue."""


# ----------------------------------------------------------------------------- config

OPTIMIZERS = {
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
}


def _factor_none(epoch: int, c: TrainConfig) -> float:
    return 1.0


def _factor_step(epoch: int, c: TrainConfig) -> float:
    return c.gamma ** (epoch // c.step_size)


def _factor_cosine(epoch: int, c: TrainConfig) -> float:
    return c.min_lr_factor + (1 - c.min_lr_factor) * 0.5 * (
        1 + math.cos(math.pi * epoch / c.epochs)
    )


# lr(e) = lr · factor(e, config), applied at the start of epoch e (0-based).
SCHEDULES = {"none": _factor_none, "step": _factor_step, "cosine": _factor_cosine}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (saved in every checkpoint).

    Attributes
    ----------
    epochs, batch_size : passes over the training set; samples per optimizer step.
    optimizer : ``adam`` or ``sgd`` (with ``momentum``); ``weight_decay`` for both.
    lr : base learning rate. ``schedule``: ``none``; ``step`` (×``gamma`` every ``step_size``
        epochs); ``cosine`` (``lr·[m + (1−m)·½(1 + cos(π e / epochs))]``, m = ``min_lr_factor``).
    grad_clip : max global ℓ2 norm of the gradient, or None.
    seed : seeds shuffling, the encoder/neuron noise during training and evaluation draws.
    device : ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    eval_every : evaluate on the test split every N epochs (and always after the last one).
    eval_batch_size : batch size of those evaluations.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    step_size: int = 30
    gamma: float = 0.1
    min_lr_factor: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of {sorted(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; choose one of {sorted(SCHEDULES)}"
            )
        for name in ("epochs", "batch_size", "step_size", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.momentum < 0 or not (0 < self.gamma <= 1):
            raise ConfigError("train: weight_decay and momentum must be >= 0 and gamma in (0, 1]")
        if not (0 <= self.min_lr_factor <= 1):
            raise ConfigError(f"train.min_lr_factor must be in [0, 1], got {self.min_lr_factor}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip must be > 0 or None, got {self.grad_clip}")

    def lr_factor(self, epoch: int) -> float:
        return SCHEDULES[self.schedule](epoch, self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown train setting(s) {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class TrainResult:
    """What a run produced; ``history`` is the list of per-epoch metric dicts."""

    history: list[dict[str, Any]]
    final_test_acc: float | None
    best_test_acc: float | None
    best_epoch: int | None
    out_dir: Path | None
    seconds: float
    resumed_from_epoch: int = 0
    files: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _rng_states(shuffle: torch.Generator, classifier: Any) -> dict[str, Any]:
    states: dict[str, Any] = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
    if hasattr(classifier, "generator"):
        states["classifier"] = classifier.generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any], shuffle: torch.Generator, classifier: Any) -> None:
    shuffle.set_state(states["shuffle"])
    torch.set_rng_state(states["torch"])
    if "classifier" in states and hasattr(classifier, "generator"):
        classifier.generator.set_state(states["classifier"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _summarise(sums: dict[str, float], n: int) -> dict[str, float]:
    out = {}
    for k, v in sums.items():
        out["train_loss" if k == "loss" else k] = v / max(n, 1)
    return out


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Resuming may extend ``epochs`` or change ``device``/``eval_every``; nothing else."""
    free = {"epochs", "device", "eval_every", "eval_batch_size"}
    if cfg.schedule == "cosine":
        free.discard("epochs")  # the cosine schedule depends on the total
    diff = sorted(k for k, v in cfg.to_dict().items() if k not in free and saved.get(k) != v)
    if diff:
        raise ConfigError(
            f"{path}: cannot resume with a different train config ({', '.join(diff)} changed)"
        )


# ----------------------------------------------------------------------------- the loop


def train(
    classifier: Any,
    split: DatasetSplit,
    cfg: TrainConfig,
    defense: Defense | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``classifier`` (an :class:`~neurodeploy.classifier.SNNClassifier`) on
    ``split.train``, evaluating on ``split.test``; see the module docstring.

    ``extra`` is merged into the ``extra`` of the saved model checkpoints (e.g. the data source
    so that ``neurodeploy evaluate`` can find it). Returns a :class:`TrainResult`.
    """
    defense = defense or Defense()
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ConfigError("resume needs an output folder")
    device = resolve_device(cfg.device)
    replicas = Replicas.from_env(device)  # world 1 unless launched by torchrun
    try:
        return _train(classifier, split, cfg, defense, out, resume, quiet, extra, device,
                      replicas)
    finally:
        replicas.close()


@dataclass
class _Run:
    """What the stages of one run share: its inputs, and the state that ``last.pt`` saves and
    resuming restores (optimizer, scheduler, shuffle stream, history, best accuracy / epoch)."""

    classifier: Any
    model: Any
    split: DatasetSplit
    cfg: TrainConfig
    defense: Defense
    out: Path | None
    device: torch.device
    replicas: Replicas
    shuffle: torch.Generator
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    disable: bool  # no progress bar / per-epoch line (quiet, or not rank 0)
    ckpt_extra: dict[str, Any]  # the ``extra`` common to every saved model checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float | None = None
    best_epoch: int | None = None
    start_epoch: int = 0
    seconds_before: float = 0.0


def _train(
    classifier: Any,
    split: DatasetSplit,
    cfg: TrainConfig,
    defense: Defense,
    out: Path | None,
    resume: bool,
    quiet: bool,
    extra: dict[str, Any] | None,
    device: torch.device,
    replicas: Replicas,
) -> TrainResult:
    run = _setup(classifier, split, cfg, defense, out, quiet, extra, device, replicas)
    if resume and out is not None and (out / "last.pt").is_file():
        _resume(run, out / "last.pt")

    t_start = time.perf_counter()
    for epoch in range(run.start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        row = _train_epoch(run, epoch)
        test_acc, is_best = _evaluate_epoch(run, epoch, row, t_epoch)
        rng_ranks = replicas.gather_objects(_rng_states(run.shuffle, classifier))  # collective
        if out is not None and replicas.is_main:
            _save_epoch(run, out, epoch, test_acc, is_best, rng_ranks, t_start)
        replicas.barrier()  # no rank runs ahead of rank 0's files

    if out is not None and replicas.is_main and run.history and run.start_epoch >= cfg.epochs:
        # resumed a finished run: its metrics.json is derived from last.pt again (idempotent)
        _write_metrics(out / "metrics.json", cfg, split, defense, run.history, run.best_acc,
                       run.best_epoch, run.seconds_before)
    return _result(run, t_start)


def _check_data(train_set: Dataset, model: Any) -> None:
    if len(train_set) == 0:
        raise ConfigError(f"training set {train_set.name} is empty")
    model_shape = tuple(getattr(getattr(model, "config", None), "input_shape", ()) or ())
    if model_shape and tuple(train_set.input_shape) != model_shape:
        raise ConfigError(
            f"model expects inputs of shape {model_shape}, data {train_set.name} has "
            f"{tuple(train_set.input_shape)}"
        )


def _setup(
    classifier: Any,
    split: DatasetSplit,
    cfg: TrainConfig,
    defense: Defense,
    out: Path | None,
    quiet: bool,
    extra: dict[str, Any] | None,
    device: torch.device,
    replicas: Replicas,
) -> _Run:
    """Device, data checks, seeding, ``defense.prepare``, optimizer and scheduler: a fresh run."""
    device = replicas.device(device)
    model = classifier.model if hasattr(classifier, "model") else classifier
    classifier.to(device)
    _check_data(split.train, model)

    # Fresh seeded state: global RNG, encoder stream, shuffling.
    torch.manual_seed(cfg.seed)
    if hasattr(classifier, "reseed"):
        classifier.reseed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    defense.prepare(classifier, split.train.x, split.train.y)
    if replicas.active:
        if cfg.batch_size < replicas.world:
            raise ConfigError(f"train.batch_size {cfg.batch_size} is smaller than the "
                              f"{replicas.world} data-parallel processes")
        replicas.broadcast_module(model)  # identical start (same seed) made explicit
        torch.manual_seed(replicas.rank_seed(cfg.seed))  # per-rank noise / encoder streams
        if hasattr(classifier, "reseed"):
            classifier.reseed(replicas.rank_seed(cfg.seed))

    opt = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cfg.lr_factor(e))
    return _Run(
        classifier, model, split, cfg, defense, out, device, replicas, shuffle, opt, sched,
        disable=progress_disabled(quiet) or not replicas.is_main,
        ckpt_extra={"train_config": cfg.to_dict(), "data": split.description, **(extra or {})},
    )


def _resume(run: _Run, path: Path) -> None:
    """Restore the state saved in ``last.pt`` (``path``) into ``run``."""
    state = _load_state(path)
    _check_resume_config(state["train_config"], run.cfg, path)
    try:
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not match this model ({exc})") from exc
    replicas = run.replicas
    saved_world = int(state.get("world_size", 1))
    if saved_world != replicas.world:
        raise ConfigError(f"{path}: written by {saved_world} data-parallel "
                          f"process(es); resume with the same number ({replicas.world} now)")
    _set_rng_states(state["rng_ranks"][replicas.rank] if replicas.active else state["rng"],
                    run.shuffle, run.classifier)
    run.history = list(state["history"])
    run.best_acc, run.best_epoch = state["best_acc"], state["best_epoch"]
    run.start_epoch = int(state["epoch"])
    run.seconds_before = float(state.get("seconds", 0.0))


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One pass over the shuffled training set, then the scheduler step; returns the epoch's
    row so far: epoch, lr and the mean of every number the defense reported."""
    cfg, replicas = run.cfg, run.replicas
    run.model.train()
    lr = run.opt.param_groups[0]["lr"]
    n = len(run.split.train)
    nb = math.ceil(n / cfg.batch_size)
    perm = torch.randperm(n, generator=run.shuffle)
    sums: dict[str, float] = {}
    bar = tqdm(range(nb), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=run.disable)
    for b in bar:
        idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        n_global = int(idx.numel())
        if n_global < replicas.world:  # a tail batch too small to split: skipped by all
            continue
        if b == nb // 2:
            crash_point("train.mid-epoch", epoch + 1)
        loss, metrics = _train_step(run, epoch, b, nb, replicas.local_batch(idx), n_global)
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if not run.disable:
            bar.set_postfix(loss=f"{metrics.get('loss', loss.item()):.3f}")
    run.sched.step()
    return {"epoch": epoch + 1, "lr": lr, **_summarise(replicas.mean_of(sums), nb)}


def _train_step(
    run: _Run, epoch: int, b: int, nb: int, idx: torch.Tensor, n_global: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Batch ``b`` of ``nb`` (this rank's ``idx`` of ``n_global`` samples): the defense's loss,
    backward, gradient all-reduce and clipping, the optimizer step and ``after_step``."""
    model, cfg, replicas = run.model, run.cfg, run.replicas
    x = run.split.train.take(idx).to(run.device, non_blocking=True)
    y = run.split.train.y[idx].to(run.device, non_blocking=True)
    ctx = BatchContext(
        run.classifier,
        x,
        y,
        epoch=epoch,
        progress=(epoch + b / nb) / cfg.epochs,
        generator=getattr(run.classifier, "generator", None),
    )
    loss, metrics = run.defense.loss(ctx)
    if not replicas.all_finite(loss.detach()):
        raise TrainingError(
            f"loss became {loss.item()} at epoch {epoch + 1}, batch {b + 1} "
            f"(lower the learning rate or add grad_clip)"
        )
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    replicas.average_gradients(list(model.parameters()), idx.numel() / n_global)
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    run.opt.step()
    run.defense.after_step(run.classifier)
    return loss, metrics


def _evaluate_epoch(
    run: _Run, epoch: int, row: dict[str, Any], t_epoch: float
) -> tuple[float | None, bool]:
    """Test accuracy (when due), the completed ``row`` appended to the history, the best
    accuracy updated and the epoch's line shown; returns the accuracy and whether it is best."""
    cfg, replicas, test_set = run.cfg, run.replicas, run.split.test
    last = epoch + 1 == cfg.epochs
    test_acc = None
    if len(test_set) and ((epoch + 1) % cfg.eval_every == 0 or last) and replicas.is_main:
        # A seed per epoch, independent of the training streams (evaluate restores them).
        res = evaluate(run.classifier, test_set, cfg.eval_batch_size, cfg.seed + 1000 + epoch)
        test_acc = res.accuracy
    crash_point("train.after-evaluate", epoch + 1)
    if replicas.active:
        test_acc = replicas.broadcast_object(test_acc)
        replicas.check_in_sync(run.model)
        row["world_size"] = replicas.world
    row["test_acc"] = test_acc
    row["seconds"] = time.perf_counter() - t_epoch
    run.history.append(row)
    is_best = test_acc is not None and (run.best_acc is None or test_acc > run.best_acc)
    if is_best:
        run.best_acc, run.best_epoch = test_acc, epoch + 1
    if not run.disable:
        shown = "n/a" if test_acc is None else f"{100 * test_acc:.2f} %"
        tqdm.write(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {row.get('train_loss', float('nan')):.4f}"
            f"  test acc {shown}  ({row['seconds']:.1f} s)"
        )
    return test_acc, is_best


def _save_epoch(
    run: _Run,
    out: Path,
    epoch: int,
    test_acc: float | None,
    is_best: bool,
    rng_ranks: list[dict[str, Any]],
    t_start: float,
) -> None:
    """Rank 0's files for this epoch: ``best.pt`` / ``model.pt`` when due, ``metrics.json``,
    and ``last.pt`` (with every rank's RNG states ``rng_ranks``) as the commit, in ``out``."""
    cfg, model = run.cfg, run.model
    ck_extra = {
        **run.ckpt_extra,
        "defense": run.defense.checkpoint_extra(),
        "epoch": epoch + 1,
        "test_acc": test_acc,
    }
    # Every file derived from this epoch first, the training state (the commit) last.
    if is_best:
        save_checkpoint(out / "best.pt", model, ck_extra)
        crash_point("train.after-best", epoch + 1)
    if epoch + 1 == cfg.epochs:
        save_checkpoint(out / "model.pt", model, ck_extra)
        crash_point("train.after-model", epoch + 1)
    elapsed = run.seconds_before + time.perf_counter() - t_start
    _write_metrics(out / "metrics.json", cfg, run.split, run.defense, run.history, run.best_acc,
                   run.best_epoch, elapsed)
    crash_point("train.after-metrics", epoch + 1)
    atomic_torch_save(
        {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "world_size": run.replicas.world,
            "history": run.history,
            "best_acc": run.best_acc,
            "best_epoch": run.best_epoch,
            "train_config": cfg.to_dict(),
            "defense": run.defense.checkpoint_extra(),
            "versions": library_versions(),
            "seconds": elapsed,
        },
        out / "last.pt",
    )
    crash_point("train.after-state", epoch + 1)


def _result(run: _Run, t_start: float) -> TrainResult:
    seconds = run.seconds_before + time.perf_counter() - t_start
    final = run.history[-1]["test_acc"] if run.history else None
    out = run.out
    files = {}
    if out is not None:
        files = {
            k: str(out / f)
            for k, f in (
                ("model", "model.pt"),
                ("best", "best.pt"),
                ("last", "last.pt"),
                ("metrics", "metrics.json"),
            )
            if (out / f).exists()
        }
    return TrainResult(run.history, final, run.best_acc, run.best_epoch, out, seconds,
                       run.start_epoch, files)


def _write_metrics(
    path: Path,
    cfg: TrainConfig,
    split: DatasetSplit,
    defense: Defense,
    history: list[dict[str, Any]],
    best_acc: float | None,
    best_epoch: int | None,
    seconds: float,
) -> None:
    write_json_atomic(
        path,
        {
            "train_config": cfg.to_dict(),
            "data": split.description,
            "defense": defense.checkpoint_extra(),
            "epochs": history,
            "best_test_acc": best_acc,
            "best_epoch": best_epoch,
            "seconds": seconds,
            "versions": library_versions(),
        },
    )


def _load_state(path: Path) -> dict[str, Any]:
    from neurodeploy.atomicio import check_torch_file
    from neurodeploy.safeload import load_torch

    try:
        check_torch_file(path)  # every zip member's CRC-32: a flipped bit is an error
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read for --resume ({exc})") from exc
    state = load_torch(path, "training state (--resume)", CheckpointError)  # data only
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a neurodeploy training state")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: unsupported training-state version {state.get('version')}")
    return state
