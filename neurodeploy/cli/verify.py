"""``neurodeploy verify``: exact robustness of the deployed plan under the known draw.

Per example, with the host's Bernoulli map of that example (``encoding.host_uniform`` with
``--seed``, the same maps ``attack --threat known`` uses), decides whether any image in the
ε-ball ∩ [0, 1] changes the plan's decision (argmax of output spike counts, ties to the lowest
class, as the emulator decides): ``robust`` (a proof), ``non_robust`` (a counterexample image,
checked inside the ball in exact arithmetic and replayed on the emulator) or ``unknown``
(solver timeout — never counted robust). Example::

    neurodeploy verify --plan run/export/plan.npz --data digits --eps 0.1 --samples 50 \\
        --timeout 30 --out verify.json

``--draws K`` adds K fresh maps per example (unknown draw): the fraction robust over all
(example, draw) pairs is a lower bound on unknown-draw robust accuracy (with a 95 % Wilson
interval; unknowns count as not robust). ``--workers N`` runs shards on Ray (results equal
the serial run: every example's map depends on its index only). Every counterexample is
also replayed on the real Lava runner when the Lava environment is there (``--lava`` requires
it, ``--no-lava`` skips it): Lava must decide it as the emulator does. Exit codes: 0 done,
1 a counterexample that Lava decides differently (the JSON is written first), 2 bad input or
a plan field the encoding does not cover, 4 ``--lava`` without the Lava environment.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from neurodeploy.cli.argtypes import (
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    unit_float,
)
from neurodeploy.cli.common import add_common, add_model_args
from neurodeploy.scale.cli import add_scale_args, scale_options, shard_dir_for


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("verify", help="exact robustness of a deployment plan (known draw)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", default=None, help="deployment plan (.npz): the integer model")
    p.add_argument("--data", default="digits", help="digits, or an MNIST IDX folder")
    p.add_argument("--eps", type=unit_float, required=True, help="ℓ∞ budget ε on [0, 1] images")
    p.add_argument("--samples", type=positive_int, default=50, help="first N test examples (default 50)")
    p.add_argument("--timeout", type=positive_float, default=60.0,
                   help="solver seconds per example (default 60); a timeout is 'unknown'")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CP-SAT threads per example (default 1)")
    p.add_argument("--draws", type=nonneg_int, default=0,
                   help="K fresh maps per example for the unknown-draw lower bound (default 0)")
    p.add_argument("--no-search", dest="search", action="store_false",
                   help="skip the fast counterexample search, solver only (default: the search runs)")
    p.add_argument("--branch-seconds", type=nonneg_float, default=0.0, metavar="S",
                   help="branch-and-bound over pixel levels with the step bound at every node, "
                        "S seconds per example before the solver, half to each split rule "
                        "(default 0: off)")
    p.add_argument("--path", action="store_true",
                   help="the path bound on what the search leaves open (the state exact "
                        "across each pair of steps, chained along one input path), then its "
                        "refinement on the pairs a flip could use (three steps exact, then "
                        "windows of more steps up to the whole input: a proof, or a "
                        "counterexample where every free bit is enumerated); slower than the "
                        "step bound: 10 s to 3 min per open example on the digits plan")
    p.add_argument("--sandwich", action="store_true",
                   help="also plan S-IBP on the same maps: certified <= exact, per example")
    p.add_argument("--lava", default=None, action=argparse.BooleanOptionalAction,
                   help="replay every counterexample on the real Lava runner (its decision "
                        "must equal the emulator's, else exit 1); default: when the Lava "
                        "environment (.venv-lava) is there; --lava requires it (exit 4 "
                        "without), --no-lava skips it")
    p.add_argument("--attack", default=None, metavar="ATTACKS",
                   help="with --sandwich: the attack cascade (e.g. auto, auto-demo) on the "
                        "deployed classifier with the same maps: exact <= attack, per example")
    add_scale_args(p)
    add_common(p)
    add_model_args(p, required=False)  # --model: the float model (MILP) instead of --plan
    p.set_defaults(func=run)


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    import numpy as np

    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.verify.support import check_supported

    if not 0.0 <= args.eps <= 1.0 or math.isnan(args.eps):
        raise ConfigError(f"--eps {args.eps} must be in [0, 1]")
    if args.samples < 1 or args.timeout <= 0 or args.threads < 1 or args.draws < 0:
        raise ConfigError("--samples and --threads must be >= 1, --timeout > 0, --draws >= 0")
    plan = DeploymentPlan.load(args.plan)
    check_supported(plan)
    test = load_dataset(args.data).test.subset(args.samples)
    n_feat = int(np.prod(plan.input_shape))
    if test.x[0].numel() != n_feat:
        raise ConfigError(f"data samples have shape {tuple(test.x.shape[1:])}, the plan expects "
                          f"{tuple(plan.input_shape)}")
    return plan, test.x.reshape(len(test.y), -1).numpy(), test.y.numpy()


def _task(shard: Any, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Verify one shard's examples under map seed ``p['seeds'][draw]``."""
    from neurodeploy.encoding import host_uniform
    from neurodeploy.verify import verify_plan

    plan = p["plan"]
    idx = list(shard.indices)
    u = host_uniform(idx, p["seeds"][shard.grid], plan.num_steps, (p["x"].shape[1],)).numpy()
    res = verify_plan(plan, p["x"][idx], p["y"][idx], u, p["eps"], p["timeout"], p["threads"],
                      p["search"], p["seed"], indices=idx,
                      branch_seconds=p.get("branch_seconds", 0.0), path=p.get("path", False))
    return [r.record() for r in res.examples]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Every option the command ran with (paths as given), so a JSON says how it was made."""
    out: dict[str, Any] = {}
    for k, v in vars(args).items():
        if k == "func" or callable(v):
            continue
        out[k] = v if v is None or isinstance(v, (bool, int, float, str, list)) else str(v)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    ph = k / n
    d = 1 + z * z / n
    c = (ph + z * z / (2 * n)) / d
    h = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def run(args: argparse.Namespace) -> int:
    from neurodeploy.errors import ConfigError

    if (args.plan is None) == (args.model is None):
        raise ConfigError("verify needs exactly one of --plan (deployment plan) or --model "
                          "(float checkpoint)")
    return run_plan(args) if args.plan else run_float(args)


def run_float(args: argparse.Namespace) -> int:
    """``--model``: the float model under real arithmetic (MILP with big-M, HiGHS)."""
    from neurodeploy.cli.common import load_model
    from neurodeploy.data.core import load_dataset
    from neurodeploy.encoding import host_uniform
    from neurodeploy.errors import ConfigError
    from neurodeploy.models import library_versions
    from neurodeploy.training.metrics import write_json_atomic
    from neurodeploy.verify.float_milp import DELTA, float_layers, verify_float_example

    if not 0.0 <= args.eps <= 1.0 or args.samples < 1 or args.timeout <= 0:
        raise ConfigError("--eps must be in [0, 1], --samples >= 1, --timeout > 0")
    if args.lava or args.sandwich or args.draws or args.branch_seconds or args.path:
        raise ConfigError("--lava, --sandwich, --draws, --branch-seconds and --path apply to --plan "
                          "(the deployed model); the float model (--model) has none of them")
    test = load_dataset(args.data).test.subset(args.samples)
    model = load_model(args, tuple(test.x.shape[1:])).eval()
    float_layers(model)  # refuses what the MILP does not encode (exit 2) before any work
    x, y = test.x.reshape(len(test.y), -1).numpy(), test.y.numpy()
    T = model.config.num_steps
    u = host_uniform(list(range(len(y))), args.seed, T, (x.shape[1],)).numpy()
    t0 = time.perf_counter()
    ex = []
    for i in range(len(y)):
        r = verify_float_example(model, x[i], int(y[i]), u[:, i], args.eps, args.timeout)
        r.update(index=i, solver_seconds=r["seconds"], model=r.get("model", {}))
        ex.append(r)
    record = {"command": "verify", "options": _options(args), "model": str(args.model),
              "data": str(args.data),
              "n": len(y), "eps": args.eps, "seed": args.seed,
              "threat_model": "known draw (host map per example index, encoding.host_uniform)",
              "solver": "MILP (HiGHS), big-M; robust only with threshold margin "
                        f"delta={DELTA}; counterexamples replayed in the float model",
              "timeout_s": args.timeout, "wall_seconds": time.perf_counter() - t0,
              "summary": summarize(ex, args.eps), "examples": ex,
              "versions": library_versions()}
    record["plan"] = f"float model {args.model}"
    print(format_summary(record))
    if args.out:
        write_json_atomic(Path(args.out), record)
        print(f"wrote {args.out}")
    return 0


def run_plan(args: argparse.Namespace) -> int:
    """``--plan``: the deployed integer model (CP-SAT)."""
    from tqdm.auto import tqdm

    from neurodeploy.cli.common import progress_disabled
    from neurodeploy.models import library_versions
    from neurodeploy.scale.runner import run_sharded
    from neurodeploy.training.metrics import write_json_atomic

    plan, x, y = _load(args)
    scale = scale_options(args)
    if args.lava:  # required: refuse before any work
        from neurodeploy.errors import EnvironmentMissingError
        from neurodeploy.sims.lava_env import lava_missing_reason

        reason = lava_missing_reason()
        if reason is not None:
            raise EnvironmentMissingError(f"--lava: {reason}")
    n = len(y)
    seeds = [args.seed] + [args.seed + 1 + k for k in range(args.draws)]
    payload = {"plan": plan, "x": x, "y": y, "eps": args.eps, "timeout": args.timeout,
               "threads": args.threads, "search": args.search, "seed": args.seed,
               "seeds": seeds, "branch_seconds": args.branch_seconds, "path": args.path}
    bar = tqdm(total=n * len(seeds), desc="verify", disable=progress_disabled(args.quiet))
    t0 = time.perf_counter()
    results = run_sharded(
        _task, n, scale.shard_size if scale else n, payload=payload, grid=list(range(len(seeds))),
        workers=scale.workers if scale else None, address=scale.address if scale else None,
        state_dir=shard_dir_for(args.out) if scale else None,
        fingerprint=["verify", str(args.plan), args.eps, args.timeout, args.threads,
                     args.search, seeds, x, y, args.branch_seconds, args.path],
        progress=bar.update)
    bar.close()
    per_draw: list[list[dict[str, Any]]] = [[] for _ in seeds]
    for shard_res, d in zip(results, _grid_of(n, scale, len(seeds)), strict=True):
        per_draw[d].extend(shard_res)
    summary = summarize(per_draw[0], args.eps)
    record: dict[str, Any] = {
        "command": "verify", "options": _options(args), "plan": str(args.plan),
        "profile": plan.profile,
        "data": str(args.data), "n": n, "eps": args.eps, "seed": args.seed,
        "threat_model": "known draw (host map per example index, encoding.host_uniform)",
        "solver": "CP-SAT (OR-Tools)", "timeout_s": args.timeout, "threads": args.threads,
        "search": args.search, "branch_seconds": args.branch_seconds, "path": args.path,
        "scale": scale.to_dict() if scale else None,
        "wall_seconds": time.perf_counter() - t0, "summary": summary,
        "examples": per_draw[0], "versions": library_versions()}
    if args.sandwich:
        record["sandwich"] = _sandwich(args, plan, x, y, per_draw[0])
    if args.draws:
        record["unknown_draw"] = unknown_draw_bound(per_draw[1:], seeds[1:])
    record["lava_replay"] = _lava_replay(args, plan, x.shape[1], per_draw[0])
    print(format_summary(record))
    if args.out:
        write_json_atomic(Path(args.out), record)
        print(f"wrote {args.out}")
    if record["lava_replay"].get("disagree"):
        from neurodeploy.verify.lava_replay import check_replay

        check_replay(record["lava_replay"])  # exit 1, after the evidence is written
    return 0


def _lava_replay(args: argparse.Namespace, plan: Any, n_feat: int,
                 examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Counterexamples of the known draw on Lava (:mod:`neurodeploy.verify.lava_replay`):
    ``--lava`` requires the Lava environment, ``--no-lava`` skips, default: when it is there."""
    from neurodeploy.encoding import host_uniform
    from neurodeploy.errors import EnvironmentMissingError
    from neurodeploy.sims.lava_env import lava_missing_reason, warn_lava_missing
    from neurodeploy.verify.lava_replay import replay_on_lava

    for e in examples:
        e["lava_replayed"] = False
    if args.lava is False:
        return {"run": False, "why": "--no-lava"}
    if not any(e.get("counterexample") is not None for e in examples):
        return {"run": False, "why": "no counterexample to replay", "replayed": 0}
    reason = lava_missing_reason()
    if reason is not None:
        if args.lava:
            raise EnvironmentMissingError(f"--lava: {reason}")
        warn_lava_missing("verify's counterexample replay")
        return {"run": False, "why": reason}
    u = host_uniform(list(range(len(examples))), args.seed, plan.num_steps, (n_feat,)).numpy()
    return {"run": True, **replay_on_lava(plan, examples, u)}  # columns of u: the indices


