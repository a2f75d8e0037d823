"""Probe (issue 21, round 4): ``auto``'s spike-flip searches alone on given points, per seed, with
the early abort on and off — is a point's loss the abort or the random trajectory?

Each search runs as its ``auto`` spec (``presets.preset("auto")``) on the chosen test images only
(known draw, as ``bench_flips.py``), from the clean images, with generator seeds 0…``--seeds``−1;
with per-example random streams a point's result does not depend on the other points chosen.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_flips_seeds.py --model plain --eps 0.05 \\
        --rows 34,96,104,107,197
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flips import build  # noqa: E402

from neurodeploy.attacks import is_correct, make_attack  # noqa: E402
from neurodeploy.attacks.presets import preset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="plain")
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--rows", required=True, help="comma-separated test-split indices (< 200)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [int(v) for v in args.rows.split(",")]
    clf, x, y = build(args.model, max(rows) + 1, Path(args.shared))
    r = torch.tensor(rows)
    sub, xs, ys = clf.select(r), x[r], y[r]
    specs = {lab: (n, p) for n, p, lab in preset("auto") if n == "spike-set"}
    print(f"load {os.getloadavg()[0]:.2f}; {args.model} ε {args.eps:g}, rows {rows}")
    for label, (name, params) in specs.items():
        for abort in (params["abort_after"], 0):
            hits, t = [], time.process_time()
            for seed in range(args.seeds):
                atk = make_attack(name, **{**params, "abort_after": abort})
                xa = atk.perturb(sub, xs, ys, args.eps, torch.Generator().manual_seed(seed))
                with torch.no_grad():
                    broke = (~is_correct(sub(xa), ys)).nonzero()[:, 0].tolist()
                hits.append([rows[i] for i in broke])
            print(f"{label} abort_after={abort}: broken per seed {hits} "
                  f"({time.process_time() - t:.1f} s CPU)", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
