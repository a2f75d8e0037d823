"""Benchmark (issue 21, point 4): CPU of the ``auto-demo`` cascade under the known draw — the
attack stages of ``make demo``'s audit — before and after the spike-flip search, side by side.

The digits demo model (``configs/digits.toml``: FC256-FC10, T = 10, rate read-out, 10 epochs,
seed 0), the first ``--samples`` test images, ε 0.05 and 0.1, known draw (host maps, seed 0),
on the float classifier and on the deployed one (Loihi 2 plan: emulator forward, twin
gradient — the audit's ``deployed_specs``). Each tree runs in its own subprocess
(``PYTHONPATH=OLD_TREE`` for the old one) and reports its CPU seconds and robust accuracies.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_flips_demo.py --old-tree OLD_TREE
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def worker(args: argparse.Namespace) -> None:
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.attacks.toy import train_digits_snn
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.audit.run import AuditConfig, attack_specs, deployed_specs
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_digits_split
    from neurodeploy.encoding import KnownDrawEncoder, host_uniform
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.twin import HardwareTwin

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC256-FC10", num_steps=10, epochs=10,
                             readout="rate").model.eval()
    test = load_digits_split().test
    n = args.samples
    x, y = test.x[:n].float(), test.y[:n]
    u = host_uniform(torch.arange(n), 0, 10, tuple(x.shape[1:]))
    specs, _ = attack_specs(AuditConfig(attacks=("auto",), preset_budget="demo"), False, "known")
    plan = compile_model(model, profile="loihi2")
    sides = {"float": (SNNClassifier(model, KnownDrawEncoder(10, u)), specs),
             "deployed": (DeployedClassifier(Emulator(plan), HardwareTwin(plan),
                                             KnownDrawEncoder(10, u)), deployed_specs(specs)[0])}
    out = {}
    for side, (clf, sp) in sides.items():
        t = time.process_time()
        r = evaluate_robustness(clf, x, y, sp, [0.05, 0.1], quiet=True)
        out[side] = {"cpu_s": time.process_time() - t,
                     "robust": {str(e): r.robust_mean(e) for e in (0.05, 0.1)}}
    Path(args.worker_out).write_text(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--old-tree", required=True)
    ap.add_argument("--worker-out", default=None)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
        return
    res = {}
    for name, tree in (("old", Path(args.old_tree).resolve()), ("new", None)):
        env = dict(os.environ)
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        out = Path(f"flips_demo_{name}.json").resolve()
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--old-tree",
                        args.old_tree, "--samples", str(args.samples), "--worker-out", str(out)],
                       env=env, check=True, cwd=str(tree) if tree else None)
        res[name] = json.loads(out.read_text())
        out.unlink()
    print(json.dumps(res, indent=1))
    for side in ("float", "deployed"):
        print(f"{side}: CPU new/old = {res['new'][side]['cpu_s'] / res['old'][side]['cpu_s']:.2f}"
              f" (old {res['old'][side]['cpu_s']:.0f} s, new {res['new'][side]['cpu_s']:.0f} s); "
              f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
