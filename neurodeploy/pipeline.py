"""The train-then-export pipeline: a registry of stages run in order into one output folder.

A config (TOML, read with :mod:`tomllib`) has known sections, checked strictly (an unknown key
raises :class:`~neurodeploy.errors.ConfigError` naming it), and free sections for later stages::

    seed = 0                 # optional top-level keys: seed, device
    [data]     source, train_limit, test_limit, num_steps
    [model]    arch, num_steps, alpha, theta, surrogate, readout, encoding, neuron, bias
               (+ [model.neuron_params]); or a NIR file: nir, producer, reset, dt,
               num_steps, surrogate (nothing trained: neurodeploy.audit.nir_stages)
    [train]    any field of TrainConfig (epochs, batch_size, optimizer, lr, schedule, …)
    [defense]  name (+ [defense.options])
    [evaluate] batch_size, seeds
    [<stage>]  anything: read by the stage of that name (export, simulate, attack, …)

Stages are registered with :func:`register_stage` (``name``, function, ``after`` = names of
stages it needs). Each gets a :class:`StageContext` (config, output folder, the artifacts of
earlier stages, seed, device, quiet) and returns a dict of JSON-able artifacts (paths are stored
relative to the output folder). Finished stages are recorded in ``<out>/pipeline_state.json``
and skipped on ``resume``; the run refuses to resume with a different config.

Built-in stages: ``train`` (writes ``train/``: model.pt, best.pt, last.pt, metrics.json; a
resumed pipeline resumes an interrupted training too) and ``evaluate`` (``evaluate.json``).
Later issues add theirs by listing a module in :data:`STAGE_MODULES` that calls
:func:`register_stage` when imported.

Relative data paths are resolved against the current folder first, then the config's folder.
The config's schema and checks live in :mod:`neurodeploy.pipeline_config`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError
from neurodeploy.pipeline_config import (  # noqa: F401 (re-exported: the pipeline's config API)
    DEFAULT_CONFIG,
    TOP_LEVEL_KEYS,
    backend_names,
    check_value,
    config_hash,
    load_config,
    register_section,
    resolve_source,
    validate_config,
)
from neurodeploy.registry import Registry
from neurodeploy.training.metrics import read_json, write_json_atomic

STATE_FILE = "pipeline_state.json"

# ----------------------------------------------------------------------------- shared setup


def load_data(config: dict[str, Any]):
    """The :class:`~neurodeploy.data.core.DatasetSplit` described by ``config['data']``."""
    from neurodeploy.data.core import DatasetSplit, load_dataset

    data = config.get("data", {})
    model = config.get("model", {})
    source = resolve_source(str(data.get("source", "digits")), config.get("_config_dir"))
    steps = int(data.get("num_steps", model.get("num_steps", 10)))
    split = load_dataset(source, num_steps=steps)
    tl, vl = data.get("train_limit"), data.get("test_limit")
    if tl is not None or vl is not None:
        split = DatasetSplit(
            split.train.subset(tl),
            split.test.subset(vl),
            f"{split.description}; train[:{tl}], test[:{vl}]",
        )
    return split


def model_config_for(config: dict[str, Any], split) -> Any:
    """A :class:`~neurodeploy.models.ModelConfig` from ``config['model']`` for ``split``'s
    input shape (spike datasets default to, and require, ``encoding = "spikes"``)."""
    from neurodeploy.models import ModelConfig

    m = dict(config.get("model", {}))
    m.pop("init_from", None)
    if "arch" not in m:
        raise ConfigError('[model] needs arch (e.g. "FC256-FC10")')
    if split.train.time_first:
        m.setdefault("encoding", "spikes")
        if m["encoding"] != "spikes":
            raise ConfigError(
                f"data {split.train.name} are spikes; encoding must be 'spikes', got "
                f"{m['encoding']!r}"
            )
        steps = split.train.num_steps
        if int(m.get("num_steps", steps)) != steps:
            raise ConfigError(f"model num_steps {m['num_steps']} != {steps} frames of the data")
        m["num_steps"] = steps
    elif m.get("encoding") == "spikes":
        raise ConfigError(f"data {split.train.name} are images; encoding 'spikes' needs event data")
    return ModelConfig(input_shape=tuple(split.train.input_shape), **m)


def build_classifier(model_config: Any, seed: int):
    """A freshly initialised model (torch seeded with ``seed``) wrapped with its encoder."""
    import torch

    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.models import build_model

    torch.manual_seed(seed)
    return SNNClassifier(build_model(model_config), seed=seed)


def init_classifier(path: str, split, seed: int):
    """Start from a trained checkpoint (e.g. the clean LIF model HoSNN converts): its own
    config is used; the data's input shape must match it."""
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.models import load_checkpoint

    model, _ = load_checkpoint(path)
    if tuple(model.config.input_shape) != tuple(split.train.input_shape):
        raise ConfigError(f"init_from {path}: model input {model.config.input_shape} != data "
                          f"{tuple(split.train.input_shape)}")
    return SNNClassifier(model.train(), seed=seed)


