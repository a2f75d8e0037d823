"""The pipeline's config: the embedded default, the section schemas, and the checks that run
before any stage (:func:`validate_config`, :func:`load_config`).

A config (TOML) has known sections, checked strictly — an unknown section or key, a value of
the wrong type, a range violated or a name no registry knows raises
:class:`~neurodeploy.errors.ConfigError` naming the file, section and key — and free sections
that stage modules register with :func:`register_section`. :mod:`neurodeploy.pipeline` runs
the stages; it re-exports the names here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError

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
        "eps": [0.1],
        "attacks": ["auto"],
        "preset_budget": "demo",
        "unknown_attacks": ["auto-demo:apgd-ce"],
        "threat_models": ["known", "unknown"],
        "draws": 5,
        "eot": 2,
        "attack_steps": 20,
        "square_queries": 100,
        "masking_samples": 32,
        "escalation_rounds": 1,
        "samples": 50,
        "lava_samples": 20,
    },
}

TOP_LEVEL_KEYS = {"seed", "device"}


# ----------------------------------------------------------------------------- config schema
#
# Every section's keys and value types come from a dataclass (the stage's own config class
# where there is one: TrainConfig, ModelConfig, AuditConfig), so a key added to those classes
# is accepted here without a second list to keep in step.


@dataclass(frozen=True)
class DataSection:
    """[data]: ``source`` = "digits" or a folder (IDX, N-MNIST); first N samples; T of events."""

    source: str = "digits"
    train_limit: int | None = None
    test_limit: int | None = None
    num_steps: int | None = None


@dataclass(frozen=True)
class DefenseSection:
    """[defense]: a registered defense name (or ``a+b``) and its options."""

    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluateSection:
    """[evaluate]: batch size and the seeds of the Bernoulli draws (accuracy = their mean)."""

    batch_size: int = 256
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class ExportSection:
    """[export]: a hardware profile name or a profile .toml path."""

    profile: str = "loihi2"


@dataclass(frozen=True)
class SimulateSection:
    """[simulate]: backends to run the plan on; samples (all test samples by default) and how
    many of them go through Lava."""

    backends: tuple[str, ...] = ("emulator", "lava")
    samples: int | None = None
    lava_samples: int = 100


def _model_schema() -> dict[str, Any]:
    from neurodeploy.models import ModelConfig

    hints = _hints(ModelConfig)
    hints.pop("input_shape")  # from the data
    hints["init_from"] = str
    from neurodeploy.audit.nir_stages import NIR_MODEL_KEYS

    hints.update(NIR_MODEL_KEYS)  # [model] nir = "net.nir" (+ producer, reset, dt)
    return hints


def _train_schema() -> dict[str, Any]:
    from neurodeploy.training.trainer import TrainConfig

    return _hints(TrainConfig)


def _audit_schema() -> dict[str, Any]:
    from neurodeploy.audit.run import AuditConfig

    hints = _hints(AuditConfig)
    hints.pop("seed", None)  # the pipeline's seed
    return hints


def _hints(cls: type) -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


#: Section name → its keys and types. Stage modules may add theirs (:func:`register_section`).
SECTION_SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "data": lambda: _hints(DataSection),
    "model": _model_schema,
    "train": _train_schema,
    "defense": lambda: _hints(DefenseSection),
    "evaluate": lambda: _hints(EvaluateSection),
    "export": lambda: _hints(ExportSection),
    "simulate": lambda: _hints(SimulateSection),
    "audit": _audit_schema,
}
#: Free-form sub-tables (their keys are checked by their consumer: defense options, neuron
#: parameters).
FREE_TABLES = {("defense", "options"), ("model", "neuron_params")}


def register_section(name: str, schema: Callable[[], dict[str, Any]] | type) -> None:
    """Declare a config section (a dataclass, or a function returning ``{key: type}``)."""
    SECTION_SCHEMAS[name] = (lambda: _hints(schema)) if isinstance(schema, type) else schema


# kept for callers of the old names
KNOWN_SECTIONS = SECTION_SCHEMAS


def _suggest(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_value(value: Any, hint: Any, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` has the type ``hint`` (TOML values: int
    is not bool, a float may be written as an int, tuples/lists are TOML arrays)."""
    import math
    import types
    import typing

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for h in args:
            if h is type(None):
                if value is None:
                    return
                continue
            try:
                check_value(value, h, where)
                return
            except ConfigError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        raise ConfigError(f"{where} = {value!r}: expected {_type_name(hint)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected a list, e.g. [{value!r}]")
        elem = args[0] if args else Any
        for i, v in enumerate(value):
            check_value(v, elem, f"{where}[{i}]")
        return
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: expected a table")
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: expected a finite number")
        return
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return


