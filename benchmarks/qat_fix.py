"""Quantization-aware fix for a defense whose robustness drops on Loihi 2 fixed point.

Fine-tunes the model of ``benchmarks/audit_defenses.py`` for one epoch on the chip's weight
grid (:func:`neurodeploy.training.qat.quantization_aware`, straight-through) with the same
defense it was trained with, then re-runs the same audit. Before/after rows go to
``<out>/<name>-qat/findings_qat.json``.

    .venv/bin/python benchmarks/qat_fix.py --out runs/findings --defense plain
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from audit_defenses import SHARED, model_for

from neurodeploy.audit.run import AuditConfig, run_audit
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.idx import load_idx_split
from neurodeploy.models import save_checkpoint
from neurodeploy.training.defense import make_defense
from neurodeploy.training.qat import quantization_aware
from neurodeploy.training.trainer import TrainConfig, train

# the defense each model was trained with (plain → clean CE)
TRAINED_WITH = {"plain": ("none", {}), "certified": ("certified", {"cert_eps": 0.06}),
                "fgsm-at": ("fgsm-at", {"at_eps": 0.1}), "hosnn+at": ("fgsm-at", {"at_eps": 0.1}),
                "tgo": ("tgo", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/findings")
    ap.add_argument("--defense", required=True, choices=sorted(TRAINED_WITH))
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    split = load_idx_split(SHARED / "data" / "mnist")
    model = model_for(args.defense, split, out, quiet=True)
    spec, opts = TRAINED_WITH[args.defense]
    clf = SNNClassifier(model.train(), seed=0)
    t0 = time.perf_counter()
    with quantization_aware(model, "loihi2"):
        train(clf, split, TrainConfig(epochs=args.epochs, lr=2e-4, batch_size=64, seed=0),
              defense=make_defense(spec, opts), quiet=True)
    model.eval()
    save_checkpoint(out / f"{args.defense}-qat" / "model.pt", model)
    cfg = AuditConfig(eps=(0.05, 0.1), attacks=("auto",), threat_models=("known",),
                      samples=args.samples, lava_samples=50, seed=0, cert_eps=0.06)
    rep = run_audit(model, split.test.x, split.test.y, "loihi2", cfg,
                    out / f"{args.defense}-qat" / "audit",
                    model_info={"defense": f"{args.defense} + QAT"}, quiet=True)
    row = {"defense": f"{args.defense}+qat", "seconds": round(time.perf_counter() - t0, 1),
           "verdicts": rep.verdicts}
    for b in rep.backends():
        c = rep.clean(b)
        row[f"{b}_clean"] = c.accuracy if c else None
        for e in cfg.eps:
            r = rep.lookup(b, "worst", e)
            row[f"{b}_worst_{e:g}"] = r.accuracy if r else None
    print(json.dumps(row))
    (out / f"{args.defense}-qat" / "findings_qat.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
