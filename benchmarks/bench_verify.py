"""Exact verification speed: decided fraction and time per example of ``neurodeploy verify``.

Runs the command once per configuration (one after another: the machine is shared), reads
each JSON and prints a Markdown table (decided fraction, robust / non-robust / unknown, how
each was decided, seconds per example, wall time). Configurations (``--only`` picks some):

- ``digits``: the digits demo plan (FC256-FC10, loihi2) at ε 0.1, 50 examples, 2 CP-SAT
  threads; the goal is ≥ 95 % decided within 10 minutes in total;
- ``mnist``: certify_snn's certified and plain MNIST models (784-512-256-10, exported with
  ``--profile loihi2``) at ε 0.05 and 0.1, serial and with ``--workers``.

``--compare N`` instead measures CP-SAT against HiGHS on identical models (the solver choice).

Make the plans first, e.g.::

    neurodeploy train --data digits --arch FC256-FC10 --epochs 10 --out runs/digits
    neurodeploy export --model runs/digits/model.pt --profile loihi2 --out runs/digits/export
    neurodeploy export --model <certify_snn>/FC_T_3_eps_0.06.pth.tar --arch FC512-FC256-FC10 \\
        --input-shape 1,28,28 --readout count --profile loihi2 --out runs/cert
    python benchmarks/bench_verify.py --digits-plan runs/digits/export/plan.npz \\
        --mnist-plan certified=runs/cert/plan.npz --mnist-plan plain=runs/plain/plan.npz \\
        --mnist-data <mnist folder> --out-dir runs/bench_verify

``--ray-only`` skips the serial MNIST runs; ``--results-dir benchmarks/results/verify`` also
saves every run's per-example verdicts (counterexample images above 256 pixels left out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

#: counterexample images larger than this many pixels are left out of the saved verdicts
MAX_SAVED_IMAGE = 256


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(name: str, args: list[str], out: Path) -> dict:
    """One ``neurodeploy verify`` run; its JSON plus the wall time, the CPU seconds of the
    command (its own process tree as waited for: Ray's worker processes are not included)
    and the load before and after."""
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _child_cpu()
    cmd = [sys.executable, "-m", "neurodeploy", "verify", *args, "--out", str(out), "-q"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    rec = json.loads(out.read_text())
    rec["bench"] = {"name": name, "wall_s": time.perf_counter() - t0,
                    "cpu_s": _child_cpu() - c0, "load_before": load,
                    "load_after": os.getloadavg()[0],
                    "command": " ".join(["neurodeploy verify", *args])}
    return rec


def save_verdicts(rec: dict, path: Path) -> None:
    """The run's JSON without counterexample images above :data:`MAX_SAVED_IMAGE` pixels."""
    keep = json.loads(json.dumps(rec))
    for e in keep["examples"]:
        if len(e.get("counterexample", ())) > MAX_SAVED_IMAGE:
            e.pop("counterexample")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keep, indent=1))


def row(rec: dict) -> str:
    s, b = rec["summary"], rec["bench"]
    c = s["counts"]
    acc = (f"{s['robust_accuracy']:.2f}" if s["robust_accuracy"] is not None
           else "[{:.2f}, {:.2f}]".format(*s["robust_accuracy_interval"]))
    how = ", ".join(f"{k} {v}" for k, v in s["how"].items())
    return (f"| {b['name']} | {rec['eps']} | {rec['n']} | {s['decided_fraction']:.0%} | "
            f"{c['robust']}/{c['non_robust']}/{c['unknown']} | {acc} | {how} | "
            f"{s['seconds_per_example']:.1f} | {b['wall_s']:.0f} | {b.get('cpu_s', 0):.0f} | "
            f"{b['load_before']:.1f}–{b.get('load_after', b['load_before']):.1f} |")


HEADER = ("| run | ε | n | decided | robust/non-robust/unknown | exact robust acc. | how | "
          "s/example | wall s | CPU s | load |\n|---|---|---|---|---|---|---|---|---|---|---|")