def _check_structure(config: dict[str, Any], source: str) -> None:
    """Every section, key and value type known (before anything is merged or run)."""
    from neurodeploy.pipeline import load_stage_modules  # stage modules register sections

    load_stage_modules()
    sections = sorted(SECTION_SCHEMAS)
    for key, value in config.items():
        if key.startswith("_"):
            continue
        if not isinstance(value, dict):
            if key not in TOP_LEVEL_KEYS:
                raise ConfigError(
                    f"{source}: unknown top-level key {key!r}{_suggest(key, sorted(TOP_LEVEL_KEYS))}"
                    f" (allowed: {sorted(TOP_LEVEL_KEYS)} and the sections {sections})")
            continue
        if key not in SECTION_SCHEMAS:
            raise ConfigError(f"{source}: unknown section [{key}]{_suggest(key, sections)}; "
                              f"known sections: {sections}")
        schema = SECTION_SCHEMAS[key]()
        for k, v in value.items():
            if k not in schema:
                raise ConfigError(f"{source}: unknown key {k!r} in [{key}]"
                                  f"{_suggest(k, sorted(schema))}; allowed: {sorted(schema)}")
            if (key, k) in FREE_TABLES:
                check_value(v, dict, f"{source}: [{key}] {k}")
            else:
                check_value(v, schema[k], f"{source}: [{key}] {k}")
    if "seed" in config:
        check_value(config["seed"], int, f"{source}: seed")
    if "device" in config:
        check_value(config["device"], str, f"{source}: device")


def _positive(section: dict[str, Any], keys: Sequence[str], name: str, source: str,
              minimum: int = 1) -> None:
    for k in keys:
        v = section.get(k)
        if v is not None and v < minimum:
            raise ConfigError(f"{source}: [{name}] {k} = {v}: must be >= {minimum}")


#: Values per input sample of each data format (the spike tensor is ``[T, batch, features]``).
FEATURES = {"digits": 8 * 8, "idx": 28 * 28, "nmnist": 2 * 34 * 34}


def _check_limits(cfg: dict[str, Any], source: str, fmt: str) -> None:
    """Seeds in range, time steps bounded, and the largest spike batch ``[T, B, features]``
    within memory (:mod:`neurodeploy.limits`) — before anything is allocated."""
    from neurodeploy.limits import check_num_steps, check_seed, check_tensor_size

    check_seed(cfg.get("seed", 0), f"{source}: seed")
    tr, ev, au = cfg.get("train", {}), cfg.get("evaluate", {}), cfg.get("audit", {})
    if "seed" in tr:
        check_seed(tr["seed"], f"{source}: [train] seed")
    for i, s in enumerate(ev.get("seeds", ())):
        check_seed(s, f"{source}: [evaluate] seeds[{i}]")
    steps = 10
    for sec in ("data", "model"):
        if cfg.get(sec, {}).get("num_steps") is not None:
            steps = check_num_steps(cfg[sec]["num_steps"], f"{source}: [{sec}] num_steps")
    batch = max(int(tr.get("batch_size", 64)), int(tr.get("eval_batch_size", 0) or 0),
                int(ev.get("batch_size", 256)), int(au.get("samples", 0) or 0), 1)
    check_tensor_size((steps, batch, FEATURES.get(fmt, FEATURES["idx"])),
                      f"{source}: num_steps {steps} × batch {batch} × {fmt} inputs")
    _positive(au, ("square_queries",), "audit", source)
    if au.get("lava_samples") is not None and au["lava_samples"] < 0:
        raise ConfigError(f"{source}: [audit] lava_samples = {au['lava_samples']}: must be "
                          f">= 0 (0 skips Lava; leave it out for the default)")


def _check_checkpoint_model(model: dict[str, Any], init_from: Any, fmt: str, src: str,
                            cfg: dict[str, Any]) -> None:
    """[model] of a model the pipeline trains: names, values, architecture vs input shape."""
    if init_from is not None:
        ip = Path(resolve_source(str(init_from), cfg.get("_config_dir")))
        if not ip.is_file():
            raise ConfigError(f"init_from = {str(init_from)!r}: no such checkpoint")
    from neurodeploy.models import ModelConfig, build_model
    from neurodeploy.surrogates import make_surrogate

    if "arch" not in model:
        raise ConfigError('needs arch (e.g. "FC256-FC10")')
    make_surrogate(str(model.get("surrogate", "rect")))
    spikes = fmt == "nmnist"
    if spikes and model.get("encoding", "spikes") != "spikes":
        raise ConfigError(f"encoding must be 'spikes' for the spike data {src!r}, got "
                          f"{model['encoding']!r}")
    if not spikes and model.get("encoding") == "spikes":
        raise ConfigError(f"encoding = 'spikes' needs event data; {src!r} are images")
    if fmt == "digits" and init_from is None:
        # architecture vs input shape, neuron kind and its parameters, all values
        build_model(ModelConfig(input_shape=(1, 8, 8), **model))


