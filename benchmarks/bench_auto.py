"""Benchmark (issue 11, point 8): the ``auto`` cascade vs pyautoattack's standard ensemble
wrapped with each backward surrogate, and vs each single configuration of the cascade — same
model, same images, one run.

Model: certify_snn's plain ``mnist_FC`` (FC512-FC256-FC10, T = 10, rate readout) under the
*known-draw* threat model with one shared uniform map (``FixedBernoulliEncoder``, seed 0): a
deterministic classifier whose rows do not depend on each other, so pyautoattack (which
subsets batches internally) sees exactly the function our engine sees. Images: the first
``--samples`` of the MNIST test split (t10k images 8000…), ε = 0.1 (ℓ∞).

Rows:
- ``auto`` — :func:`neurodeploy.attacks.engine.evaluate_robustness` with ``["auto"]``;
- ``pyautoattack standard + <surrogate>`` — ``AutoAttack(version="standard")`` (APGD-CE,
  APGD-T, FAB-T, Square-5000) with the spiking neurons' backward switched to that surrogate
  (straight-through encoder, loss on the readout: what the library can express);
- ``single: <label>`` — each spec of the cascade alone, on all points (``--singles``).

Targets: robust accuracy of ``auto`` ≤ every other row; wall time of ``auto`` ≤ pyautoattack
standard (ratio printed per surrogate).

    .venv/bin/python benchmarks/bench_auto.py [--samples 100] [--threads 1] [--singles]
        [--surrogates rect,fast_sigmoid:5,atan,assg] [--append benchmarks/RESULTS_attacks.md]
        [--workers N | --ray-address ADDR] [--shard-size K]

``--workers`` / ``--ray-address`` / ``--shard-size`` run the ``auto`` row as shards
(:func:`neurodeploy.scale.robustness.evaluate_robustness_sharded`; its numbers then depend on
the shard size, not on the workers, and its wall time is no longer a one-process time: the
ratio to pyautoattack is printed with that caveat). The pyautoattack and single rows stay
one-process calls.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neurodeploy.attacks import is_correct, make_attack  # noqa: E402
from neurodeploy.attacks.engine import evaluate_robustness  # noqa: E402
from neurodeploy.attacks.grad_modes import gradient_mode  # noqa: E402
from neurodeploy.attacks.presets import expand  # noqa: E402
from neurodeploy.scale.cli import ScaleOptions, add_scale_args, scale_options  # noqa: E402


def build(samples: int):
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.idx import load_idx_split
    from neurodeploy.encoding import FixedBernoulliEncoder
    from neurodeploy.models import ModelConfig, import_state_dict

    shared = REPO.parent / "shared"
    m = import_state_dict(shared / "reference_models/certify_snn/mnist_FC.pth.tar",
                          ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate")).eval()
    test = load_idx_split(shared / "data/mnist").test
    net = SNNClassifier(m, FixedBernoulliEncoder.draw(m.num_steps, (1, 28, 28), seed=0)).eval()
    return net, test.x[:samples].float(), test.y[:samples]


def acc_of(net, x, y) -> float:
    with torch.no_grad():
        return float(is_correct(net(x), y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--surrogates", default="rect,fast_sigmoid:5,atan,assg")
    ap.add_argument("--singles", action="store_true", help="also run every cascade spec alone")
    ap.add_argument("--append", default=None)
    add_scale_args(ap)
    args = ap.parse_args()
    scale = scale_options(args)
    torch.set_num_threads(args.threads)
    net, x, y = build(args.samples)
    eps, n = args.eps, args.samples
    clean = acc_of(net, x, y)
    rows: list[tuple[str, float, float]] = []

    t = time.perf_counter()
    if scale is None:
        res = evaluate_robustness(net, x, y, ["auto"], [eps], seed=0, quiet=True)
        auto_name = "auto (neurodeploy)"
    else:
        from neurodeploy.scale.robustness import evaluate_robustness_sharded

        res = evaluate_robustness_sharded(net, x, y, ["auto"], [eps], seed=0,
                                          shard_size=scale.shard_size, workers=scale.workers,
                                          address=scale.address)
        auto_name = (f"auto (neurodeploy, shards of {scale.shard_size}, "
                     f"{scale.workers or scale.address or 'serial'} workers)")
    t_auto = time.perf_counter() - t
    a_auto = res.robust_mean(eps)
    rows.append((auto_name, t_auto, a_auto))
    print(rows[-1], flush=True)

    try:
        from pyautoattack import AutoAttack
    except ImportError:
        AutoAttack = None
    t_ref: dict[str, float] = {}
    if AutoAttack is not None:
        for sur in [s for s in args.surrogates.split(",") if s]:
            aa = AutoAttack(net, norm="Linf", eps=eps, version="standard", seed=0,
                            device=x.device)
            t = time.perf_counter()
            with gradient_mode(net, f"bptt:{sur}"):
                xa, _ = aa.run_standard_evaluation(x, y, batch_size=n)  # (x_adv, y_adv)
            t_ref[sur] = time.perf_counter() - t
            rows.append((f"pyautoattack standard + {sur}", t_ref[sur], acc_of(net, xa, y)))
            print(rows[-1], flush=True)
    if args.singles:
        for name, params, label in expand(["auto"], net, 0):
            t = time.perf_counter()
            xa = make_attack(name, **params).perturb(net, x, y, eps, torch.Generator().manual_seed(0))
            rows.append((f"single: {label}", time.perf_counter() - t, acc_of(net, xa, y)))
            print(rows[-1], flush=True)

    load = os.getloadavg()[0]
    lines = [
        f"### bench_auto.py — {datetime.date.today().isoformat()}",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_auto.py --samples {n} --eps {eps} "
        f"--threads {args.threads}{' --singles' if args.singles else ''}"
        f"{_scale_flags(scale)}`  ",
        f"Machine: {platform.machine()}, {args.threads} torch thread(s), CPU only, load average "
        f"{load:.1f} at the end (shared machine); torch {torch.__version__}  ",
        f"Model: certify_snn mnist_FC, known draw (one shared map, seed 0), {n} MNIST test-split "
        f"images, clean {100 * clean:.1f} %, ε = {eps} (ℓ∞)",
        "",
        "| attack | seconds | robust acc % | auto ≤ row |",
        "|---|---|---|---|",
    ]
    for name, secs, acc in rows:
        lines.append(f"| {name} | {secs:.1f} | {100 * acc:.1f} | "
                     f"{'—' if name.startswith('auto') else ('yes' if a_auto <= acc else 'NO')} |")
    for sur, tr in t_ref.items():
        lines.append(f"\nwall time auto / pyautoattack standard + {sur}: {t_auto / tr:.2f}× "
                     f"(target ≤ 1)" + ("" if scale is None or not scale.parallel else
                                        " — auto ran on Ray workers: not a one-process ratio"))
    if AutoAttack is None:
        lines.append("\npyautoattack is not installed (`pip install pyautoattack==0.2.0`): "
                     "no reference rows")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)


def _scale_flags(scale: ScaleOptions | None) -> str:
    if scale is None:
        return ""
    where = f" --workers {scale.workers}" if scale.workers else (
        f" --ray-address {scale.address}" if scale.address else "")
    return f"{where} --shard-size {scale.shard_size}"


if __name__ == "__main__":
    main()
