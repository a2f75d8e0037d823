"""The train-then-export pipeline: a registry of stages run in order into one output folder.

A config (TOML, read with :mod:`tomllib`) has known sections, checked strictly (an unknown key
raises :class:`~neurodeploy.errors.ConfigError` naming it), and free sections for later stages::

    seed = 0                 # optional top-level keys: seed, device
    [data]     source, train_limit, test_limit, num_steps
    [model]    arch, num_steps, alpha, theta, surrogate, readout, encoding, neuron, bias
               (+ [model.neuron_params])
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
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError
from neurodeploy.training.metrics import read_json, write_json_atomic

STATE_FILE = "pipeline_state.json"

# The embedded default (configs/digits.toml holds the same; a test keeps them equal).
DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "data": {"source": "digits"},
    "model": {
        "arch": "FC256-FC10",
        "num_steps": 10,
        "alpha": 0.25,
        "theta": 0.25,
        "surrogate": "rect",
        # rate = counts / T: same prediction as counts, but CE on rates trains much better with
        # the rect surrogate (ties and saturated outputs with counts; see RESULTS_foundation.md)
        "readout": "rate",
        # encoding: "bernoulli" for images (ModelConfig's default), "spikes" for event data
    },
    "train": {"epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 1e-3},
    "defense": {"name": "none"},
    "evaluate": {"batch_size": 256, "seeds": [0, 1, 2]},
    "export": {"profile": "loihi2"},
    "simulate": {"backends": ["emulator", "lava"], "lava_samples": 100},
    "audit": {
        "eps": [0.05, 0.1],
        "attacks": ["auto"],
        "preset_budget": "demo",
        "threat_models": ["known", "unknown"],
        "draws": 5,
        "eot": 4,
        "attack_steps": 20,
        "square_queries": 100,
        "masking_samples": 48,
        "escalation_rounds": 2,
        "samples": 100,
        "lava_samples": 50,
    },
}

TOP_LEVEL_KEYS = {"seed", "device"}
DATA_KEYS = {"source", "train_limit", "test_limit", "num_steps"}
MODEL_KEYS = {
    "arch",
    "num_steps",
    "alpha",
    "theta",
    "surrogate",
    "readout",
    "encoding",
    "neuron",
    "neuron_params",
    "bias",
    "init_from",
}
DEFENSE_KEYS = {"name", "options"}
EVALUATE_KEYS = {"batch_size", "seeds"}
EXPORT_KEYS = {"profile"}
SIMULATE_KEYS = {"backends", "samples", "lava_samples"}


def _audit_keys() -> set[str]:
    from neurodeploy.audit.run import AuditConfig

    return {f.name for f in dataclasses.fields(AuditConfig)} - {"seed"}


def _train_keys() -> set[str]:
    from neurodeploy.training.trainer import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


KNOWN_SECTIONS: dict[str, Callable[[], set[str]]] = {
    "data": lambda: DATA_KEYS,
    "model": lambda: MODEL_KEYS,
    "train": _train_keys,
    "defense": lambda: DEFENSE_KEYS,
    "evaluate": lambda: EVALUATE_KEYS,
    "export": lambda: EXPORT_KEYS,
    "simulate": lambda: SIMULATE_KEYS,
    "audit": _audit_keys,
}


# ----------------------------------------------------------------------------- config


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check known sections strictly; return a copy with the defaults filled in."""
    for key, value in config.items():
        if not isinstance(value, dict) and key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{source}: unknown top-level key {key!r} (allowed: {sorted(TOP_LEVEL_KEYS)} "
                f"and [sections])"
            )
        if key in KNOWN_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a section")
            allowed = KNOWN_SECTIONS[key]()
            for k in value:
                if k not in allowed:
                    raise ConfigError(
                        f"{source}: unknown key {k!r} in [{key}]; allowed: {sorted(allowed)}"
                    )
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in config.items():
        if isinstance(value, dict) and key in merged and key != "defense":
            merged[key].update(copy.deepcopy(value))
        else:
            merged[key] = copy.deepcopy(value)
    if "seed" in merged and not isinstance(merged["seed"], int):
        raise ConfigError(f"{source}: seed must be an integer")
    return merged


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a TOML config; remembers its folder for relative data paths."""
    import tomllib  # Python >= 3.11 (the main environment); not needed by the Lava side

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    cfg = validate_config(raw, str(path))
    cfg["_config_dir"] = str(path.resolve().parent)
    return cfg


def config_hash(config: dict[str, Any]) -> str:
    clean = {k: v for k, v in config.items() if not k.startswith("_") and k != "device"}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def resolve_source(source: str, config_dir: str | None = None) -> str:
    """``digits`` stays; a relative path is taken from the current folder, else the config's."""
    if source == "digits" or Path(source).is_absolute() or Path(source).exists():
        return source
    if config_dir is not None and (Path(config_dir) / source).exists():
        return str(Path(config_dir) / source)
    return source


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


STAGES: dict[str, Stage] = {}

# Modules that register further stages when imported (added by later issues, e.g.
# "neurodeploy.exporters.stage"). Missing modules are skipped.
STAGE_MODULES: list[str] = ["neurodeploy.audit.stages"]


def register_stage(
    name: str, fn: StageFn, after: Sequence[str] = (), description: str = ""
) -> Stage:
    """Register (or replace) a stage; ``after`` names the stages whose artifacts it needs."""
    stage = Stage(name, fn, tuple(after), description or (fn.__doc__ or "").strip().split("\n")[0])
    STAGES[name] = stage
    return stage


def load_stage_modules() -> None:
    for mod in STAGE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


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
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    digest = config_hash(config)
    state: dict[str, Any] = {"config_sha256": digest, "completed": {}}
    if resume and state_path.is_file():
        state = read_json(state_path)
        if state.get("config_sha256") != digest:
            raise ConfigError(
                f"{state_path}: was made with a different config (or --seed/--device); "
                f"use a new --out or the same config"
            )
    write_json_atomic(
        out / "config.json", {k: v for k, v in config.items() if not k.startswith("_")}
    )
    order = stage_order(stages)
    completed: dict[str, Any] = state["completed"]
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
        missing = [d for d in STAGES[name].after if d not in completed]
        if missing:
            raise ConfigError(f"stage {name!r} needs {missing} to run first (add them to --stages)")
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
        write_json_atomic(state_path, state)
        log(f"[{name}] finished in {completed[name]['seconds']:.1f} s")
    return artifacts


# ----------------------------------------------------------------------------- built-in stages


def stage_data(ctx: StageContext):
    """The data split of the config, loaded once per pipeline run (cached in ``ctx.cache``)."""
    if "split" not in ctx.cache:
        ctx.cache["split"] = load_data(ctx.config)
    return ctx.cache["split"]


def train_stage(ctx: StageContext) -> dict[str, Any]:
    """Train the model of [model] on [data] with [train] and [defense] into train/."""
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
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.cli.common import resolve_device
    from neurodeploy.evaluation import evaluate
    from neurodeploy.models import load_checkpoint

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
