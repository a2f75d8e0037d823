"""Train FC512-FC256-FC10 on the MNIST split and report test accuracy (target >= 96 %).

Data: the official MNIST test set in ../shared/data/mnist (t10k only), split deterministically:
first 8,000 images train, last 2,000 test (neurodeploy.data.core.MNIST_TEST_ONLY_SPLIT).

    .venv/bin/python benchmarks/train_mnist.py                       # defaults below
    .venv/bin/python benchmarks/train_mnist.py --epochs 3 --threads 1
    .venv/bin/python benchmarks/train_mnist.py --data digits --arch FC256-FC10   # digits timing

Writes the run (model.pt, metrics.json …) to --out and prints one summary line + JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--arch", default="FC512-FC256-FC10")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--encoding", default="bernoulli")
    p.add_argument("--readout", default="rate")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(REPO / "runs" / "bench_train_mnist"))
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from neurodeploy.pipeline import train_from_config, validate_config

    config = validate_config(
        {
            "seed": args.seed,
            "device": args.device,
            "data": {"source": args.data},
            "model": {
                "arch": args.arch,
                "num_steps": args.steps,
                "encoding": args.encoding,
                "readout": args.readout,
            },
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "schedule": args.schedule,
            },
        },
        "benchmark",
    )
    t0 = time.perf_counter()
    res = train_from_config(config, args.out, quiet=False)
    wall = time.perf_counter() - t0
    summary = {
        "data": args.data,
        "arch": args.arch,
        "epochs": args.epochs,
        "encoding": args.encoding,
        "readout": args.readout,
        "lr": args.lr,
        "schedule": args.schedule,
        "threads": args.threads,
        "device": str(args.device),
        "final_test_acc": res.final_test_acc,
        "best_test_acc": res.best_test_acc,
        "best_epoch": res.best_epoch,
        "train_seconds": res.seconds,
        "wall_seconds": wall,
        "test_acc_per_epoch": [r["test_acc"] for r in res.history],
    }
    print(
        f"{args.arch} on {Path(args.data).name}: final test accuracy "
        f"{100 * res.final_test_acc:.2f} % (best {100 * res.best_test_acc:.2f} % at epoch "
        f"{res.best_epoch}), {wall:.0f} s wall, {args.threads} threads"
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
