"""Benchmark (issue 21): what the per-example random streams cost inside the flip searches.

Runs ``auto``'s late spike-flip search (``spike-set:fs20-cw``) and its ``spike-block`` step on the
first ``--samples`` MNIST test images (certify_snn model, known draw, as ``bench_flips.py``) and
times, with ``time.process_time``, the streams' part — building them
(:meth:`RowStreams.for_batch`) and every draw (:meth:`RowStreams.uniform`) — against the whole
search, in one process: the ratio is the streams' share of a search.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_streams.py --samples 64 --eps 0.05
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

from neurodeploy.attacks import make_attack  # noqa: E402
from neurodeploy.attacks.presets import preset  # noqa: E402
from neurodeploy.attacks.streams import RowStreams  # noqa: E402


class Timed:
    """Wraps a callable, adding its CPU seconds to ``self.cpu``."""

    def __init__(self, fn):
        self.fn, self.cpu = fn, 0.0

    def __call__(self, *a, **k):
        t = time.process_time()
        try:
            return self.fn(*a, **k)
        finally:
            self.cpu += time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--model", default="plain")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf, x, y = build(args.model, args.samples, Path(args.shared))
    specs = {lab: (n, p) for n, p, lab in preset("auto")}
    draw = Timed(RowStreams.uniform)
    make = Timed(RowStreams.for_batch.__func__)
    RowStreams.uniform = lambda self, *a, **k: draw(self, *a, **k)  # type: ignore[method-assign]
    RowStreams.for_batch = classmethod(lambda cls, *a: make(cls, *a))  # type: ignore[assignment]
    print(f"load {os.getloadavg()[0]:.2f}; {args.model} ε {args.eps:g}, n = {args.samples}")
    for label in ("spike-set:fs20-cw", "spike-block"):
        name, params = specs[label]
        draw.cpu = make.cpu = 0.0
        t = time.process_time()
        make_attack(name, **params).perturb(clf, x, y, args.eps, torch.Generator().manual_seed(0))
        total = time.process_time() - t
        s = draw.cpu + make.cpu
        print(f"{label}: search {total:.2f} s CPU, streams {s:.3f} s (build {make.cpu:.3f}, "
              f"draws {draw.cpu:.3f}) = {100 * s / total:.2f} %", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
