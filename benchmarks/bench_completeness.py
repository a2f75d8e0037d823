"""Benchmark (issue 21, point 3): completeness of the deployed-side ``auto`` against the exact verifier.

On one deployment plan, the same examples (the first ``--samples`` of the test split) and the same
host maps (:func:`neurodeploy.encoding.host_uniform`, seed 0 — the known draw):

1. **attack**: the audit's deployed-side cascade — ``attack_specs`` of the ``--preset`` under the
   known draw, through ``deployed_specs`` (spike-set searches on the emulator forward with the
   hardware twin's gradient) on a :class:`~neurodeploy.audit.deployed.DeployedClassifier`;
2. **verifier**: :func:`neurodeploy.verify.plan_verify.verify_plan` (CP-SAT, ``--timeout`` s per
   example, its own counterexample search on) — ``robust`` (a proof), ``non_robust`` (an
   exact-checked, replayed counterexample) or ``unknown``.

With ``NR`` the examples the verifier proves non-robust and ``B`` those the attack breaks,

    completeness = |B ∩ NR| / |NR|        (goal ≥ 99 %)

on the decided examples (the decided fraction is reported beside it); soundness is checked too:
an example the attack breaks that the verifier proves robust is a bug (reported, never expected).
Every NR example the attack missed is listed with how the verifier found it (clean / search /
enumeration / solver). Results: ``--out`` JSON and a Markdown row per ε (``--append FILE``).

    neurodeploy train --data digits --arch FC256-FC10 --epochs 10 --out runs/digits
    neurodeploy export --model runs/digits/model.pt --profile loihi2 --out runs/digits/export
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_completeness.py \\
        --plan runs/digits/export/plan.npz --data digits --samples 50 --eps 0.05,0.1 --timeout 10
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def load(args: argparse.Namespace) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The plan, flat images ``[N, P]``, labels and host maps ``[T, N, P]`` (seed 0)."""
    from neurodeploy.data.core import load_dataset
    from neurodeploy.encoding import host_uniform
    from neurodeploy.exporters.plan import DeploymentPlan

    plan = DeploymentPlan.load(args.plan)
    test = load_dataset(args.data).test.subset(args.samples)
    x = test.x.reshape(len(test.y), -1).numpy().astype(np.float32)
    y = test.y.numpy()
    u = host_uniform(list(range(len(y))), 0, plan.num_steps, (x.shape[1],)).numpy()
    return plan, x, y, u


def attack(plan: Any, x: np.ndarray, y: np.ndarray, u: np.ndarray, eps: list[float],
           preset: str, seed: int = 0) -> dict[str, Any]:
    """The audit's deployed-side cascade under the known draw (the engine's ``seed``): robust
    flags per ε, CPU s."""
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.audit.run import AuditConfig, attack_specs, deployed_specs
    from neurodeploy.encoding import KnownDrawEncoder
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.twin import HardwareTwin

    budget = "demo" if preset == "auto-demo" else "full"
    specs, _ = attack_specs(AuditConfig(attacks=("auto",), preset_budget=budget), False, "known")
    specs, dropped = deployed_specs(specs)
    T, shape = plan.num_steps, tuple(plan.input_shape)
    xt = torch.as_tensor(x).reshape(len(y), *shape)
    ut = torch.as_tensor(u).reshape(T, len(y), *shape)
    clf = DeployedClassifier(Emulator(plan), HardwareTwin(plan), KnownDrawEncoder(T, ut))
    t = time.process_time()
    r = evaluate_robustness(clf, xt, torch.as_tensor(y).long(), specs, eps, seed=seed,
                            quiet=True)
    cpu = time.process_time() - t
    return {"cpu_s": cpu, "dropped": dropped, "labels": list(r.attack_names),
            "robust": {str(e): [bool(v) for v in r.robust[float(e)].all(0)] for e in eps},
            "broken_by": {str(e): r.broken_by[float(e)] for e in eps}}


def verify(plan: Any, x: np.ndarray, y: np.ndarray, u: np.ndarray, eps: float,
           timeout: float) -> dict[str, Any]:
    """The verifier's verdicts (status and how, per example), CPU and wall seconds."""
    from neurodeploy.verify.plan_verify import verify_plan

    t, w = time.process_time(), time.perf_counter()
    res = verify_plan(plan, x, y, u, eps, timeout=timeout)
    return {"cpu_s": time.process_time() - t, "wall_s": time.perf_counter() - w,
            "status": [r.status for r in res.examples], "how": [r.how for r in res.examples],
            "summary": res.summary()}


def verify_verdicts(paths: list[str]) -> dict[str, Any]:
    """Verdicts of ``neurodeploy verify`` JSONs in :func:`verify`'s form, keyed by their ε."""
    out: dict[str, Any] = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        ex = sorted(d["examples"], key=lambda e: e["index"])
        out[str(float(d["eps"]))] = {"verifier": {
            "cpu_s": None, "wall_s": float(d["wall_seconds"]), "source": Path(p).name,
            "status": [e["status"] for e in ex], "how": [e["how"] for e in ex],
            "summary": d["summary"]}}
    return out


def decided_rows(verdicts: dict[str, Any], eps: list[float], n: int) -> list[int]:
    """The examples decided (robust or non-robust) at some ε of ``eps``."""
    return [i for i in range(n) if any(
        verdicts[str(e)]["verifier"]["status"][i] != "unknown" for e in eps if str(e) in verdicts)]


