"""Findings (issues 7 and 11): does each defense's robustness survive deployment to Loihi 2
fixed point — measured with the strong default attack?

For every defense (plain, certified, FGSM-AT, HoSNN+AT, TGO) on the MNIST split (first 8,000
t10k images train, last 2,000 test) with the same architecture (certify_snn's FC512-FC256-FC10,
Bernoulli input, T = 10, α = θ = 0.25), run the hardware audit (float model vs Loihi 2 fixed
point: emulator for all samples, Lava for a subset) with the ``auto`` cascade
(``--budget full``: the ``auto`` preset; ``demo``: ``auto-demo``) under the threat models of
``--threats`` (default: known draw — the host's map, what the chip is fed), with the
gradient-masking checks and their escalation, at two ε, and collect a table.

Models: plain = certify_snn's pretrained ``mnist_FC``; certified = certify_snn's
``FC_T_3_eps_0.06`` (S-CROWN trained by the paper's code); FGSM-AT, HoSNN+AT and TGO are
fine-tuned here from the plain model on the 8,000 training images (trainer + defenses of this
package). Checkpoints and audit reports go to ``--out``.

    .venv/bin/python benchmarks/audit_defenses.py --out runs/findings [--samples 200]
        [--workers N | --ray-address ADDR] [--shard-size K]

``--workers`` / ``--ray-address`` / ``--shard-size`` pass through to every audit
(:mod:`neurodeploy.audit.sharding`): one Ray instance serves the whole sweep; training the
fine-tuned defenses stays in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from neurodeploy.audit.run import AuditConfig, run_audit
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.idx import load_idx_split
from neurodeploy.models import ModelConfig, import_state_dict, load_checkpoint
from neurodeploy.scale.cli import ScaleOptions, add_scale_args, scale_options
from neurodeploy.training.defense import make_defense
from neurodeploy.training.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REF = SHARED / "reference_models" / "certify_snn"
CFG = ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate")

# name → (defense spec, options, epochs, lr); all fine-tuned from the plain model
FINETUNED = {
    "fgsm-at": ("fgsm-at", {"at_eps": 0.1}, 3, 5e-4),
    "hosnn+at": ("hosnn+at", {"at_eps": 0.1}, 3, 5e-4),
    "tgo": ("tgo", {}, 3, 5e-4),
}


def model_for(name: str, split, out: Path, quiet: bool) -> torch.nn.Module:
    if name == "plain":
        return import_state_dict(REF / "mnist_FC.pth.tar", CFG)
    if name == "certified":
        return import_state_dict(REF / "FC_T_3_eps_0.06.pth.tar", CFG)
    ckpt = out / name / "model.pt"
    if not ckpt.is_file():
        spec, opts, epochs, lr = FINETUNED[name]
        clf = SNNClassifier(import_state_dict(REF / "mnist_FC.pth.tar", CFG).train(), seed=0)
        tcfg = TrainConfig(epochs=epochs, lr=lr, batch_size=64, seed=0)
        train(clf, split, tcfg, defense=make_defense(spec, opts), out_dir=out / name,
              quiet=quiet)
    model, _ = load_checkpoint(ckpt)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/findings")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--eps", default="0.05,0.1")
    ap.add_argument("--defenses", default="plain,certified,fgsm-at,hosnn+at,tgo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", choices=("full", "demo"), default="full")
    ap.add_argument("--threats", default="known", help="known, unknown or known,unknown")
    ap.add_argument("--masking-samples", type=int, default=64)
    ap.add_argument("-q", "--quiet", action="store_true")
    add_scale_args(ap)
    args = ap.parse_args()
    scale = scale_options(args)
    torch.set_num_threads(args.threads)
    with contextlib.ExitStack() as stack:
        if scale is not None and scale.parallel:  # one Ray instance for every audit
            from neurodeploy.scale.ray_pool import ray_session

            stack.enter_context(ray_session(scale.workers, scale.address))
        sweep(args, scale)


def sweep(args: argparse.Namespace, scale: ScaleOptions | None) -> None:
    out = Path(args.out)
    split = load_idx_split(SHARED / "data" / "mnist")
    eps = tuple(float(e) for e in args.eps.split(","))
    rows = []
    for name in args.defenses.split(","):
        t0 = time.perf_counter()
        model = model_for(name, split, out, args.quiet)
        cfg = AuditConfig(eps=eps, attacks=("auto",), preset_budget=args.budget,
                          threat_models=tuple(args.threats.split(",")), samples=args.samples,
                          lava_samples=args.lava_samples, seed=0, cert_eps=0.06,
                          masking_samples=args.masking_samples,
                          shard_size=scale.shard_size if scale is not None else None)
        rep = run_audit(model, split.test.x, split.test.y, "loihi2", cfg, out / name / "audit",
                        model_info={"defense": name}, quiet=args.quiet,
                        workers=scale.workers if scale is not None else None,
                        address=scale.address if scale is not None else None)
        row = {"defense": name, "neuron": model.config.neuron,
               "seconds": round(time.perf_counter() - t0, 1),
               "verdicts": rep.verdicts,
               "failed_checks": [f"{c.name} ({c.backend})" for c in rep.checks if not c.passed],
               "certified": rep.certified, "replay": rep.replay,
               "budget": args.budget, "threat_models": args.threats,
               "comparisons": rep.comparisons, "escalation": rep.escalation,
               "sharding": rep.meta.get("sharding")}
        for b in rep.backends():
            c = rep.clean(b)
            row[f"{b}_clean"] = c.accuracy if c else None
            for tm in ("known draw", "unknown draw"):
                for e in eps:
                    r = rep.lookup(b, "worst", e, threat_model=tm)
                    if r is not None:
                        key = f"{b}_{tm.split()[0]}_{e:g}"
                        row[key] = r.accuracy
                        row[key + "_upper_bound"] = r.upper_bound
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "findings.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
