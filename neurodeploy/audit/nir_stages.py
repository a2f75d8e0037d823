"""The pipeline with a NIR file as the model: ``[model] nir = "net.nir"``.

Config::

    [model]
    nir = "net.nir"          # a NIR graph from any producer (path: cwd first, then the config's
                             # folder)
    producer = "snntorch"    # its conventions (dt, discretisation, reset, spike rule); default:
                             # the file's metadata, else required
    reset = "zero"           # optional: the reset NIR cannot state (default: the producer's)
    dt = 1e-3                # optional: seconds per step (default: the producer's convention)
    num_steps = 10           # T of the plan (default: the graph metadata's, else 10)
    surrogate = "atan"       # optional: the float interpreter's surrogate gradient for attacks

Nothing is trained: the ``train`` and ``evaluate`` stages are skipped (their record says why),
and a config that gives ``[train]``, ``[defense]`` or a checkpoint model's keys (``arch``,
``alpha``, …) beside ``nir`` is refused before any stage runs. ``export`` compiles the file with
:func:`~neurodeploy.exporters.nir_deploy.compile_nir` (``export/model.nir`` is then the graph in
the neurodeploy convention, ``export/plan.npz`` the plan, the notes printed and stored in the
plan and the stage record); ``simulate`` and ``audit`` take the NIR interpreter as the float
model (:mod:`neurodeploy.audit.nir_model`) and the plan as the deployed one.
"""

from __future__ import annotations

from typing import Any

from neurodeploy.errors import ConfigError

#: [model] keys of a NIR model, with their types (the pipeline's schema adds them)
NIR_MODEL_KEYS: dict[str, Any] = {"nir": str, "producer": str, "reset": str, "dt": float}
#: [model] keys shared with a checkpoint model
SHARED_MODEL_KEYS = ("num_steps", "surrogate")
#: sections that describe training: refused beside a NIR model
TRAINING_SECTIONS = ("train", "defense")
DEFAULT_STEPS = 10


def is_nir_config(config: dict[str, Any]) -> bool:
    return bool(config.get("model", {}).get("nir"))


def merge_nir_model(user: dict[str, Any], merged: dict[str, Any], source: str) -> None:
    """For a config whose [model] names a NIR file: refuse what would be silently ignored
    (training sections, a checkpoint model's keys; NIR keys without ``nir``) and replace the
    merged [model] by the user's own (no checkpoint defaults)."""
    model = user.get("model", {}) if isinstance(user.get("model"), dict) else {}
    if not model.get("nir"):
        extra = sorted(k for k in NIR_MODEL_KEYS if k in model)
        if extra:
            raise ConfigError(f"{source}: [model] {', '.join(extra)} describe a NIR model; add "
                              f'nir = "net.nir" (or remove them)')
        return
    checkpoint_keys = sorted(k for k in model
                             if k not in NIR_MODEL_KEYS and k not in SHARED_MODEL_KEYS)
    if checkpoint_keys:
        raise ConfigError(f"{source}: [model] nir = {model['nir']!r} states its own network; "
                          f"remove {', '.join(checkpoint_keys)} (keys of a trained checkpoint)")
    given = [s for s in TRAINING_SECTIONS if s in user]
    if given:
        raise ConfigError(f"{source}: [model] nir = {model['nir']!r}: nothing is trained (the "
                          f"train and evaluate stages are skipped); remove "
                          f"{', '.join(f'[{s}]' for s in given)}")
    merged["model"] = dict(model)


def nir_path(config: dict[str, Any]) -> str:
    from neurodeploy.pipeline import resolve_source

    return resolve_source(str(config["model"]["nir"]), config.get("_config_dir"))


def check_nir_model(config: dict[str, Any], data_format: str) -> None:
    """Read the graph under the config's semantics (unknown producer, unreadable file, a graph
    that cannot be expressed: refused here, before any stage) and check its Input against the
    images of [data]."""
    from pathlib import Path

    import numpy as np

    from neurodeploy.exporters.nir_import import read_graph

    m = config["model"]
    path = nir_path(config)
    if not Path(path).is_file():
        raise ConfigError(f"nir = {m['nir']!r}: no such file")
    if m.get("reset") not in (None, "zero", "subtract"):
        raise ConfigError(f"reset = {m['reset']!r}: choose 'zero' or 'subtract'")
    if m.get("surrogate") is not None:
        from neurodeploy.surrogates import make_surrogate

        make_surrogate(str(m["surrogate"]))
    if m.get("num_steps") is not None and int(m["num_steps"]) < 1:
        raise ConfigError(f"num_steps = {m['num_steps']}: must be >= 1")
    if data_format == "nmnist":
        raise ConfigError(f"nir = {m['nir']!r} with event data: the audit stage attacks images "
                          f"through the host's Bernoulli encoder (known/unknown draw), which "
                          f"does not apply to events; use image data, or `neurodeploy simulate "
                          f"--model FILE.nir` for events")
    g = read_graph(path, producer=m.get("producer"), reset=m.get("reset"), dt=m.get("dt"))
    images = {"digits": (1, 8, 8), "idx": (1, 28, 28)}.get(data_format)
    want = tuple(int(v) for v in np.asarray(g.nodes[g.input_name].out_shape))
    if images is not None and int(np.prod(images)) != int(np.prod(want)):
        raise ConfigError(f"nir = {m['nir']!r}: the graph's Input takes {want}, the [data] "
                          f"images are {images}")