def compare_solvers(plan_path: str, data: str, eps: float, n: int, timeout: float) -> str:
    """CP-SAT (1 thread) vs HiGHS (the same model translated, :mod:`neurodeploy.verify.to_milp`)
    on every example among the first ``n`` that reaches the solver stage (clean-correct, not
    decided by intervals); a Markdown table of status and seconds per example."""

    from neurodeploy.data.core import load_dataset
    from neurodeploy.encoding import host_uniform
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.verify.intmodel import encode
    from neurodeploy.verify.levels import pixel_levels
    from neurodeploy.verify.plan_verify import solve
    from neurodeploy.verify.search import emulator_predict
    from neurodeploy.verify.to_milp import solve_highs_subprocess

    plan = DeploymentPlan.load(plan_path)
    emu = Emulator(plan)
    test = load_dataset(data).test.subset(n)
    x, y = test.x.reshape(n, -1).numpy(), test.y.numpy()
    u = host_uniform(list(range(n)), 0, plan.num_steps, (x.shape[1],)).numpy()
    lines = [f"eps {eps}, timeout {timeout} s, load {os.getloadavg()[0]:.1f}",
             "| example | free input bits | CP-SAT | s | HiGHS | s |", "|---|---|---|---|---|---|"]
    for i in range(n):
        lv = pixel_levels(x[i], u[:, i], eps)
        if emulator_predict(emu, plan, lv.spikes(lv.clean)[:, None, :])[0] != y[i]:
            continue
        enc = encode(plan, lv, int(y[i]))
        if not enc.targets:
            continue
        st_c, _, sec_c = solve(enc, lv, timeout, 1)
        try:
            st_h, sec_h = solve_highs_subprocess(enc.ops.model, timeout)
        except Exception as exc:  # noqa: BLE001  (a model the translation refuses)
            st_h, sec_h = f"n/a ({type(exc).__name__})", float("nan")
        lines.append(f"| {i} | {enc.stats['input_bits']} | {st_c} | {sec_c:.1f} | {st_h} | "
                     f"{sec_h:.1f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _save(results_dir: str | None, rec: dict, name: str) -> None:
    if results_dir:
        save_verdicts(rec, Path(results_dir) / name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits-plan", default=None)
    p.add_argument("--mnist-plan", action="append", default=[], metavar="NAME=PLAN")
    p.add_argument("--mnist-data", default=None)
    p.add_argument("--samples", type=int, default=None, help="override n (default 50 / 100)")
    p.add_argument("--timeout", type=float, default=10.0, help="solver s per example")
    p.add_argument("--workers", type=int, default=2, help="Ray workers for the sharded runs")
    p.add_argument("--eps", default="0.05,0.1", help="MNIST budgets")
    p.add_argument("--out-dir", default="bench_verify_out")
    p.add_argument("--compare", type=int, default=0, metavar="N",
                   help="instead: CP-SAT vs HiGHS on the digits plan's first N examples")
    p.add_argument("--compare-eps", type=float, default=0.05)
    p.add_argument("--ray-only", action="store_true",
                   help="MNIST: only the Ray-sharded run (no serial run)")
    p.add_argument("--results-dir", default=None,
                   help="also save each run's verdicts here (large images left out)")
    a = p.parse_args(argv)
    if a.compare:
        print(compare_solvers(a.digits_plan, "digits", a.compare_eps, a.compare, a.timeout))
        return 0
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recs = []
    if a.digits_plan:
        n = a.samples or 50
        recs.append(run_one("digits FC256-FC10, 2 threads", [
            "--plan", a.digits_plan, "--data", "digits", "--eps", "0.1", "--samples", str(n),
            "--timeout", str(a.timeout), "--threads", "2"], out / "digits_e0.1.json"))
        print(row(recs[-1]), flush=True)
        _save(a.results_dir, recs[-1], "digits_e0.1.json")
    for spec in a.mnist_plan:
        name, plan = spec.split("=", 1)
        for eps in a.eps.split(","):
            n = a.samples or 100
            base = ["--plan", plan, "--data", a.mnist_data, "--eps", eps, "--samples", str(n),
                    "--timeout", str(a.timeout)]
            if not a.ray_only:
                recs.append(run_one(f"MNIST {name}, serial", base, out / f"{name}_{eps}.json"))
                print(row(recs[-1]), flush=True)
                _save(a.results_dir, recs[-1], f"mnist_{name}_e{eps}_n{n}.json")
            recs.append(run_one(f"MNIST {name}, {a.workers} Ray workers",
                                [*base, "--workers", str(a.workers), "--shard-size",
                                 str(max(1, n // (2 * a.workers)))],
                                out / f"{name}_{eps}_ray.json"))
            print(row(recs[-1]), flush=True)
            _save(a.results_dir, recs[-1], f"mnist_{name}_e{eps}_n{n}_ray.json")
    print(HEADER)
    for r in recs:
        print(row(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
