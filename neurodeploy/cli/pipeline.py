"""``neurodeploy pipeline``: train → defend → export → simulate → audit from one config (the
registered stages: train, with the config's ``[defense]``; evaluate; export; simulate; audit)."""

from __future__ import annotations

import argparse
import sys

from neurodeploy.cli.argtypes import positive_int
from neurodeploy.cli.common import add_common
from neurodeploy.cli.train import set_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="train → defend → export → simulate → audit from one TOML config (resumable)",
        description="Train → defend → export → simulate → audit: run the registered stages "
        "(train, with the config's [defense]; evaluate, the clean accuracy; export; simulate; "
        "audit) in order into one output folder. Finished stages "
        "are recorded in OUT/pipeline_state.json and skipped with --resume. Without --config "
        "the embedded default (configs/digits.toml) is used.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--config", default=None, help="TOML config (default: the embedded digits config)"
    )
    p.add_argument(
        "--stages",
        default=None,
        help="comma-separated stages to run (default: all registered, in order); the "
        "stages they need must have finished in OUT (use with --resume)",
    )
    p.add_argument("--resume", action="store_true", help="skip stages finished in OUT")
    p.add_argument("--list-stages", action="store_true", help="list the registered stages and exit")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often fastest for "
        "small models on a shared machine)",
    )
    add_common(p, out_help="output folder of every stage (default runs/pipeline)")
    p.set_defaults(func=run, out="runs/pipeline", seed=None)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from neurodeploy.pipeline import (
        DEFAULT_CONFIG,
        STAGES,
        load_config,
        run_pipeline,
        stage_order,
        validate_config,
    )

    if args.list_stages:
        for name in stage_order():
            st = STAGES[name]
            after = f" (after {', '.join(st.after)})" if st.after else ""
            print(f"{name}{after}: {st.description}")
        return 0
    config = load_config(args.config) if args.config else validate_config(DEFAULT_CONFIG)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    device = None if args.device == "auto" and "device" in config else args.device
    artifacts = run_pipeline(
        config,
        args.out,
        resume=args.resume,
        stages=stages,
        quiet=args.quiet,
        seed=args.seed,
        device=device,
        log=None if args.quiet else (lambda m: print(m, file=sys.stderr)),
    )
    ev = artifacts.get("evaluate", {})
    if "clean_accuracy" in ev:
        print(f"clean accuracy {100 * ev['clean_accuracy']:.2f} % (evaluate.json in {args.out})")
    print(f"pipeline finished: {', '.join(artifacts)} -> {args.out}")
    audit = artifacts.get("audit") or {}
    for line in audit.get("verdicts") or []:  # the audit's verdict lines and its report last
        print(line)
    if audit.get("html"):
        from pathlib import Path

        print(f"audit report: {Path(args.out) / audit['html']}")
    return 0
