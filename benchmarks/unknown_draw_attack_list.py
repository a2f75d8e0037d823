"""Unknown-draw robust accuracy vs the length of the attack list: the old scoring (broken if
any attack's replay on a new draw misclassifies) against select-then-evaluate
(neurodeploy.audit.unknown_draw). Same model, same samples, same PGD.

    python benchmarks/unknown_draw_attack_list.py [--samples 60] [--draws 5]

Lists: PGD alone; PGD + 10 attacks that return their input (no-ops); PGD + FGSM, R-FGSM, BIM
(weaker attacks). Prints one line per (scoring, list).
"""

from __future__ import annotations

import argparse
import os

import torch

from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit.unknown_draw import DrawScorer, Selection, attack_cascade, held_out
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_digits_split
from neurodeploy.encoding import BernoulliEncoder, KnownDrawEncoder


class NoOp:
    def __init__(self, label: str) -> None:
        self.name = self.label = label

    def perturb(self, clf, x, y, eps, generator=None):
        return x.clone()

    def to_dict(self):
        return {"name": self.name}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--eps", type=float, default=0.1)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=4,
                             readout="rate").model.eval()
    test = load_digits_split().test
    x, y = test.x[:a.samples].float(), test.y[:a.samples].long()
    T, seed = model.config.num_steps, 0
    clf = SNNClassifier(model, BernoulliEncoder(T), seed=seed)
    scorer = DrawScorer(lambda u: SNNClassifier(model, KnownDrawEncoder(T, u), seed=seed), T, seed)
    pgd = ("pgd", {"n_iter": 10}, "pgd")
    lists = {"pgd": [pgd], "pgd + 10 no-ops": [pgd] + [NoOp(f"noop{k}") for k in range(10)],
             "pgd + fgsm, r-fgsm, bim": [pgd, ("fgsm", {}, "fgsm"), ("rfgsm", {}, "rfgsm"),
                                         ("bim", {"n_iter": 3}, "bim")]}
    print(f"load {os.getloadavg()[0]:.1f}; digits FC32-FC10 T={T}, n={a.samples}, ε={a.eps}, "
          f"EoT 2, {a.draws} draws")
    for name, lst in lists.items():
        old = evaluate_robustness(clf, x, y, lst, [a.eps], seed=seed, draws=a.draws, quiet=True,
                                  eot_iter=2).robust_mean(a.eps)
        sel = Selection.start(scorer, x, y, [a.eps], 8)
        attack_cascade(sel, clf, scorer, x, y, lst, [a.eps], seed, 2, "round0")
        new = float(held_out(sel, scorer, y, a.draws)[a.eps].float().mean())
        print(f"{name:28s} old (any replay) {100 * old:5.1f} %   select-then-evaluate "
              f"{100 * new:5.1f} %")


if __name__ == "__main__":
    main()
