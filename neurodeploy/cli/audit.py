"""``neurodeploy audit``: re-attack the deployed model and write the audit report.

Writes OUT/audit.json, OUT/audit.md and OUT/audit.html (plus OUT/plan.npz, the plan that was
audited). Exit codes: 0 ok, 2 bad input, 3 model does not fit the profile, 5 Lava failed
or timed out (a missing Lava environment is a warning: the audit runs without Lava).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from neurodeploy.cli.argtypes import count_or_all, positive_float, positive_int
from neurodeploy.cli.common import add_common, add_model_args, load_model, progress_disabled
from neurodeploy.cli.export import PRODUCER_NAMES, TORCH_PRODUCERS, add_torch_module_args
from neurodeploy.scale.cli import ScaleOptions, add_scale_args, scale_options


def _floats(text: str) -> tuple[float, ...]:
    from neurodeploy.errors import ConfigError

    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"--eps {text!r} is not a comma-separated list of numbers") from exc
    if not vals:
        raise ConfigError("--eps is empty")
    return vals


def _ray(scale: ScaleOptions | None) -> contextlib.AbstractContextManager:
    """A Ray session for the audit's lifetime when workers or a cluster were asked for."""
    if scale is None or not scale.parallel:
        return contextlib.nullcontext()
    from neurodeploy.scale.ray_pool import ray_session

    return ray_session(scale.workers, scale.address)


def _nir_model(args: argparse.Namespace, data):  # noqa: ANN202 - (model, plan, x, info)
    """The NIR interpreter and the plan of ``--model FILE.nir`` (``--plan`` or compiled), the
    images in the graph's input shape, and the report's ``nir`` block; prints what was assumed."""
    from neurodeploy.audit.nir_model import load_nir_model
    from neurodeploy.errors import ConfigError, DataError

    if data.time_first:
        raise DataError(f"data {args.data!r} are spike/event trains: the audit attacks images "
                        f"through the host's Bernoulli encoder (known/unknown draw), which do "
                        f"not apply to event data; audit a NIR model on image data")
    plan = None
    if args.plan:
        from neurodeploy.exporters.plan import DeploymentPlan, PlanError

        try:
            plan = DeploymentPlan.load(args.plan)
        except PlanError as exc:
            raise ConfigError(str(exc)) from exc
        if args.profile and args.profile != plan.profile:
            raise ConfigError(f"--profile {args.profile} but the plan {args.plan} was compiled "
                              f"for {plan.profile}; leave --profile out with --plan")
        profile = None
    else:
        from neurodeploy.exporters.profiles import load_profile

        profile = load_profile(args.profile or "loihi2")
    model, plan = load_nir_model(args.model, plan=plan, plan_path=args.plan, profile=profile,
                                 num_steps=args.steps, producer=args.producer,
                                 reset=args.reset, dt=args.dt)
    return _fit_foreign(model, plan, data, args)