def _absolute(source: str) -> str:
    return source if source == "digits" else str(Path(source).resolve())


def train_from_config(
    config: dict[str, Any],
    out_dir: str | os.PathLike,
    resume: bool = False,
    quiet: bool = False,
    split=None,
):
    """Load data, build the model and defense, and train into ``out_dir`` (CLI and stage)."""
    from neurodeploy.training.defense import make_defense
    from neurodeploy.training.trainer import TrainConfig, train

    split = split if split is not None else load_data(config)
    seed = int(config.get("seed", 0))
    train_section = dict(config.get("train", {}))
    train_section.setdefault("seed", seed)
    if "device" in config:
        train_section.setdefault("device", config["device"])
    tcfg = TrainConfig.from_dict(train_section)
    init_from = config.get("model", {}).get("init_from")
    if init_from:
        classifier = init_classifier(
            resolve_source(str(init_from), config.get("_config_dir")), split, tcfg.seed)
    else:
        classifier = build_classifier(model_config_for(config, split), tcfg.seed)
    dsec = config.get("defense", {"name": "none"})
    defense = make_defense(str(dsec.get("name", "none")), dict(dsec.get("options", {})))
    data = dict(config.get("data", {}))
    return train(
        classifier,
        split,
        tcfg,
        defense=defense,
        out_dir=out_dir,
        resume=resume,
        quiet=quiet,
        extra={
            # absolute, so that `neurodeploy evaluate` finds the data from any folder
            "data_source": _absolute(
                resolve_source(str(data.get("source", "digits")), config.get("_config_dir"))
            ),
            "data_config": data,
        },
    )


# ----------------------------------------------------------------------------- stages


@dataclass
class StageContext:
    """What a stage gets: the validated config, the one output folder, earlier artifacts."""

    config: dict[str, Any]
    out_dir: Path
    artifacts: dict[str, dict[str, Any]]
    seed: int
    device: str
    quiet: bool
    resume: bool = False
    cache: dict[str, Any] = field(default_factory=dict)  # in-process objects (e.g. the split)

    def path(self, artifact: str) -> Path:
        """Absolute path of an artifact stored relative to the output folder."""
        return self.out_dir / artifact

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.config.get(name, {}))