def _sandwich(args: argparse.Namespace, plan: Any, x: Any, y: Any,
              examples: list[dict[str, Any]]) -> dict[str, Any]:
    from neurodeploy.encoding import host_uniform
    from neurodeploy.verify.sandwich import attack_robust, plan_ibp_certified, sandwich

    u = host_uniform(list(range(len(y))), args.seed, plan.num_steps, (x.shape[1],)).numpy()
    cert = plan_ibp_certified(plan, x, y, u, args.eps)
    att = attack_robust(plan, x, y, u, args.eps, args.attack, args.seed) if args.attack else None
    out = sandwich(cert, [e["status"] for e in examples], att)
    out["certify_method"] = "plan-ibp (same level box)"
    out["attacks"] = args.attack
    return out


def _grid_of(n: int, scale: Any, draws: int) -> list[int]:
    from neurodeploy.scale.shards import make_shards

    return [s.grid for s in make_shards(n, scale.shard_size if scale else n, list(range(draws)))]


def summarize(examples: list[dict[str, Any]], eps: float) -> dict[str, Any]:
    """Counts, decided fraction, exact robust accuracy (or its interval) and times."""
    n = len(examples)
    counts = {s: sum(e["status"] == s for e in examples)
              for s in ("robust", "non_robust", "unknown")}
    lo, hi = counts["robust"] / n, (counts["robust"] + counts["unknown"]) / n
    sizes = [e["model"].get("variables", e["model"].get("columns", 0))
             for e in examples if e.get("model")]
    return {"eps": eps, "n": n, "counts": counts,
            "decided_fraction": 1 - counts["unknown"] / n,
            "robust_accuracy": lo if lo == hi else None, "robust_accuracy_interval": [lo, hi],
            "how": {h: sum(e["how"] == h for e in examples)
                    for h in sorted({e["how"] for e in examples})},
            "seconds_total": sum(e["seconds"] for e in examples),
            "seconds_per_example": sum(e["seconds"] for e in examples) / n,
            "solver_seconds": sum(e["solver_seconds"] for e in examples),
            "max_model_variables": max(sizes, default=0),
            "unknown_scores": [{"index": e["index"], "search_score": e.get("search_score"),
                                "bound_score": e.get("bound_score")}
                               for e in examples if e["status"] == "unknown"]}


