"""Before/after timing of the attack and certified-training work on two source trees.

Issue 12 (one kernel, one format, one backend contract) must not make any benchmark slower by
more than 5 %. This script times the same workloads on an *old* tree (e.g. a ``git worktree``
of the commit before the refactor, with its own virtual environment whose editable
``neurodeploy`` points at that tree) and on this tree, in fresh child processes that alternate
old / new round after round, so a change of machine load hits both sides alike.

Workloads (one torch thread each, shared data beside the repository):

- ``attack``: APGD-CE-100 and PGD-10 (fused LIF gradient path, the default) on the certify_snn
  ``FC_T_3_eps_0.06`` checkpoint with a fixed Bernoulli draw, ``--samples`` MNIST test images,
  ε = 0.1 — the workload of ``bench_attacks.py --model certify``;
- ``pgd``: the PGD-10 half of ``attack`` alone (a short workload: use more samples);
- ``certified``: ``--batches`` training steps (loss, backward, clip, SGD step) of S-CROWN and
  S-IBP certified training at T' = 3 and of plain BPTT on MNIST FC512-FC256-FC10 — the
  workload of ``bench_certified.py``.

Each child prints one JSON line of seconds per workload; the parent reports, per workload, the
median over rounds for each side and the ratio new / old (target ≤ 1.05)::

    .venv/bin/python benchmarks/bench_before_after.py --old-python OLD_PYTHON \\
        [--rounds 5] [--samples 100] [--batches 10] [--append benchmarks/RESULTS.md]

``OLD_PYTHON`` is an interpreter whose ``neurodeploy`` is the old tree, e.g. a worktree of the
old commit beside this one (``git worktree add ../nd-old 9c712e2``) with an environment of its
own in which that tree is installed editable (``../nd-old/.venv/bin/python``; check with
``OLD_PYTHON -c "import neurodeploy; print(neurodeploy.__file__)"``). The children run with
the root folder as working directory, so neither tree is picked up from the current folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _child(what: str, samples: int, batches: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    out: dict[str, float] = {}
    if what in ("attack", "pgd"):
        from neurodeploy.attacks import make_attack
        from neurodeploy.classifier import SNNClassifier
        from neurodeploy.data.idx import load_idx_split
        from neurodeploy.encoding import FixedBernoulliEncoder
        from neurodeploy.models import ModelConfig, import_state_dict

        m = import_state_dict(SHARED / "reference_models/certify_snn/FC_T_3_eps_0.06.pth.tar",
                              ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate"))
        test = load_idx_split(SHARED / "data/mnist").test
        net = SNNClassifier(m, FixedBernoulliEncoder.draw(m.num_steps, (1, 28, 28), seed=0)).eval()
        x, y, eps = test.x[:samples], test.y[:samples], 0.1
        attacks = [("PGD-10", make_attack("pgd", n_iter=10, step_size=eps / 4))]
        if what == "attack":
            attacks.insert(0, ("APGD-CE-100", make_attack("apgd-ce", n_iter=100)))
        for name, atk in attacks:
            atk.perturb(net, x[:8], y[:8], eps, torch.Generator().manual_seed(1))  # warm-up
            t = time.perf_counter()
            atk.perturb(net, x, y, eps, torch.Generator().manual_seed(0))
            out[name] = time.perf_counter() - t
    else:
        from neurodeploy.classifier import SNNClassifier
        from neurodeploy.data.core import load_dataset
        from neurodeploy.models import ModelConfig, build_model
        from neurodeploy.training.defense import BatchContext, make_defense

        split = load_dataset(str(SHARED / "data/mnist"))
        torch.manual_seed(0)
        base = build_model(ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate"))
        variants = {"plain BPTT": make_defense("none")}
        for m in ("crown", "ibp"):
            variants[f"S-{m.upper()} T'=3"] = make_defense("certified", {
                "cert_method": m, "cert_cert_steps": 3, "cert_eps": 0.06, "cert_ramp": 0.0,
                "cert_kappa_start": 0.4, "cert_kappa_final": 0.4})
        perm = torch.randperm(len(split.train), generator=torch.Generator().manual_seed(0))
        for name, defense in variants.items():
            model = build_model(base.config)
            model.load_state_dict(base.state_dict())
            clf = SNNClassifier(model, seed=0)
            opt = torch.optim.SGD(model.parameters(), lr=5e-4, momentum=0.9)
            total = 0.0
            for b in range(batches + 1):  # batch 0 is a warm-up, not timed
                idx = perm[b * 128:(b + 1) * 128]
                t = time.perf_counter()
                loss, _ = defense.loss(BatchContext(clf, split.train.x[idx], split.train.y[idx],
                                                    epoch=0, progress=1.0))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
                if b:
                    total += time.perf_counter() - t
            out[name] = total
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-python", required=True, help="interpreter whose neurodeploy is the old tree")
    p.add_argument("--new-python", default=sys.executable)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--workloads", default="attack,certified")
    p.add_argument("--append", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.samples, args.batches)))
        return 0
    sides = {"old": args.old_python, "new": args.new_python}
    where = {}
    for side, py in sides.items():
        where[side] = subprocess.run([py, "-c", "import neurodeploy; print(neurodeploy.__file__)"],
                                     capture_output=True, text=True, check=True, cwd="/").stdout.strip()
        print(f"{side}: {where[side]}", flush=True)
    if where["old"] == where["new"]:
        print("error: both interpreters import the same neurodeploy", file=sys.stderr)
        return 2
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for what in args.workloads.split(","):
            for side in order:
                res = subprocess.run([sides[side], os.path.abspath(__file__), "--old-python", "-",
                                      "--child", what, "--samples", str(args.samples),
                                      "--batches", str(args.batches)],
                                     capture_output=True, text=True, check=True, cwd="/")
                for name, sec in json.loads(res.stdout.strip().splitlines()[-1]).items():
                    times.setdefault((name, side), []).append(sec)
                print(f"round {r + 1}/{args.rounds} {what} {side}: "
                      f"{res.stdout.strip().splitlines()[-1]}", flush=True)
    names = list(dict.fromkeys(n for n, _ in times))
    load = os.getloadavg()
    lines = [f"### bench_before_after.py — {datetime.date.today().isoformat()}", "",
             f"Command: `.venv/bin/python benchmarks/bench_before_after.py --old-python OLD "
             f"--rounds {args.rounds} --samples {args.samples} --batches {args.batches}`  ",
             f"Old tree: `{Path(where['old']).parents[1]}`; new tree: "
             f"`{Path(where['new']).parents[1]}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, 1 torch thread per child, "
             f"load average at the end {load[0]:.2f}; seconds = median over {args.rounds} rounds "
             f"(old/new alternating, each in a fresh process)", "",
             "| workload | old s (median) | new s (median) | new / old (median) | "
             "old s (best) | new s (best) | new / old (best) | spread of a side (max/min) |",
             "|---|---|---|---|---|---|---|---|"]
    worst = {"median": 0.0, "best": 0.0}
    for n in names:
        old, new = times[(n, "old")], times[(n, "new")]
        o, w = statistics.median(old), statistics.median(new)
        ob, wb = min(old), min(new)
        worst["median"] = max(worst["median"], w / o)
        worst["best"] = max(worst["best"], wb / ob)
        spread = max(max(old) / ob, max(new) / wb)
        lines.append(f"| {n} | {o:.3f} | {w:.3f} | {w / o:.3f} | {ob:.3f} | {wb:.3f} | "
                     f"{wb / ob:.3f} | {spread:.2f} |")
    lines.append(f"\nWorst ratio new / old: {worst['median']:.3f} on medians, "
                 f"{worst['best']:.3f} on best runs (target ≤ 1.05: "
                 f"{'met' if max(worst.values()) <= 1.05 else 'NOT met'} on both)")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