def _resolve_names(cfg: dict[str, Any], source: str) -> None:
    """Ranges, and every name (dataset, model parts, defense, profile, backend, attack)
    resolved through the project's registries; raises ConfigError naming section and key."""
    def at(section: str, what: str) -> _Where:
        return _Where(source, section, what)

    data = cfg.get("data", {})
    _positive(data, ("train_limit", "test_limit", "num_steps"), "data", source)
    src = str(data.get("source", "digits"))
    resolved = resolve_source(src, cfg.get("_config_dir"))
    fmt = "digits"
    if resolved != "digits":
        path = Path(resolved)
        if not path.is_dir():
            raise ConfigError(f"{source}: [data] source = {src!r}: no such folder (and not "
                              f"'digits')")
        from neurodeploy.data.core import FOLDER_FORMATS

        fmt = next(name for name, detect, _ in FOLDER_FORMATS if detect(path))
    _check_limits(cfg, source, fmt)
    model = dict(cfg.get("model", {}))
    init_from = model.pop("init_from", None)
    with at("defense", "name"):
        from neurodeploy.training.defense import make_defense

        dsec = cfg.get("defense", {})
        make_defense(str(dsec.get("name", "none")), dict(dsec.get("options", {})))
    with at("model", "nir" if model.get("nir") else ""):
        if model.get("nir"):  # a NIR file as the model (neurodeploy.audit.nir_stages)
            from neurodeploy.audit.nir_stages import check_nir_model

            check_nir_model(cfg, fmt)
        else:
            _check_checkpoint_model(model, init_from, fmt, src, cfg)
    tr = dict(cfg.get("train", {}))
    tr.setdefault("seed", int(cfg.get("seed", 0)))
    with at("train", ""):
        from neurodeploy.training.trainer import TrainConfig

        TrainConfig.from_dict(tr)
    ev = cfg.get("evaluate", {})
    _positive(ev, ("batch_size",), "evaluate", source)
    if "seeds" in ev and not ev["seeds"]:
        raise ConfigError(f"{source}: [evaluate] seeds is empty")
    if "export" in cfg:
        with at("export", "profile"):
            from neurodeploy.exporters.profiles import load_profile

            load_profile(resolve_source(str(cfg["export"].get("profile", "loihi2")),
                                        cfg.get("_config_dir")))
    if "simulate" in cfg:
        sim = cfg["simulate"]
        _positive(sim, ("samples",), "simulate", source)
        _positive(sim, ("lava_samples",), "simulate", source, minimum=0)
        known = backend_names()
        for b in sim.get("backends", ()):
            if b not in known:
                raise ConfigError(f"{source}: [simulate] backends: unknown backend {b!r}"
                                  f"{_suggest(b, known)}; choose from {known}")
    if "audit" in cfg:
        with at("audit", ""):
            from neurodeploy.audit import run as audit_run

            sec = cfg["audit"]
            kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sec.items()}
            acfg = audit_run.AuditConfig(seed=int(cfg.get("seed", 0)), **kw)
            specs = getattr(audit_run, "attack_specs", None)
            if specs is not None:  # presets and single attacks, as the audit resolves them
                for stochastic in (False, True):
                    specs(acfg, stochastic)
            else:
                from neurodeploy.attacks.base import attack_names

                known = attack_names()
                for a in acfg.attacks:
                    if a not in known:
                        raise ConfigError(f"attacks: unknown attack {a!r}{_suggest(a, known)}; "
                                          f"choose from {known}")


class _Where:
    """Context manager: a ConfigError (or a TypeError/ValueError from a config class) inside
    gets the file and section in front of its message."""

    def __init__(self, source: str, section: str, key: str) -> None:
        self.prefix = f"{source}: [{section}]" + (f" {key}" if key else "")

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ, exc, tb) -> bool:
        from neurodeploy.errors import NeurodeployError

        if exc is None:
            return False
        if isinstance(exc, NeurodeployError) and not isinstance(exc, ConfigError):
            raise type(exc)(f"{self.prefix}: {exc}") from exc
        if isinstance(exc, (ConfigError, TypeError, ValueError, KeyError)):
            raise ConfigError(f"{self.prefix}: {exc}") from exc
        return False


def backend_names() -> list[str]:
    """The simulation backends of the backend registry."""
    try:
        from neurodeploy import runtime

        names = getattr(runtime, "backend_names", None)
        if callable(names):
            return sorted(names())
    except ImportError:
        pass
    from neurodeploy.simulation import BACKENDS

    return sorted(BACKENDS)


# ----------------------------------------------------------------------------- config


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check the whole config — sections, keys, value types, ranges, and every name through
    the registries — before any stage runs; return a copy with the defaults filled in."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: a config is a table of sections")
    _check_structure(config, source)
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in config.items():
        if isinstance(value, dict) and key in merged and key != "defense":
            merged[key].update(copy.deepcopy(value))
        else:
            merged[key] = copy.deepcopy(value)
    from neurodeploy.audit.nir_stages import merge_nir_model

    merge_nir_model(config, merged, source)  # [model] nir: no checkpoint defaults, no training
    _resolve_names(merged, source)
    return merged


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a TOML config; remembers its folder for relative data paths."""
    from neurodeploy.safeload import loads_toml  # tomllib: Python >= 3.11 (the main side)

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} not found") from exc
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read as text ({exc})") from exc
    raw = loads_toml(text, str(path), ConfigError)  # syntax and nesting depth
    raw["_config_dir"] = str(path.resolve().parent)  # relative paths are checked from here
    return validate_config(raw, str(path))


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
