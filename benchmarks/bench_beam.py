"""Benchmark (issue 21, round 10): the ``bound-beam`` step of ``auto`` on chosen examples.

The cascade before ``bound-beam`` is unchanged and deterministic (engine seed), so on the
examples it leaves robust the new ``auto`` breaks exactly what ``bound-beam`` breaks there. This
runs the registered attack (``make_attack("bound-beam", width=…)``, no gate) through
``perturb`` on the audit's deployed classifier (emulator forward, known draw: the host maps of
:func:`neurodeploy.encoding.host_uniform`, seed 0) one example at a time, and reports per
example whether the returned image misclassifies on the classifier, the verifier's status
(``--verify-json``) and the CPU seconds. JSON to ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_beam.py \\
        --plan runs/digits/export/plan.npz --data digits --samples 200 --eps 0.1 \\
        --indices 16,62,135,159,160 \\
        --verify-json benchmarks/results/verify/digits_e0.1_n200_windows.json --out beam.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completeness import load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--indices", required=True, help="comma-separated example indices")
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--verify-json", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from neurodeploy.attacks.base import make_attack
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.encoding import KnownDrawEncoder
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.twin import HardwareTwin

    plan, x, y, u = load(args)
    status = {}
    if args.verify_json:
        status = {e["index"]: e["status"]
                  for e in json.loads(Path(args.verify_json).read_text())["examples"]}
    T, shape = plan.num_steps, tuple(plan.input_shape)
    emu, twin = Emulator(plan), HardwareTwin(plan)
    atk = make_attack("bound-beam", width=args.width)
    rows = []
    for i in (int(a) for a in args.indices.split(",")):
        xi = torch.as_tensor(x[i:i + 1]).reshape(1, *shape)
        ui = torch.as_tensor(u[:, i:i + 1]).reshape(T, 1, *shape)
        clf = DeployedClassifier(emu, twin, KnownDrawEncoder(T, ui))
        yi = torch.tensor([int(y[i])])
        t0 = time.process_time()
        adv = atk.perturb(clf, xi, yi, args.eps)
        cpu = time.process_time() - t0
        with torch.no_grad():
            pred = int(clf(adv).argmax(1))
        rows.append({"index": i, "label": int(y[i]), "verifier": status.get(i),
                     "broken": pred != int(y[i]), "predicted": pred,
                     "linf": float((adv - xi).abs().max()), "cpu_s": round(cpu, 1)})
        print(rows[-1], flush=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "plan": args.plan,
                                          "eps": args.eps, "width": args.width,
                                          "rows": rows}, indent=1))
    broken = sum(r["broken"] for r in rows)
    print(f"bound-beam broke {broken} of {len(rows)} examples "
          f"({sum(r['cpu_s'] for r in rows):.0f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