StageFn = Callable[[StageContext], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str
    fn: StageFn
    after: tuple[str, ...] = ()
    description: str = ""


#: Stage name → stage. ``train`` and ``evaluate`` are registered below; the modules listed
#: register the others and are imported on the first lookup (neurodeploy.registry).
STAGE_MODULES: tuple[str, ...] = ("neurodeploy.audit.stages",)
STAGES: Registry[Stage] = Registry("stage", modules=STAGE_MODULES)


def register_stage(
    name: str, fn: StageFn, after: Sequence[str] = (), description: str = ""
) -> Stage:
    """Register (or replace) a stage; ``after`` names the stages whose artifacts it needs."""
    stage = Stage(name, fn, tuple(after), description or (fn.__doc__ or "").strip().split("\n")[0])
    STAGES.register(name, stage)
    return stage


def load_stage_modules() -> None:
    """Import every stage module (:data:`STAGE_MODULES`) so that all stages are registered."""
    STAGES.load()


def stage_order(selected: Sequence[str] | None = None) -> list[str]:
    """Registered stages in dependency order (registration order breaks ties)."""
    load_stage_modules()
    names = list(STAGES)
    if selected is not None:
        unknown = [s for s in selected if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; registered: {names}")
    order: list[str] = []
    visiting: set[str] = set()

    def visit(n: str) -> None:
        if n in order:
            return
        if n in visiting:
            raise ConfigError(f"stage dependency cycle through {n!r}")
        visiting.add(n)
        for dep in STAGES[n].after:
            if dep not in STAGES:
                raise ConfigError(f"stage {n!r} needs {dep!r}, which is not registered")
            visit(dep)
        visiting.discard(n)
        order.append(n)

    for n in names:
        visit(n)
    if selected is not None:
        order = [n for n in order if n in set(selected)]
    return order


def run_pipeline(
    config: dict[str, Any],
    out_dir: str | os.PathLike,
    resume: bool = False,
    stages: Sequence[str] | None = None,
    quiet: bool = False,
    seed: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the (selected) stages into ``out_dir``; returns every stage's artifacts."""
    log = log or (lambda msg: None)
    config = dict(config)
    if seed is not None:
        config["seed"] = int(seed)
    if device is not None:
        config["device"] = device
    out = Path(out_dir)
    state_path = out / STATE_FILE
    digest = config_hash(config)
    state: dict[str, Any] = {"config_sha256": digest, "completed": {}}
    previous: dict[str, Any] | None = None
    if state_path.is_file():
        previous = read_json(state_path)
        if resume:
            state = previous
            if state.get("config_sha256") != digest:
                raise ConfigError(
                    f"{state_path}: was made with a different config (or --seed/--device); "
                    f"use a new --out or the same config"
                )
    order = stage_order(stages)  # unknown stage names fail here, before anything is written
    completed: dict[str, Any] = state["completed"]
    for name in order:
        missing = [d for d in STAGES[name].after if d not in completed and d not in order]
        if missing:
            raise ConfigError(f"stage {name!r} needs {missing} to run first (add them to "
                              f"--stages, or --resume a folder where they finished)")
    lava_note = _lava_note(config, order)
    if lava_note is not None:
        state["lava"] = lava_note
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None and not resume:
        removed = remove_previous_outputs(out, previous)
        if removed:
            log(f"[pipeline] not resuming: removed the previous run's {', '.join(removed)}")
    # config.json is written with the first stage's record: a run that fails before any
    # stage finished (validation inside a stage, bad data) leaves nothing behind
    record: dict[str, Any] | None = {k: v for k, v in config.items() if not k.startswith("_")}
    artifacts = {n: rec["artifacts"] for n, rec in completed.items()}
    ctx = StageContext(
        config,
        out,
        artifacts,
        int(config.get("seed", 0)),
        str(config.get("device", "auto")),
        quiet,
        resume,
    )
    for name in order:
        if name in completed:
            log(f"[{name}] done earlier, skipped (resume)")
            continue
        log(f"[{name}] running")
        t0 = time.perf_counter()
        result = STAGES[name].fn(ctx) or {}
        artifacts[name] = result
        completed[name] = {
            "artifacts": result,
            "seconds": time.perf_counter() - t0,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        state["completed"] = completed
        if record is not None:
            write_json_atomic(out / "config.json", record)
            record = None
        write_json_atomic(state_path, state)
        log(f"[{name}] finished in {completed[name]['seconds']:.1f} s")
    return artifacts


def _lava_note(config: dict[str, Any], order: Sequence[str]) -> str | None:
    """When a stage of this run asks for Lava and its environment is missing: say so on the
    terminal now (whatever --quiet) and return the note recorded in the state file."""
    wants = ("simulate" in order and "lava" in config.get("simulate", {}).get("backends", ())) \
        or ("audit" in order and config.get("audit", {}).get("lava_samples", 1) != 0)
    if not wants:
        return None
    from neurodeploy.sims.lava_env import warn_lava_missing

    reason = warn_lava_missing("the pipeline")
    return None if reason is None else f"skipped: {reason}"


_OUTPUT_SUFFIXES = {".json", ".pt", ".npz", ".nir", ".md", ".html", ".png", ".svg"}


def remove_previous_outputs(out: Path, previous: dict[str, Any]) -> list[str]:
    """Remove what an earlier (non-resumed) run wrote into ``out``: the files and folders its
    stages recorded, and those named after a stage (``<stage>/``, ``.<stage>.partial/``,
    ``<stage>.json``, ``<stage>_*.json``) — so no output of an older model sits beside the new
    one. Other files are left alone. Returns the removed names."""
    import shutil

    names: set[str] = set()
    for rec in previous.get("completed", {}).values():
        for value in (rec.get("artifacts") or {}).values():
            for v in value.values() if isinstance(value, dict) else [value]:
                if (isinstance(v, str) and v and not Path(v).is_absolute() and ".." not in v
                        and ("/" in v or Path(v).suffix in _OUTPUT_SUFFIXES)):
                    names.add(Path(v).parts[0])
    load_stage_modules()
    stage_names = set(STAGES)
    for entry in out.iterdir():
        n = entry.name
        if n in stage_names and entry.is_dir():  # <stage>/
            names.add(n)
        elif n.startswith(".") and n.endswith(".partial") and n[1:-8] in stage_names:
            names.add(n)  # .<stage>.partial/: the hidden work folder of a killed stage
        elif n.endswith(".json") and entry.is_file() and (
                n[:-5] in stage_names or n[:-5].split("_")[0] in stage_names):
            names.add(n)  # <stage>.json, <stage>_<x>.json
    names -= {"config.json"}
    removed = []
    for n in sorted(names):
        target = out / n
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            removed.append(n + "/")
        elif target.exists() or target.is_symlink():
            target.unlink()
            removed.append(n)
    (out / STATE_FILE).unlink(missing_ok=True)
    return removed


# ----------------------------------------------------------------------------- built-in stages


def stage_data(ctx: StageContext):
    """The data split of the config, loaded once per pipeline run (cached in ``ctx.cache``)."""
    if "split" not in ctx.cache:
        ctx.cache["split"] = load_data(ctx.config)
    return ctx.cache["split"]


def train_stage(ctx: StageContext) -> dict[str, Any]:
    """Train the model of [model] on [data] with [train] and [defense] into train/."""
    from neurodeploy.audit import nir_stages

    if nir_stages.is_nir_config(ctx.config):  # a NIR file: nothing to train
        return nir_stages.skipped(ctx, "train")
    res = train_from_config(
        ctx.config, ctx.out_dir / "train", resume=ctx.resume, quiet=ctx.quiet, split=stage_data(ctx)
    )
    return {
        "model": "train/model.pt",
        "best": "train/best.pt",
        "metrics": "train/metrics.json",
        "final_test_acc": res.final_test_acc,
        "best_test_acc": res.best_test_acc,
        "seconds": res.seconds,
    }


def evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    """Clean accuracy of the trained model on the test split, one figure per seed."""
    from neurodeploy.audit import nir_stages
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.evaluation import evaluate
    from neurodeploy.models import load_checkpoint
    from neurodeploy.runtime import resolve_device

    if nir_stages.is_nir_config(ctx.config):  # a NIR file: simulate reports its float accuracy
        return nir_stages.skipped(ctx, "evaluate")
    sec = ctx.section("evaluate")
    model, _ = load_checkpoint(ctx.path(ctx.artifacts["train"]["model"]))
    clf = SNNClassifier(model, seed=ctx.seed).to(resolve_device(ctx.device))
    res = evaluate(
        clf,
        stage_data(ctx).test,
        int(sec.get("batch_size", 256)),
        sec.get("seeds", [ctx.seed]),
        quiet=ctx.quiet,
    )
    write_json_atomic(ctx.path("evaluate.json"), res.to_dict())
    return {
        "results": "evaluate.json",
        "clean_accuracy": res.accuracy,
        "per_seed_accuracy": list(res.per_seed_accuracy),
    }


register_stage("train", train_stage)
register_stage("evaluate", evaluate_stage, after=("train",))