def num_steps(config: dict[str, Any]) -> tuple[int, str]:
    """T of the plan and where it came from."""
    import nir
    import numpy as np

    m = config["model"]
    if m.get("num_steps") is not None:
        return int(m["num_steps"]), "[model] num_steps"
    meta = nir.read(nir_path(config)).metadata
    t = meta.get("num_steps") if isinstance(meta, dict) else None
    if t is not None:
        return int(np.asarray(t).item()), "the graph metadata"
    return DEFAULT_STEPS, "the default (the graph does not state it; set [model] num_steps)"


def skipped(ctx: Any, stage: str) -> dict[str, Any]:
    """The record of a stage that a NIR model skips (also printed)."""
    why = (f"the model is the NIR file {ctx.config['model']['nir']!r}: nothing to "
           f"{'train' if stage == 'train' else 'evaluate before export (simulate reports its float accuracy)'}")
    print(f"[{stage}] skipped: {why}")
    return {"skipped": why}


def export_stage(ctx: Any) -> dict[str, Any]:
    """Compile the NIR file for [export] profile into export/{model.nir, plan.npz}."""
    from neurodeploy.atomicio import publish_files
    from neurodeploy.exporters.nir_deploy import compile_nir
    from neurodeploy.exporters.nir_export import write_graph
    from neurodeploy.exporters.profiles import load_profile

    m = ctx.config["model"]
    profile = load_profile(ctx.section("export").get("profile", "loihi2"))
    T, where = num_steps(ctx.config)
    dep = compile_nir(nir_path(ctx.config), profile, T, producer=m.get("producer"),
                      reset=m.get("reset"), dt=m.get("dt"))
    notes = [f"T = {T} from {where}", *dep.notes]
    print(f"[export] read {m['nir']}: {dep.dgraph.semantics.describe()}")
    for note in notes:
        print(f"  assumed: {note}")
    for note in dep.chip_notes:
        print(f"  chip:    {note}")
    plan = dep.plan
    publish_files(ctx.path("export"), {"model.nir": lambda p: write_graph(dep.canonical, p),
                                       "plan.npz": plan.save})
    return {"nir": "export/model.nir", "plan": "export/plan.npz", "profile": profile.name,
            "cores": plan.resources.get("cores_used"), "source_nir": str(m["nir"]),
            "semantics": dep.dgraph.semantics.describe(), "notes": notes,
            "chip_notes": list(dep.chip_notes)}


def fit_spikes(ctx: Any, spikes: Any, plan: Any) -> Any:
    """Host spikes ``[T, B, *image]`` in the plan's input shape for a NIR model whose Input
    has the images' values in another layout (checked by :func:`check_nir_model`); unchanged
    otherwise."""
    want = tuple(int(v) for v in plan.input_shape)
    if not is_nir_config(ctx.config) or tuple(spikes.shape[2:]) == want:
        return spikes
    print(f"[simulate] data samples of shape {tuple(spikes.shape[2:])} reshaped to the graph's "
          f"Input {want} (same values, C order)")
    return spikes.reshape(tuple(spikes.shape[:2]) + want)


def float_model(ctx: Any) -> Any:
    """The NIR interpreter of the config's file, with the plan of the export stage (the
    float side of ``simulate`` and ``audit``)."""
    from neurodeploy.audit.nir_model import DEFAULT_SURROGATE, load_nir_model
    from neurodeploy.exporters.plan import DeploymentPlan

    m = ctx.config["model"]
    rel = ctx.artifacts["export"]["plan"]
    plan = DeploymentPlan.load(ctx.path(rel))
    model, _ = load_nir_model(nir_path(ctx.config), plan=plan, plan_path=rel,
                              producer=m.get("producer"), reset=m.get("reset"), dt=m.get("dt"),
                              surrogate=str(m.get("surrogate", DEFAULT_SURROGATE)))
    return model