def _fit_foreign(model, plan, data, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """The images in the graph's input layout, the graph's source lines printed; the model's
    config carries the report's ``nir`` block (no checkpoint provenance)."""
    x = model.fit_images(data.x, f"data {args.data!r}")
    for line in model.source.lines():
        print(line)
    return model, plan, x, None


def _torch_module_model(args: argparse.Namespace, data):  # noqa: ANN202 - as _nir_model
    """``--torch-module FILE.py:FACTORY --producer spikingjelly``: converted, compiled, and
    audited as a NIR model (:mod:`neurodeploy.audit.foreign_models`)."""
    from neurodeploy.audit.foreign_models import load_torch_module_model
    from neurodeploy.cli.export import load_torch_module
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.profiles import load_profile

    if args.model or args.plan:
        raise ConfigError("--torch-module is the model: leave --model and --plan out")
    net, spec, shape = load_torch_module(args)
    model, plan = load_torch_module_model(net, str(spec), shape,
                                          load_profile(args.profile or "loihi2"), args.steps)
    return _fit_foreign(model, plan, data, args)


def _checkpoint_info(path: str) -> dict:
    """The training provenance a neurodeploy checkpoint records (empty for a plain state
    dict: the report then says "unknown")."""
    from neurodeploy.audit.provenance import checkpoint_provenance
    from neurodeploy.models import CHECKPOINT_FORMAT, _read

    rec = _read(path)
    ok = isinstance(rec, dict) and rec.get("format") == CHECKPOINT_FORMAT
    return checkpoint_provenance(rec) if ok else {}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="attack float and deployed model side by side; write JSON/Markdown/HTML report",
        description="Compile the model for --profile and attack the float model and the deployed "
        "model (bit-exact emulator, gradients from the hardware twin) side by side with the attack "
        "engine, under the known-draw and unknown-draw threat models; run the gradient-masking "
        "checks on both sides (escalating when one fails); compare the two sides on the same "
        "samples with an equivalence verdict (paired 95 %% CI of Δ against the --margin); replay on Lava; write OUT/audit.{json,md,html}. "
        "An interrupted audit resumes from OUT/state/. --workers N / --ray-address ADDR run "
        "the attack evaluations and the Lava replay as shards of --shard-size samples on Ray "
        "(one Lava process tree per shard); --shard-size alone runs the same shards serially, "
        "with the same report. --model FILE.nir audits a NIR graph from any producer: the "
        "float side is the NIR interpreter (attacked with its surrogate gradient), the "
        "deployed side the --plan given or the plan compiled from the file with --producer/"
        "--reset/--dt/--steps; the semantics assumed are printed and written into the report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p, required=False)  # or --torch-module
    p.add_argument("--data", default="digits", help="'digits' or a folder with IDX files")
    p.add_argument("--profile", default=None,
                   help="hardware profile name or .toml path (default loihi2; with --plan the "
                   "plan's)")
    p.add_argument("--eps", default="0.05,0.1", help="comma-separated ℓ∞ budgets")
    p.add_argument("--attacks", default="auto",
                   help="the 'auto' cascade (attacks/presets.py) and/or single attacks, "
                   "comma-separated (e.g. pgd,apgd-ce)")
    p.add_argument("--preset-budget", choices=("full", "demo"), default="full",
                   help="'demo': the small auto-demo budget")
    p.add_argument("--threat-models", default="known,unknown",
                   help="known (the host's map: what the chip is fed) and/or unknown (fresh draws)")
    p.add_argument("--draws", type=positive_int, default=5,
                   help="unknown draw: held-out draws per example on which the selected "
                   "adversarial inputs are scored (no attack sees them)")
    p.add_argument("--select-draws", type=positive_int, default=8,
                   help="unknown draw: attack-time draws on which each example's adversarial "
                   "input is selected")
    p.add_argument("--margin", type=float, default=5.0,
                   help="equivalence margin δ in accuracy points: 'survived' only when the "
                   "paired 95 %% CI of Δ = deployed − float lies above −δ")
    p.add_argument("--eot", type=positive_int, default=4,
                   help="unknown draw: EoT draws per gradient while crafting (default 4; "
                   "attack --eot defaults to 10, a pipeline config's [audit] eot to 2)")
    p.add_argument("--attack-steps", type=positive_int, default=20,
                   help="iterations of single gradient attacks")
    p.add_argument("--square-queries", type=positive_int, default=200,
                   help="queries of a single Square attack and of the masking checks' Square")
    p.add_argument("--samples", type=int, default=100, help="test samples to audit")
    p.add_argument("--masking-samples", type=int, default=64,
                   help="samples of the gradient-masking checks")
    p.add_argument("--escalation-rounds", type=int, default=2,
                   help="at most this many escalation rounds when a masking check fails")
    p.add_argument("--lava-samples", type=count_or_all, default=50,
                   help="samples replayed on Lava (-1: all, 0: skip Lava)")
    p.add_argument("--no-certify", action="store_true", help="skip S-IBP/S-CROWN certification")
    p.add_argument("--no-masking-checks", action="store_true",
                   help="skip gradient-masking checks (no verdict can then say 'survived')")
    p.add_argument("--exact", action="store_true",
                   help="also run the exact verifier per ε under the known draw on both sides "
                   "(certified <= exact <= attack, the attacks' completeness; the exact robust "
                   "accuracy replaces the attack's upper bound where every example is decided)")
    p.add_argument("--exact-timeout", type=positive_float, default=10.0,
                   help="with --exact: solver seconds per example (a timeout is 'unknown', "
                   "never robust)")
    g = p.add_argument_group("a NIR file as --model (float side: the NIR interpreter)")
    g.add_argument("--plan", default=None, metavar="PLAN.npz",
                   help="the deployment plan of the .nir (from `export --nir`); default: compile "
                   "the file for --profile with --steps time steps")
    g.add_argument("--producer", default=None, choices=sorted(PRODUCER_NAMES + TORCH_PRODUCERS),
                   help="framework that wrote the .nir (its dt, discretisation, reset and spike "
                   "conventions); default: the file's metadata, else the plan's record")
    g.add_argument("--reset", default=None, choices=("zero", "subtract"),
                   help="reset of the .nir (default: the producer's, or the plan's record)")
    g.add_argument("--dt", type=float, default=None,
                   help="seconds per step of the .nir (default: the producer's convention)")
    add_torch_module_args(p)
    add_common(p, out_required=True, out_help="output folder (required): audit.json, "
               "audit.md, audit.html, plan.npz and the resumable state")
    add_scale_args(p)  # --workers / --ray-address / --shard-size (neurodeploy.audit.sharding)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from neurodeploy.audit.run import AuditConfig, run_audit
    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import ConfigError

    if args.out is None:
        raise ConfigError("audit needs --out DIR for the report")
    if not args.model and not args.torch_module:
        raise ConfigError("audit needs --model (checkpoint or .nir) or --torch-module")
    scale = scale_options(args)  # validated before any work (exit 2 without Ray)
    if args.lava_samples != 0:  # Lava was asked for: say so when it cannot run
        from neurodeploy.sims.lava_env import warn_lava_missing

        warn_lava_missing("the audit")
    if not 0 < args.margin < 100:
        raise ConfigError(f"--margin must be in (0, 100) accuracy points, got {args.margin:g}")
    torch.manual_seed(args.seed)
    data = load_dataset(args.data).test
    names = lambda t: tuple(a.strip() for a in t.split(",") if a.strip())  # noqa: E731
    cfg = AuditConfig(
        eps=_floats(args.eps), attacks=names(args.attacks), preset_budget=args.preset_budget,
        threat_models=names(args.threat_models), draws=args.draws, eot=args.eot,
        select_draws=args.select_draws, margin=args.margin / 100.0,
        attack_steps=args.attack_steps, square_queries=args.square_queries,
        samples=args.samples, masking_samples=args.masking_samples,
        escalation_rounds=args.escalation_rounds,
        lava_samples=None if args.lava_samples < 0 else args.lava_samples,
        seed=args.seed, certify=not args.no_certify, masking_checks=not args.no_masking_checks,
        shard_size=scale.shard_size if scale is not None else None,
        exact=args.exact, exact_timeout=args.exact_timeout,
    )
    x, plan, info = data.x, None, None
    if args.torch_module:
        model, plan, x, info = _torch_module_model(args, data)
        profile = plan.profile
    elif str(args.model).lower().endswith(".net"):  # lava-dl netx (SLAYER's export)
        from neurodeploy.audit.foreign_models import load_netx_model

        model, plan = load_netx_model(args.model, args.steps, args.profile or "loihi2")
        x = model.fit_images(data.x, f"data {args.data!r}")
        print("\n".join(model.source.lines()))
        profile = plan.profile
    elif str(args.model).lower().endswith(".nir"):
        model, plan, x, info = _nir_model(args, data)
        profile = plan.profile
    else:
        if args.plan or args.producer or args.reset or args.dt is not None:
            raise ConfigError("--plan, --producer, --reset and --dt describe a NIR model "
                              "(--model FILE.nir); a checkpoint states its own semantics")
        model = load_model(args, data.input_shape)
        info = _checkpoint_info(args.model)
        profile = args.profile or "loihi2"
    with _ray(scale):  # one Ray instance for every sharded stage of the audit
        report = run_audit(model, x, data.y, profile, cfg, args.out,
                           quiet=progress_disabled(args.quiet), plan=plan, model_info=info,
                           workers=scale.workers if scale is not None else None,
                           address=scale.address if scale is not None else None)
    for line in report.verdicts:
        print(line)
    print(f"report: {Path(args.out) / 'audit.html'} (also audit.md, audit.json)")
    return 0
