"""Reproduce the neuron-level defenses (HoSNN, TGO, AT/RAT) at CPU scale.

For one data set, every defense is compared with the plain LIF model of the same architecture
under the same white-box attacks (FGSM, PGD-7, PGD-20, APGD-CE; EoT for stochastic models)
over an ε sweep, and the attack engine's gradient-masking checks are run on every defended
model (when :mod:`neurodeploy.attacks.masking` exists).

Protocol (chosen for 2 shared CPU cores; see benchmarks/RESULTS_defenses.md):

1. ``plain``: a LIF model trained with CE for ``--epochs`` epochs (direct input coding, as
   HoSNN and TGO use; count readout; α = θ = 0.25).
2. every defense starts from that plain model and trains ``--ft-epochs`` more epochs with its
   own loss (HoSNN needs the clean-trained LIF anyway: NDS + initialisation); ``plain-ft``
   continues plain CE training for the same number of epochs, so every model has the same
   training budget.
3. attacks on the first ``--n-test`` test images; each attack is run on its own (per-attack
   accuracy) and the worst case over all of them is reported too.

Usage::

    .venv/bin/python benchmarks/reproduce_defenses.py --dataset digits
    .venv/bin/python benchmarks/reproduce_defenses.py --dataset ../shared/data/mnist \\
        --arch FC256-FC10 --epochs 4 --ft-epochs 4 --n-test 500
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_dataset
from neurodeploy.defenses.tgo import proximal_share, set_noise_at_inference_
from neurodeploy.models import ModelConfig, atomic_torch_save, build_model
from neurodeploy.training.defense import make_defense
from neurodeploy.training.trainer import TrainConfig, train

ATTACKS = {
    "fgsm": ("fgsm", {}),
    "pgd7": ("pgd", {"n_iter": 7}),
    "pgd20": ("pgd", {"n_iter": 20}),
    "apgd-ce": ("apgd-ce", {"n_iter": 20}),
}


def defense_specs(train_eps: float, tgo: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    at = {"at_eps": train_eps}
    return {
        "plain-ft": ("none", {}),
        "fgsm-at": ("fgsm-at", at),
        "pgd-at": ("pgd-at", {**at, "at_steps": 3}),
        "rat": ("rat", at),
        "hosnn": ("hosnn", {}),
        "hosnn+at": ("hosnn+fgsm-at", at),
        "tgo": ("tgo", tgo),
        "tgo+at": ("tgo+fgsm-at", {**tgo, **at}),
    }


def robust_table(clf: SNNClassifier, x: torch.Tensor, y: torch.Tensor, eps_list: list[float],
                 seed: int, eot: int | None) -> dict[str, Any]:
    from neurodeploy.attacks.engine import evaluate_robustness

    out: dict[str, Any] = {}
    clf.eval()
    per: dict[str, dict[float, float]] = {}
    flags: dict[float, torch.Tensor] = {}
    for name, (atk, params) in ATTACKS.items():
        r = evaluate_robustness(clf, x, y, [(atk, params)], eps_list, seed=seed, quiet=True,
                                eot_iter=eot, batch_size=500)
        per[name] = {e: r.robust_mean(e) for e in eps_list}
        out["clean"] = sum(r.clean_accuracy) / len(r.clean_accuracy)
        for e in eps_list:  # a point is robust only if every attack failed on it
            flags[e] = r.robust[e] if e not in flags else flags[e] & r.robust[e]
    per["worst"] = {e: float(flags[e].float().mean()) for e in eps_list}
    out["robust"] = {k: {str(e): v for e, v in d.items()} for k, d in per.items()}
    return out


def masking(clf: SNNClassifier, x: torch.Tensor, y: torch.Tensor, eps: float) -> Any:
    try:
        from neurodeploy.attacks.masking import run_masking_checks
    except ImportError as exc:
        return {"error": f"masking checks unavailable: {exc}"}
    clf.eval()
    res = run_masking_checks(clf, x, y, eps)
    out = []
    for c in res:
        d = c.to_dict() if hasattr(c, "to_dict") else dict(vars(c))
        out.append({k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict))
                        else str(v)) for k, v in d.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--arch", default=None, help="default FC128-FC64-FC10 (digits), FC256-FC10")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--ft-epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=360)
    p.add_argument("--eps", default="0.05,0.1,0.2")
    p.add_argument("--train-eps", type=float, default=0.1)
    p.add_argument("--mask-eps", type=float, default=0.1)
    p.add_argument("--tgo-delta", type=float, default=0.1)
    p.add_argument("--tgo-lambda-max", type=float, default=100.0)
    p.add_argument("--tgo-sigma", type=float, default=0.1)
    p.add_argument("--defenses", default=None, help="comma list (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/defenses_{name}.json")
    p.add_argument("--no-masking", action="store_true")
    a = p.parse_args(argv)

    torch.set_num_threads(int(os.environ.get("NEURODEPLOY_THREADS", "1")))
    split = load_dataset(a.dataset)
    name = "digits" if a.dataset == "digits" else Path(a.dataset).name
    arch = a.arch or ("FC128-FC64-FC10" if name == "digits" else "FC256-FC10")
    train_set = split.train.subset(a.n_train)
    split = type(split)(train_set, split.test, split.description)
    x_test, y_test = split.test.x[: a.n_test], split.test.y[: a.n_test]
    eps_list = [float(e) for e in a.eps.split(",")]
    cfg = ModelConfig(arch, tuple(train_set.input_shape), num_steps=a.steps, encoding="direct")
    tgo = {"tgo_delta": a.tgo_delta, "tgo_lambda_max": a.tgo_lambda_max, "tgo_sigma": a.tgo_sigma}
    specs = defense_specs(a.train_eps, tgo)
    chosen = list(specs) if a.defenses is None else a.defenses.split(",")

    record: dict[str, Any] = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} vCPU, CPU only, torch threads "
                   f"{torch.get_num_threads()}",
        "dataset": split.description, "arch": arch, "num_steps": a.steps, "encoding": "direct",
        "epochs": a.epochs, "ft_epochs": a.ft_epochs, "train_eps": a.train_eps,
        "eps": eps_list, "n_test": int(x_test.shape[0]), "attacks": ATTACKS, "tgo": tgo,
        "models": {},
    }
    out_path = Path(a.out.format(name=name))

    def tc(epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                           device="cpu", eval_every=max(epochs, 1), schedule="cosine",
                           min_lr_factor=0.1)

    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    plain = SNNClassifier(build_model(cfg), seed=a.seed)
    res = train(plain, split, tc(a.epochs), quiet=True)
    print(f"plain: clean {res.final_test_acc:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    models: dict[str, SNNClassifier] = {"plain": plain}
    train_seconds = {"plain": res.seconds}
    for label in chosen:
        spec, opts = specs[label]
        clf = SNNClassifier(copy.deepcopy(plain.model), seed=a.seed)
        r = train(clf, split, tc(a.ft_epochs), defense=make_defense(spec, opts), quiet=True)
        models[label] = clf
        train_seconds[label] = r.seconds
        print(f"{label}: clean {r.final_test_acc:.4f} ({r.seconds:.0f} s)", flush=True)

    for label, clf in models.items():
        t1 = time.perf_counter()
        entry: dict[str, Any] = {"train_seconds": train_seconds[label]}
        entry.update(robust_table(clf, x_test, y_test, eps_list, a.seed, None))
        entry["proximal_share"] = proximal_share(clf, x_test, a.tgo_delta).to_dict()
        if label != "plain" and not a.no_masking:
            entry["masking"] = masking(clf, x_test[:200], y_test[:200], a.mask_eps)
        record["models"][label] = entry
        if clf.model.config.neuron == "noisy":
            set_noise_at_inference_(clf.model, True)  # the same model, noise kept at inference
            e2: dict[str, Any] = {"train_seconds": train_seconds[label], "eot_iter": 10}
            e2.update(robust_table(clf, x_test, y_test, eps_list, a.seed, 10))
            if not a.no_masking:
                e2["masking"] = masking(clf, x_test[:200], y_test[:200], a.mask_eps)
            record["models"][label + " (noise@inf, EoT)"] = e2
            set_noise_at_inference_(clf.model, False)
        rob = entry["robust"]
        print(f"[{label}] clean {entry['clean']:.3f} "
              + " ".join(f"{k}@{e}={rob[k][str(e)]:.3f}" for k in rob for e in eps_list[1:2])
              + f" ({time.perf_counter() - t1:.0f} s)", flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, out_path)
    atomic_torch_save({k: v.model.state_dict() for k, v in models.items()},
                      out_path.with_suffix(".models.pt"))
    print(render(record))
    return 0


def render(record: dict[str, Any]) -> str:
    eps = record["eps"]
    lines = [
        "| model | clean | " + " | ".join(f"{k} ε={e}" for k in ATTACKS for e in eps)
        + " | worst " + " | worst ".join(f"ε={e}" for e in eps) + " | proximal |",
    ]
    lines.append("|" + "---|" * (3 + len(ATTACKS) * len(eps) + len(eps)))
    for label, m in record["models"].items():
        cells = [f"{100 * m['robust'][k][str(e)]:.1f}" for k in ATTACKS for e in eps]
        worst = [f"{100 * m['robust']['worst'][str(e)]:.1f}" for e in eps]
        prox = m.get("proximal_share", {}).get("overall")
        lines.append(f"| {label} | {100 * m['clean']:.1f} | " + " | ".join(cells + worst)
                     + f" | {'' if prox is None else f'{100 * prox:.1f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
