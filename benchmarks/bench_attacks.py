"""Benchmark: our PGD-10 and APGD-CE-100 vs the same attacks from a reference library, on the
same SNN and the same inputs, in one run.

References (optional, detected at run time):
- pyautoattack (``pip install pyautoattack==0.2.0``; imports as ``pyautoattack``): APGD-CE;
- ART (``pip install adversarial-robustness-toolbox``): ProjectedGradientDescentPyTorch (PGD).

Reports per attack: seconds, examples/s, robust accuracy, and the ratios
(throughput ours/reference — target ≥ 1.5; robust accuracy ours ≤ reference). Without a
reference library only our numbers are printed and the missing package is named.

Usage::

    .venv/bin/python benchmarks/bench_attacks.py [--samples 200] [--eps 0.1] [--threads 2]
        [--model digits|certify] [--seeds 3] [--append benchmarks/RESULTS_attacks.md]

``digits``: an SNN (FC64-FC10, direct encoding, T=5, count readout) trained here for a few
seconds (deterministic, so all implementations see the same function). ``certify``: the
certify_snn FC_T_3_eps_0.06 checkpoint with a *fixed* Bernoulli draw (a deterministic
classifier) on MNIST test images.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neurodeploy.attacks import is_correct, make_attack  # noqa: E402


def build(model: str, samples: int):
    if model == "digits":
        from neurodeploy.attacks.toy import train_digits_snn
        from neurodeploy.data.core import load_digits_split

        clf = train_digits_snn(epochs=10, lr=3e-3)
        sp = load_digits_split()
        return clf.eval(), sp.test.x[:samples], sp.test.y[:samples], "digits SNN FC64-FC10 direct T=5"
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.idx import load_idx_split
    from neurodeploy.models import ModelConfig, import_state_dict

    shared = REPO.parent / "shared"
    m = import_state_dict(shared / "reference_models/certify_snn/FC_T_3_eps_0.06.pth.tar",
                          ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate"))
    test = load_idx_split(shared / "data/mnist").test
    from neurodeploy.encoding import FixedBernoulliEncoder

    net = SNNClassifier(m, FixedBernoulliEncoder.draw(m.num_steps, (1, 28, 28), seed=0)).eval()
    return net, test.x[:samples], test.y[:samples], "certify_snn FC_T_3_eps_0.06, fixed Bernoulli draw, T=10"


def acc_of(net, x, y) -> float:
    with torch.no_grad():
        return float(is_correct(net(x), y).float().mean())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=["digits", "certify"], default="digits")
    ap.add_argument("--append", default=None)
    ap.add_argument("--seeds", type=int, default=3, help="runs per implementation (seeds 0..N-1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, x, y, desc = build(args.model, args.samples)
    eps, n = args.eps, args.samples
    clean = acc_of(net, x, y)

    # Each implementation runs once per seed, the implementations alternating within a seed
    # (so a change of machine load hits all of them); time = median over seeds, robust
    # accuracy = mean over seeds.
    runners: list[tuple[str, str, object]] = []

    def ours(name, fused):
        def run(seed):
            atk = (make_attack("pgd", n_iter=10, step_size=eps / 4, fused=fused) if name == "PGD-10"
                   else make_attack("apgd-ce", n_iter=100, fused=fused))
            return atk.perturb(net, x, y, eps, torch.Generator().manual_seed(seed))
        return run

    runners.append(("PGD-10", "neurodeploy", ours("PGD-10", True)))
    runners.append(("APGD-CE-100", "neurodeploy", ours("APGD-CE-100", True)))
    runners.append(("APGD-CE-100", "neurodeploy (fused=False)", ours("APGD-CE-100", False)))
    missing = []
    try:
        from pyautoattack.autopgd_base import APGDAttack

        def ref_apgd(seed):
            ref = APGDAttack(net, n_iter=100, norm="Linf", n_restarts=1, eps=eps, seed=seed,
                             loss="ce", eot_iter=1, rho=0.75, device=x.device)
            return ref.perturb(x, y)

        runners.append(("APGD-CE-100", "pyautoattack", ref_apgd))
    except ImportError:
        missing.append("pyautoattack==0.2.0 (APGD-CE reference)")
    try:
        import numpy as np
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        est = PyTorchClassifier(net, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")

        def ref_pgd(seed):
            np.random.seed(seed)
            torch.manual_seed(seed)
            art_pgd = ProjectedGradientDescentPyTorch(est, norm=np.inf, eps=eps, eps_step=eps / 4,
                                                      max_iter=10, num_random_init=1,
                                                      batch_size=n, verbose=False)
            return torch.as_tensor(art_pgd.generate(x.numpy(), y=y.numpy()))

        runners.append(("PGD-10", "ART", ref_pgd))
    except ImportError:
        missing.append("adversarial-robustness-toolbox (PGD reference)")
    times: dict[tuple[str, str], list[float]] = {(a, i): [] for a, i, _ in runners}
    accs: dict[tuple[str, str], list[float]] = {(a, i): [] for a, i, _ in runners}
    for seed in range(args.seeds):
        for atk, impl, fn in runners:
            xa, t = timed(lambda fn=fn, seed=seed: fn(seed))
            times[(atk, impl)].append(t)
            accs[(atk, impl)].append(acc_of(net, xa, y))
    rows = [(a, i, statistics.median(times[(a, i)]), statistics.mean(accs[(a, i)]))
            for a, i, _ in runners]

    lines = [
        f"### bench_attacks.py — {datetime.date.today().isoformat()}",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_attacks.py --model {args.model} --samples {n} "
        f"--eps {eps} --threads {args.threads} --seeds {args.seeds}`  ",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, CPU only, "
        f"shared with other jobs; torch {torch.__version__}  ",
        f"Model: {desc}; {n} examples, clean accuracy {100 * clean:.1f} %, ε = {eps} (ℓ∞); "
        f"seconds = median of {args.seeds} seeded runs (implementations alternating), robust "
        f"accuracy = mean over them",
        "",
        "| attack | implementation | seconds | examples/s | robust acc % |",
        "|---|---|---|---|---|",
    ]
    for name, impl, t, a in rows:
        lines.append(f"| {name} | {impl} | {t:.2f} | {n / t:.1f} | {100 * a:.1f} |")
    by = {(r[0], r[1]): r for r in rows}
    for atk, ref in (("APGD-CE-100", "pyautoattack"), ("PGD-10", "ART")):
        if (atk, ref) in by:
            o, r = by[(atk, "neurodeploy")], by[(atk, ref)]
            lines.append(f"\n{atk}: throughput ratio ours/{ref} = {r[2] / o[2]:.2f}× (target ≥ 1.5); "
                         f"robust accuracy ours {100 * o[3]:.1f} % vs {100 * r[3]:.1f} % "
                         f"({'equal or lower' if o[3] <= r[3] else 'HIGHER'})")
    if missing:
        lines.append("\nReference library missing, no comparison made: install " + "; ".join(missing))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
