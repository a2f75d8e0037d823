"""Single attack specs vs ``auto`` under the audit's known draw (per-example host maps).

certify_snn's plain ``mnist_FC`` (FC512-FC256-FC10, T = 10, rate readout), the first N images of
the MNIST test split, host maps seed 0 (``KnownDrawEncoder.from_host``), ε = 0.1. Each spec (a
Python literal list of ``(attack, params)``; ``"auto"`` for the cascade) runs alone through the
engine; prints robust accuracy and wall seconds per spec.

    .venv/bin/python benchmarks/auto_single_specs.py 100 \\
        '[("apgd-ce", {"n_iter": 50}), ("apgd-ce", {"n_iter": 50, "loss_on": "membrane"}), "auto"]'
        [--workers N | --ray-address ADDR] [--shard-size K]

``--workers`` / ``--ray-address`` / ``--shard-size`` run each spec as shards of samples
(:func:`neurodeploy.scale.robustness.evaluate_robustness_sharded`, one Ray instance for all).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import time
from pathlib import Path

import torch

from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_dataset
from neurodeploy.encoding import KnownDrawEncoder
from neurodeploy.models import ModelConfig, import_state_dict
from neurodeploy.scale.cli import add_scale_args, scale_options

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samples", nargs="?", type=int, default=100)
    ap.add_argument("specs", nargs="?", default='["auto"]', help="a Python literal list of specs")
    add_scale_args(ap)
    args = ap.parse_args()
    scale = scale_options(args)
    torch.set_num_threads(1)
    n = args.samples
    specs = ast.literal_eval(args.specs)
    cfg = ModelConfig("FC512-FC256-FC10", (1, 28, 28), num_steps=10, readout="rate")
    model = import_state_dict(SHARED / "reference_models/certify_snn/mnist_FC.pth.tar", cfg).eval()
    test = load_dataset(str(SHARED / "data/mnist")).test
    x, y = test.x[:n].float(), test.y[:n]
    clf = SNNClassifier(model, KnownDrawEncoder.from_host(list(range(n)), 0, 10, (1, 28, 28)))
    print("clean", float((clf(x).argmax(1) == y).float().mean()))
    with contextlib.ExitStack() as stack:
        if scale is not None and scale.parallel:
            from neurodeploy.scale.ray_pool import ray_session

            stack.enter_context(ray_session(scale.workers, scale.address))
        for spec in specs:
            t = time.perf_counter()
            if scale is None:
                r = evaluate_robustness(clf, x, y, [spec], [0.1], seed=0, quiet=True)
            else:
                from neurodeploy.scale.robustness import evaluate_robustness_sharded

                r = evaluate_robustness_sharded(clf, x, y, [spec], [0.1], seed=0,
                                                shard_size=scale.shard_size,
                                                workers=scale.workers, address=scale.address)
            print(spec, round(r.robust_mean(0.1), 3), f"{time.perf_counter() - t:.1f}s",
                  flush=True)


if __name__ == "__main__":
    main()