def unknown_draw_bound(draws: list[list[dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    """Known-draw robustness on fresh maps bounds unknown-draw robust accuracy from below: an
    image chosen without seeing the map is classified correctly whenever the map drawn makes
    the whole ball robust. Mean over (example, draw) pairs; 95 % Wilson interval (pairs taken
    as independent); unknown verdicts count as not robust."""
    flat = [e for d in draws for e in d]
    k = sum(e["status"] == "robust" for e in flat)
    lo, hi = wilson(k, len(flat))
    return {"map_seeds": seeds, "pairs": len(flat), "robust_pairs": k,
            "unknown_pairs": sum(e["status"] == "unknown" for e in flat),
            "lower_bound": k / max(len(flat), 1), "ci95": [lo, hi]}


def _unknown_line(scores: list[dict[str, Any]], shown: int = 8) -> str:
    """The undecided examples' sandwich ``search best ≤ max_{j≠y}(c_j − c_y + ½[j < y]) ≤ step
    bound`` (a flip ⇔ > 0; "?" where a side did not run)."""
    def fmt(v: float | None) -> str:
        return "?" if v is None else f"{v:g}"

    items = [f"#{e['index']} [{fmt(e['search_score'])}, {fmt(e['bound_score'])}]"
             for e in scores[:shown]]
    more = f"  (+{len(scores) - shown} more in the JSON)" if len(scores) > shown else ""
    return ("unknown: best score found <= max score <= step bound (a flip iff > 0): "
            + "  ".join(items) + more)


def format_summary(rec: dict[str, Any]) -> str:
    s = rec["summary"]
    c = s["counts"]
    acc = (f"{s['robust_accuracy']:.4f}" if s["robust_accuracy"] is not None else
           "[{:.4f}, {:.4f}]".format(*s["robust_accuracy_interval"]))
    lines = [f"exact verification  plan={rec['plan']}  eps={rec['eps']}  n={rec['n']}  "
             f"threat model: known draw",
             f"robust {c['robust']}  non_robust {c['non_robust']}  unknown {c['unknown']}  "
             f"(decided {s['decided_fraction']:.0%}; {s['seconds_per_example']:.2f} s/example)",
             f"exact robust accuracy {acc}"]
    if s.get("unknown_scores"):
        lines.append(_unknown_line(s["unknown_scores"]))
    if "sandwich" in rec:
        w = rec["sandwich"]
        att = f" <= attack {w['attack']:.4f}" if "attack" in w else ""
        lines.append(f"sandwich: certified {w['certified']:.4f} <= exact "
                     f"[{w['exact'][0]:.4f}, {w['exact'][1]:.4f}]{att}"
                     + ("" if w["consistent"] else f"  VIOLATED: {w['violations']}"))
    lava = rec.get("lava_replay") or {}
    if lava.get("run"):
        lines.append(f"Lava replay of counterexamples: {lava['agree']} of {lava['replayed']} "
                     f"decided as on the emulator"
                     + ("" if not lava["disagree"] else f"  DISAGREE: {lava['disagree']}"))
    if "unknown_draw" in rec:
        u = rec["unknown_draw"]
        lines.append(f"unknown draw: robust accuracy >= {u['lower_bound']:.4f} "
                     f"(95% CI [{u['ci95'][0]:.4f}, {u['ci95'][1]:.4f}], {u['pairs']} pairs)")
    return "\n".join(lines)
