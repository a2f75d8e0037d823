"""Single attack specs vs ``auto`` under the audit's known draw (per-example host maps).

certify_snn's plain ``mnist_FC`` (FC512-FC256-FC10, T = 10, rate readout), the first N images of
the MNIST test split, host maps seed 0 (``KnownDrawEncoder.from_host``), ε = 0.1. Each spec (a
Python literal list of ``(attack, params)``; ``"auto"`` for the cascade) runs alone through the
engine; prints robust accuracy and wall seconds per spec.

    .venv/bin/python benchmarks/auto_single_specs.py 100 \\
        '[("apgd-ce", {"n_iter": 50}), ("apgd-ce", {"n_iter": 50, "loss_on": "membrane"}), "auto"]'
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import torch

from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_dataset
from neurodeploy.encoding import KnownDrawEncoder
from neurodeploy.models import ModelConfig, import_state_dict

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    specs = ast.literal_eval(sys.argv[2]) if len(sys.argv) > 2 else ["auto"]
    cfg = ModelConfig("FC512-FC256-FC10", (1, 28, 28), num_steps=10, readout="rate")
    model = import_state_dict(SHARED / "reference_models/certify_snn/mnist_FC.pth.tar", cfg).eval()
    test = load_dataset(str(SHARED / "data/mnist")).test
    x, y = test.x[:n].float(), test.y[:n]
    clf = SNNClassifier(model, KnownDrawEncoder.from_host(list(range(n)), 0, 10, (1, 28, 28)))
    print("clean", float((clf(x).argmax(1) == y).float().mean()))
    for spec in specs:
        t = time.perf_counter()
        r = evaluate_robustness(clf, x, y, [spec], [0.1], seed=0, quiet=True)
        print(spec, round(r.robust_mean(0.1), 3), f"{time.perf_counter() - t:.1f}s", flush=True)


if __name__ == "__main__":
    main()
