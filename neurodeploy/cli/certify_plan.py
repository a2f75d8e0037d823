"""``neurodeploy certify --plan plan.npz``: verified error of the *deployed* (integer) model.

Integer S-IBP through the plan's exact step (:mod:`neurodeploy.bounds.plan_ibp`); with
``--model`` as well, the float model is certified on the same uniform maps (same seed, same
batches) and a verdict line compares the two, e.g.::

    neurodeploy certify --plan plan.npz --model ../shared/reference_models/certify_snn/FC_T_3_eps_0.06.pth.tar \\
        --arch FC512-FC256-FC10 --data ../shared/data/mnist --split all --eps 0.06 --method ibp
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", default=None,
                   help="deployment plan (.npz): certify the deployed integer model (plan S-IBP); "
                        "with --model too, the float model on the same draws beside it")


def run_plan(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from neurodeploy.bounds.certify import METHODS, certify_many
    from neurodeploy.bounds.plan_ibp import certify_plan_many, plan_encoding, verdict_sentence
    from neurodeploy.cli.common import progress_disabled
    from neurodeploy.data.core import load_dataset
    from neurodeploy.encoding import make_generator
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.models import library_versions
    from neurodeploy.training.metrics import write_json_atomic

    plan = DeploymentPlan.load(args.plan)
    methods = tuple(m.strip().lower() for m in str(args.method).split(",") if m.strip())
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"--method: unknown {m!r}; choose from {sorted(METHODS)}")
    split = load_dataset(args.data)
    parts = {"test": [split.test], "train": [split.train], "all": [split.train, split.test]}
    xs = torch.cat([d.x for d in parts[args.split]])
    ys = torch.cat([d.y for d in parts[args.split]])
    if args.samples is not None:
        xs, ys = xs[: args.samples], ys[: args.samples]
    encoding = plan_encoding(plan, getattr(args, "encoding", None) or "bernoulli")
    if encoding == "spikes" and xs.dim() == len(plan.input_shape) + 2:
        xs = xs.movedim(1, 0).contiguous()
    else:
        n_feat = int(torch.tensor(plan.input_shape).prod())
        if xs[0].numel() != n_feat:
            raise ConfigError(f"data samples have shape {tuple(xs.shape[1:])}, the plan expects "
                              f"{tuple(plan.input_shape)}")
        xs = xs.reshape(xs.shape[0], *plan.input_shape)
    n = int(ys.shape[0])
    model = None
    if args.model:
        from neurodeploy.cli.certify import load_model

        model = load_model(args, tuple(xs.shape[1:])).eval()
    steps = int(args.cert_steps or plan.num_steps)
    per: dict[str, dict[str, list[float]]] = {}
    bar = tqdm(total=n * args.draws * (1 + (len(methods) if model is not None else 0)),
               desc="certify plan", disable=progress_disabled(args.quiet))
    for d in range(args.draws):
        t0 = time.perf_counter()
        res = certify_plan_many(plan, xs, ys, args.eps, steps, make_generator(args.seed + d),
                                batch_size=args.batch_size, encoding=encoding,
                                progress=bar.update)
        rows = {"deployed (plan-ibp)": (res, time.perf_counter() - t0)}
        if model is not None:
            for m in methods:
                t0 = time.perf_counter()
                r = certify_many(model, xs, ys, args.eps, steps, (m,),
                                 make_generator(args.seed + d), batch_size=args.batch_size,
                                 progress=bar.update)[m]
                rows[f"float ({m})"] = (r, time.perf_counter() - t0)
        for name, (r, sec) in rows.items():
            acc = per.setdefault(name, {"verified_error": [], "clean_accuracy": [],
                                        "seconds": []})
            acc["verified_error"].append(r.verified_error)
            acc["clean_accuracy"].append(r.clean_accuracy)
            acc["seconds"].append(sec)
    bar.close()
    summary: dict[str, Any] = {
        "plan": str(args.plan), "profile": plan.profile, "model": args.model,
        "data": str(args.data), "split": args.split, "n": n, "eps": args.eps,
        "cert_steps": steps, "draws": args.draws, "seed": args.seed,
        "convention": "verified iff every count-margin lower bound c_y - c_j > 0 over the T' "
                      "certified steps (plan) / rate margin (float); same uniform maps per draw",
        "methods": {}, "versions": library_versions(),
    }
    for name, r in per.items():
        ve = r["verified_error"]
        summary["methods"][name] = {
            "verified_error": sum(ve) / len(ve), "verified_error_per_draw": ve,
            "clean_accuracy": sum(r["clean_accuracy"]) / len(ve),
            "seconds": sum(r["seconds"]) / len(ve)}
    dep = summary["methods"]["deployed (plan-ibp)"]["verified_error"]
    floats = [v["verified_error"] for k, v in summary["methods"].items() if k.startswith("float")]
    summary["verdict"] = verdict_sentence(args.eps, min(floats) if floats else None, dep,
                                          plan.profile)
    print(format_plan_table(summary))
    if args.out:
        write_json_atomic(Path(args.out), summary)
        print(f"wrote {args.out}")
    return 0


def format_plan_table(summary: dict[str, Any]) -> str:
    rows = [f"certified  plan={summary['plan']} ({summary['profile']})  eps={summary['eps']}  "
            f"T'={summary['cert_steps']}  n={summary['n']}  draws={summary['draws']}",
            f"{'model':<22} {'verified err':>13} {'spread':>18} {'clean acc':>10} {'sec':>8}"]
    for m, r in summary["methods"].items():
        lo, hi = min(r["verified_error_per_draw"]), max(r["verified_error_per_draw"])
        rows.append(f"{m:<22} {r['verified_error']:>13.4f} {f'[{lo:.4f}, {hi:.4f}]':>18} "
                    f"{r['clean_accuracy']:>10.4f} {r['seconds']:>8.1f}")
    rows.append(summary["verdict"])
    return "\n".join(rows)
