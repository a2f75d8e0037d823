"""Pipeline stages after training: export → simulate → audit (registered on import).

Config sections (all optional)::

    [export]    profile = "loihi2"
    [simulate]  backends = ["emulator", "lava"]; samples = 360 (Lava skipped when its
                environment is missing, with a note in the artifacts)
    [audit]     eps = [0.05, 0.1]; attacks = ["pgd", "apgd-ce"]; attack_steps; eot;
                square_queries; samples; lava_samples; certify; masking_checks; shard_size;
                draws (held-out); select_draws; margin = 0.05 (a fraction)

With ``[model] nir = "net.nir"`` the export stage compiles that file and simulate/audit take the
NIR interpreter as the float model (:mod:`neurodeploy.audit.nir_stages`).

A stage's files appear together: export's ``model.nir`` + ``plan.npz`` in one folder rename;
simulate's ``simulate/<backend>.json`` files are written into a hidden folder that becomes
``simulate/`` in one rename; the audit works in the hidden folder :data:`AUDIT_WORK` (its resumable state included)
that becomes ``audit/`` in one rename once its report is whole.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from neurodeploy.atomicio import WORK_SUFFIX, publish_dir, publish_files, publish_folder
from neurodeploy.jsonable import jsonable
from neurodeploy.pipeline import StageContext, register_stage, stage_data
from neurodeploy.runtime import crash_point

#: The audit stage's working folder (hidden, beside ``audit/``): the run and its resumable
#: state live here until the report is whole, then the folder is renamed to ``audit/``.
AUDIT_WORK = f".audit{WORK_SUFFIX}"


def _model(ctx: StageContext):
    from neurodeploy.audit import nir_stages
    from neurodeploy.models import load_checkpoint

    if nir_stages.is_nir_config(ctx.config):  # the NIR interpreter with the exported plan
        return nir_stages.float_model(ctx)

    model, _ = load_checkpoint(ctx.path(ctx.artifacts["train"]["model"]))
    return model


def _provenance(ctx: StageContext) -> dict[str, Any]:
    """The trained checkpoint's training provenance (defense, options, ε, epochs); the
    [defense] section's name when the checkpoint does not record one."""
    from neurodeploy.audit import nir_stages
    from neurodeploy.audit.provenance import checkpoint_provenance
    from neurodeploy.models import load_checkpoint

    if nir_stages.is_nir_config(ctx.config):
        return {}
    _, rec = load_checkpoint(ctx.path(ctx.artifacts["train"]["model"]))
    out = checkpoint_provenance(rec)
    if "defense" not in out and ctx.section("defense").get("name"):
        out["defense"] = ctx.section("defense")["name"]
    return out


def export_stage(ctx: StageContext) -> dict[str, Any]:
    """Export the trained model to NIR and compile the plan for [export] profile."""
    from neurodeploy.audit import nir_stages

    if nir_stages.is_nir_config(ctx.config):  # [model] nir: compile the file itself
        return nir_stages.export_stage(ctx)
    from neurodeploy.exporters.compiler import compile_graph
    from neurodeploy.exporters.nir_export import to_nir, write_graph
    from neurodeploy.exporters.profiles import load_profile

    sec = ctx.section("export")
    profile = load_profile(sec.get("profile", "loihi2"))
    model = _model(ctx)
    graph = to_nir(model)
    plan = compile_graph(graph, profile, model.config.num_steps, model.config.input_shape)
    # model.nir and plan.npz appear together (one folder rename), never one without the other
    publish_files(ctx.path("export"), {"model.nir": lambda p: write_graph(graph, p),
                                       "plan.npz": plan.save})
    return {"nir": "export/model.nir", "plan": "export/plan.npz", "profile": profile.name,
            "cores": plan.resources.get("cores_used")}


def simulate_stage(ctx: StageContext) -> dict[str, Any]:
    """Run the plan on the test split with the emulator (and Lava when available)."""
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.sims.lava_env import lava_missing_reason
    from neurodeploy.simulation import encode, simulate

    sec = ctx.section("simulate")
    plan = DeploymentPlan.load(ctx.path(ctx.artifacts["export"]["plan"]))
    model = _model(ctx)
    test = stage_data(ctx).test.subset(sec.get("samples"))
    spikes = encode(test, plan.num_steps, ctx.seed)
    from neurodeploy.audit import nir_stages

    spikes = nir_stages.fit_spikes(ctx, spikes, plan)  # a NIR graph's Input may be flat
    out: dict[str, Any] = {}
    files: dict[str, Any] = {}
    for backend in sec.get("backends", ["emulator", "lava"]):
        why = lava_missing_reason() if backend == "lava" else None
        if why:
            out["lava"] = f"skipped: {why}"
            continue
        n = int(sec.get("lava_samples", 100)) if backend == "lava" else spikes.shape[1]
        rep = simulate(plan, spikes[:, :n], test.y[:n], backend, model=model, quiet=ctx.quiet)
        rep.plan, rep.data, rep.seed = str(ctx.artifacts["export"]["plan"]), test.name, ctx.seed
        files[f"{backend}.json"] = rep.to_dict()
        out[backend] = {"results": f"simulate/{backend}.json",
                        "accuracy": rep.accuracy_backend, "accuracy_float": rep.accuracy_float,
                        "spike_agreement": [layer.spike_agreement for layer in rep.layers]}
    # simulate/<backend>.json: written into a hidden folder that replaces simulate/ at once
    with publish_dir(ctx.path("simulate")) as tmp:
        for name, d in files.items():
            (tmp / name).write_text(json.dumps(jsonable(d), indent=2, allow_nan=False) + "\n",
                                    encoding="utf-8")
    return out


def audit_stage(ctx: StageContext) -> dict[str, Any]:
    """Re-attack float and deployed model; write audit/audit.{json,md,html}."""
    from neurodeploy.audit.run import AuditConfig, run_audit
    from neurodeploy.exporters.plan import DeploymentPlan

    sec = ctx.section("audit")
    fields = AuditConfig.__dataclass_fields__
    unknown = set(sec) - set(fields)
    if unknown:
        from neurodeploy.errors import ConfigError

        raise ConfigError(f"[audit]: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sec.items()}
    cfg = AuditConfig(seed=ctx.seed, **{k: v for k, v in kw.items() if k != "seed"})
    plan = DeploymentPlan.load(ctx.path(ctx.artifacts["export"]["plan"]))
    test = stage_data(ctx).test
    profile = ctx.artifacts["export"].get("profile", "loihi2")
    final, work = ctx.path("audit"), ctx.path(AUDIT_WORK)
    if not ctx.resume:
        shutil.rmtree(work, ignore_errors=True)  # a killed earlier run's work
    elif final.is_dir() and not work.exists():
        os.rename(final, work)  # published, but killed before the state file said so
    report = run_audit(_model(ctx), test.x, test.y, profile, cfg, work,
                       model_info=_provenance(ctx), quiet=ctx.quiet, plan=plan)
    state = Path(report.meta.get("state_dir", ""))
    if state.is_relative_to(work):  # where the state will be once published
        report.meta["state_dir"] = str(final / state.relative_to(work))
        publish_files(work, {"audit.json": lambda p: p.write_text(report.to_json(),
                                                                  encoding="utf-8")})
    crash_point("audit.before-publish")
    publish_folder(work, final)
    return {"json": "audit/audit.json", "markdown": "audit/audit.md", "html": "audit/audit.html",
            "verdicts": report.verdicts}


register_stage("export", export_stage, after=("train",))
register_stage("simulate", simulate_stage, after=("export",))
register_stage("audit", audit_stage, after=("export",))
