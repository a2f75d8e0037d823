"""Time per epoch of certified training (S-CROWN / S-IBP bounds at T' = 3) vs plain BPTT.

Same model, data, batches and optimiser; the work per batch is exactly what the trainer does
(``defense.loss(ctx)``, backward, gradient clipping, step). Both runs alternate batch by batch
in one process, so the ratio is measured under the same machine load. The paper reports
7.7× at T' = 3 (S-CROWN, RTX 3090).

    .venv/bin/python benchmarks/bench_certified.py                 # MNIST FC, 8000 train images
    .venv/bin/python benchmarks/bench_certified.py --quick         # 10 batches
    .venv/bin/python benchmarks/bench_certified.py --arch C64K3S2-C128K3S2-FC256-FC10 --batches 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="FC512-FC256-FC10")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=0, help="limit (0 = one full epoch)")
    p.add_argument("--methods", default="crown,ibp")
    p.add_argument("--cert-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_dataset
    from neurodeploy.models import ModelConfig, build_model
    from neurodeploy.training.defense import BatchContext, make_defense

    split = load_dataset(args.data)
    shape = tuple(split.train.x.shape[1:])
    torch.manual_seed(0)
    base = build_model(ModelConfig(args.arch, shape, readout="rate"))
    n = len(split.train)
    nb = math.ceil(n / args.batch_size)
    if args.quick:
        nb = min(nb, 10)
    elif args.batches:
        nb = min(nb, args.batches)
    variants = {"plain": make_defense("none")}
    for m in args.methods.split(","):
        variants[f"certified-{m}"] = make_defense("certified", {
            "cert_method": m, "cert_cert_steps": args.cert_steps, "cert_eps": 0.06,
            "cert_ramp": 0.0, "cert_kappa_start": 0.4, "cert_kappa_final": 0.4})
    runs = {}
    for name in variants:
        model = build_model(base.config)
        model.load_state_dict(base.state_dict())
        clf = SNNClassifier(model, seed=0)
        runs[name] = (clf, torch.optim.SGD(model.parameters(), lr=5e-4, momentum=0.9))
    seconds = {k: 0.0 for k in variants}
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    for b in range(nb):
        idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
        x, y = split.train.x[idx], split.train.y[idx]
        for name, defense in variants.items():
            clf, opt = runs[name]
            t0 = time.perf_counter()
            loss, _ = defense.loss(BatchContext(clf, x, y, epoch=0, progress=1.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.model.parameters(), 0.25)
            opt.step()
            seconds[name] += time.perf_counter() - t0
    full = math.ceil(n / args.batch_size)
    rec = {
        "arch": args.arch, "data": os.path.relpath(args.data, REPO), "train_images": n,
        "batch_size": args.batch_size,
        "batches_timed": nb, "cert_steps": args.cert_steps, "T": base.config.num_steps,
        "seconds_per_epoch": {k: v / nb * full for k, v in seconds.items()},
        "ratio_to_plain": {k: v / seconds["plain"] for k, v in seconds.items()},
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, CPU only",
        "torch": torch.__version__,
    }
    print(json.dumps(rec, indent=1))
    out = REPO / "benchmarks" / "results" / "bench_certified.json"
    from neurodeploy.training.metrics import write_json_atomic

    write_json_atomic(out, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