def compare(robust: list[bool], ver: dict[str, Any]) -> dict[str, Any]:
    """Completeness ``|B ∩ NR| / |NR|`` (module docstring), soundness violations, misses."""
    st = ver["status"]
    nr = [i for i, s in enumerate(st) if s == "non_robust"]
    broken = [i for i, r in enumerate(robust) if not r]
    missed = [i for i in nr if robust[i]]
    unsound = [i for i in broken if st[i] == "robust"]
    decided = sum(s != "unknown" for s in st)
    return {"n": len(st), "decided": decided, "proven_non_robust": len(nr),
            "proven_robust": sum(s == "robust" for s in st),
            "found": len(nr) - len(missed),
            "completeness": (len(nr) - len(missed)) / len(nr) if nr else None,
            "missed": [{"index": i, "how": ver["how"][i]} for i in missed],
            "broken_unknown": [i for i in broken if st[i] == "unknown"],
            "unsound": unsound}


def row(name: str, eps: float, c: dict[str, Any], atk_cpu: float, ver: dict[str, Any]) -> str:
    comp = "–" if c["completeness"] is None else f"{100 * c['completeness']:.1f} %"
    missed = ", ".join(f"{m['index']} ({m['how']})" for m in c["missed"]) or "none"
    return (f"| {name} | {eps:g} | {c['n']} | {c['decided']}/{c['n']} | "
            f"{c['proven_robust']}/{c['proven_non_robust']} | {c['found']}/"
            f"{c['proven_non_robust']} | **{comp}** | {missed} | "
            f"{len(c['broken_unknown'])} | {len(c['unsound'])} | {atk_cpu:.0f} | "
            f"{ver['wall_s']:.0f} |")


HEADER = ("| plan | ε | n | decided | proven robust / non-robust | auto found | completeness | "
          "missed (verifier's how) | auto breaks among unknown | unsound | auto CPU s (all ε) | "
          "verifier wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--name", default=None, help="the plan's name in the table")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--eps", default="0.05,0.1")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--preset", default="auto", choices=("auto", "auto-demo"))
    ap.add_argument("--out", default="runs/completeness.json")
    ap.add_argument("--append", default=None)
    ap.add_argument("--verdicts", default=None,
                    help="reuse the verifier's verdicts of an earlier --out JSON (same plan, data, "
                         "n, ε, timeout); only the attack runs")
    ap.add_argument("--verify-json", default=None,
                    help="comma-separated `neurodeploy verify` result JSONs (same plan, data, n; "
                         "one per ε, matched by their eps): their verdicts are used, only the "
                         "attack runs")
    ap.add_argument("--seed", type=int, default=0,
                    help="the attack engine's seed (the random searches: completeness over seeds)")
    ap.add_argument("--only-decided", action="store_true",
                    help="attack only the examples some ε's verdict decided (needs --verdicts or "
                         "--verify-json); the host maps stay those of the example's index")
    args = ap.parse_args()
    torch.set_num_threads(1)
    eps = [float(e) for e in args.eps.split(",")]
    if args.samples < 1 or args.timeout <= 0 or not all(0.0 < e <= 1.0 for e in eps):
        print("error: --samples >= 1, --timeout > 0 and every --eps in (0, 1] are required",
              file=sys.stderr)
        return 2
    load0 = os.getloadavg()[0]
    plan, x, y, u = load(args)
    old = json.loads(Path(args.verdicts).read_text())["per_eps"] if args.verdicts else {}
    old.update(verify_verdicts(args.verify_json.split(",")) if args.verify_json else {})
    rows = decided_rows(old, eps, len(y)) if args.only_decided else list(range(len(y)))
    atk = attack(plan, x[rows], y[rows], u[:, rows], eps, args.preset, args.seed)
    atk["rows"] = rows
    for e in eps:  # rows not attacked count as robust (not broken) and are reported so
        flags = [True] * len(y)
        for k, r in zip(rows, atk["robust"][str(e)], strict=True):
            flags[k] = r
        atk["robust"][str(e)] = flags
    rec: dict[str, Any] = {"plan": Path(args.plan).name, "data": args.data, "n": len(y),
                           "threat": "known draw (host_uniform, seed 0)", "preset": args.preset,
                           "attack": atk, "attack_seed": args.seed, "timeout_s": args.timeout,
                           "per_eps": {}}
    name = args.name or Path(args.plan).parent.name
    lines = [HEADER]
    print(HEADER, flush=True)
    for e in eps:
        ver = old[str(e)]["verifier"] if str(e) in old else verify(plan, x, y, u, e, args.timeout)
        c = compare(atk["robust"][str(e)], ver)
        rec["per_eps"][str(e)] = {"verifier": ver, "comparison": c}
        lines.append(row(name, e, c, atk["cpu_s"], ver))
        print(lines[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1))
    head = (f"\n### bench_completeness.py — {datetime.date.today()}\n\nCommand: `.venv/bin/python "
            f"benchmarks/bench_completeness.py {' '.join(sys.argv[1:])}`  \nMachine: "
            f"{platform.node()} ({os.cpu_count()} cores), 1 thread; load average at start "
            f"{load0:.1f}, at end {os.getloadavg()[0]:.1f}. Known draw; attack preset "
            f"`{args.preset}` (deployed side: emulator forward, twin gradient); verifier "
            f"timeout {args.timeout:g} s.\n\n")
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(head + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
