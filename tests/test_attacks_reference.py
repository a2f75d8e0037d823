"""Strength on the certify_snn reference checkpoint (MNIST, Bernoulli input, EoT), and an
optional cross-check of our APGD against AutoAttack's (pyautoattack) on a plain ANN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurodeploy.attacks import is_correct, make_attack


def _replay_acc(clf, x_adv, y, draws=4):
    accs = []
    with torch.no_grad():
        for d in range(draws):
            clf.reseed(1000 + d)
            accs.append(float(is_correct(clf(x_adv), y).float().mean()))
    return sum(accs) / draws


@pytest.mark.slow
@pytest.mark.shared
def test_apgd_not_weaker_than_pgd_on_certify_snn_reference(shared_dir):
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.idx import load_idx_split
    from neurodeploy.models import ModelConfig, import_state_dict

    model = import_state_dict(
        shared_dir / "reference_models" / "certify_snn" / "FC_T_3_eps_0.06.pth.tar",
        ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate"),
    )
    clf = SNNClassifier(model, seed=0)
    assert clf.stochastic
    test = load_idx_split(shared_dir / "data" / "mnist").test
    x, y = test.x[:64], test.y[:64]
    clean = _replay_acc(clf, x, y)
    accs = {}
    for name, n_iter in (("pgd", 10), ("apgd-ce", 20)):
        clf.reseed(7)
        x_adv = make_attack(name, n_iter=n_iter, eot_iter=2).perturb(
            clf, x, y, 0.1, torch.Generator().manual_seed(0))
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6
        accs[name] = _replay_acc(clf, x_adv, y)
    assert accs["apgd-ce"] <= accs["pgd"] < clean


def _mlp_on_digits():
    from neurodeploy.data.core import load_digits_split

    sp = load_digits_split()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(net(sp.train.x), sp.train.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), sp.test.x[:200], sp.test.y[:200]


def test_apgd_matches_autoattack_reference():
    aa = pytest.importorskip("pyautoattack", reason="pyautoattack (reference AutoAttack) not installed")
    net, x, y = _mlp_on_digits()
    eps = 0.1
    ref = aa.autopgd_base.APGDAttack(net, n_iter=100, norm="Linf", n_restarts=1, eps=eps, seed=0,
                                     loss="ce", eot_iter=1, rho=0.75, device="cpu")
    with torch.no_grad():
        acc_ref = float((net(ref.perturb(x, y)).argmax(1) == y).float().mean())
    ours = []
    for s in range(3):
        xa = make_attack("apgd-ce", n_iter=100).perturb(net, x, y, eps, torch.Generator().manual_seed(s))
        with torch.no_grad():
            ours.append(float((net(xa).argmax(1) == y).float().mean()))
    # same algorithm, different random starts: within 2 points (1 %) of the reference, and never
    # weaker than it by more than that
    assert min(ours) <= acc_ref + 0.01
    assert abs(sum(ours) / 3 - acc_ref) <= 0.01
