"""Reproduce the certified-training paper (Liang et al., NeurIPS 2022) on CPU-sized settings.

Two parts (run by hand; results go to benchmarks/results/ and RESULTS_certified.md):

``reference``  verified error of certify_snn's certified MNIST FC checkpoint
    (FC_T_3_eps_0.06, ε = 0.06, T' = 10) with S-IBP, S-CROWN (the paper's relaxations) and
    α-S-CROWN (ours), all methods on the *same* Bernoulli draws, over ``--draws`` seeds.
    Logged by certify_snn on the 10,000 MNIST test images: S-IBP 0.541, S-CROWN 0.593,
    clean 92.87 %.

``attack``     Table 2 (MNIST FC rows): the plain model (certify_snn's ``mnist_FC``, BPTT) vs the
    certified one (``FC_T_3_eps_0.06``) under the project's attack suite at the paper's attack
    ε = 0.104, 0.124, 0.140, 0.154 on the first ``--samples`` images of the 2,000-image
    MNIST test split; attack error = 1 − worst-case robust accuracy.

Examples::

    .venv/bin/python benchmarks/reproduce_certified.py reference --samples 10000 --draws 3
    .venv/bin/python benchmarks/reproduce_certified.py reference --quick
    .venv/bin/python benchmarks/reproduce_certified.py attack --samples 300 --eot 4
    .venv/bin/python benchmarks/reproduce_certified.py attack --table conv \
        --plain runs/conv/plain/model.pt --certified runs/conv/cert/model.pt --samples 300

``attack --table conv`` (Table 2 CONV rows, ε = 0.120 … 0.190) takes checkpoints trained with
``neurodeploy train`` (commands in RESULTS_certified.md §3b): certify_snn released no CONV model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REF = SHARED / "reference_models" / "certify_snn"
RESULTS = REPO / "benchmarks" / "results"

PAPER_TABLE2_FC = {  # attack ε: (plain org err, plain attack err, robust org err, robust attack err)
    0.104: (0.003, 0.193, 0.047, 0.166),
    0.124: (0.003, 0.297, 0.047, 0.203),
    0.140: (0.003, 0.390, 0.047, 0.233),
    0.154: (0.003, 0.500, 0.050, 0.243),
}
PAPER_TABLE2_CONV = {
    0.120: (0.003, 0.187, 0.037, 0.083),
    0.140: (0.003, 0.290, 0.040, 0.090),
    0.170: (0.003, 0.407, 0.033, 0.107),
    0.190: (0.003, 0.507, 0.040, 0.130),
}


def _model(name: str):
    from neurodeploy.models import ModelConfig, import_state_dict

    return import_state_dict(REF / name, ModelConfig("FC512-FC256-FC10", (1, 28, 28),
                                                     readout="rate"))


def _mnist_all():
    from neurodeploy.data.core import load_dataset

    split = load_dataset(SHARED / "data" / "mnist")
    return split, torch.cat([split.train.x, split.test.x]), torch.cat([split.train.y,
                                                                        split.test.y])


def reference(args: argparse.Namespace) -> dict:
    from neurodeploy.bounds.certify import certify_many
    from neurodeploy.encoding import make_generator

    model = _model("FC_T_3_eps_0.06.pth.tar")
    _, x, y = _mnist_all()
    n = 1000 if args.quick else args.samples
    na = min(n, 200 if args.quick else args.alpha_samples)
    x, y = x[:n], y[:n]
    out: dict = {"eps": 0.06, "cert_steps": 10, "n": n, "alpha_n": na, "draws": []}
    for d in range(args.draws):
        seed = args.seed + d
        row: dict = {"seed": seed}
        t0 = time.perf_counter()
        r = certify_many(model, x, y, 0.06, 10, ("ibp", "crown"), make_generator(seed),
                         batch_size=500)
        row["seconds_ibp_crown"] = time.perf_counter() - t0
        row["ibp"] = r["ibp"].verified_error
        row["crown"] = r["crown"].verified_error
        row["clean"] = r["ibp"].clean_accuracy
        # α-S-CROWN on the first `na` samples, paired: same generator state as above
        t0 = time.perf_counter()
        ra = certify_many(model, x[:na], y[:na], 0.06, 10, ("ibp", "crown", "alpha-crown"),
                          make_generator(seed), batch_size=100,
                          method_options={"alpha-crown": {"iterations": args.alpha_iterations}})
        row["seconds_alpha_subset"] = time.perf_counter() - t0
        row["subset"] = {m: ra[m].verified_error for m in ra}
        out["draws"].append(row)
        print(json.dumps(row), flush=True)
    return out


def attack(args: argparse.Namespace) -> dict:
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.classifier import SNNClassifier

    split, _, _ = _mnist_all()
    n = 50 if args.quick else args.samples
    x, y = split.test.x[:n], split.test.y[:n]
    attacks = [(a, {"n_iter": args.steps, "eot_iter": args.eot}) for a in args.attacks.split(",")]
    from neurodeploy.models import load_checkpoint

    if args.table == "fc":  # default: certify_snn's own checkpoints; --plain/--certified override
        eps_list = sorted(PAPER_TABLE2_FC)
        models = {
            "plain": load_checkpoint(args.plain)[0] if args.plain else _model("mnist_FC.pth.tar"),
            "certified": (load_checkpoint(args.certified)[0] if args.certified
                          else _model("FC_T_3_eps_0.06.pth.tar")),
        }
    else:  # CONV rows: checkpoints trained here (no CONV checkpoint in certify_snn's release)
        if not args.plain or not args.certified:
            raise SystemExit("--table conv needs --plain CKPT and --certified CKPT")
        eps_list = sorted(PAPER_TABLE2_CONV)
        models = {"plain": load_checkpoint(args.plain)[0],
                  "certified": load_checkpoint(args.certified)[0]}
    out: dict = {"n": n, "eps": eps_list, "attacks": attacks, "table": args.table,
                 "checkpoints": {"plain": args.plain, "certified": args.certified}, "models": {}}
    for tag, model in models.items():
        clf = SNNClassifier(model, seed=args.seed)
        t0 = time.perf_counter()
        res = evaluate_robustness(clf, x, y, attacks, eps_list, seed=args.seed,
                                  draws=args.draws, quiet=True, batch_size=args.batch_size)
        out["models"][tag] = {
            "clean_error": 1 - sum(res.clean_accuracy) / len(res.clean_accuracy),
            "attack_error": {e: 1 - res.robust_mean(e) for e in eps_list},
            "seconds": time.perf_counter() - t0,
        }
        print(tag, json.dumps(out["models"][tag]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("reference", "attack"))
    p.add_argument("--quick", action="store_true", help="small settings (minutes)")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--alpha-samples", type=int, default=1000)
    p.add_argument("--alpha-iterations", type=int, default=20)
    p.add_argument("--draws", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attacks", default="pgd", help="comma-separated attack names")
    p.add_argument("--steps", type=int, default=10, help="attack iterations")
    p.add_argument("--eot", type=int, default=4, help="EoT draws per gradient")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", choices=("fc", "conv"), default="fc",
                   help="attack: paper Table 2 rows (conv needs --plain/--certified)")
    p.add_argument("--plain", default=None, help="attack --table conv: plain checkpoint")
    p.add_argument("--certified", default=None, help="attack --table conv: certified checkpoint")
    args = p.parse_args(argv)
    if not REF.is_dir():
        print(f"reference checkpoints not found at {REF}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    result = {"reference": reference, "attack": attack}[args.part](args)
    result["command"] = " ".join(sys.argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    from neurodeploy.training.metrics import write_json_atomic

    table = ""
    if args.part == "attack":
        table = "_conv" if args.table == "conv" else ("_fc_ours" if args.certified else "")
    path = RESULTS / f"certified_{args.part}{table}{'_quick' if args.quick else ''}.json"
    write_json_atomic(path, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
