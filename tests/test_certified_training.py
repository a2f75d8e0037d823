"""Certified training (``--defense certified``): schedules, the robust loss, gradients through
the bounds, and a short run through the project's trainer that lowers the verified error."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.bounds.certify import certify
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import DatasetSplit, load_digits_split
from neurodeploy.defenses.certified import (
    CertifiedConfig,
    CertifiedTraining,
    certified_bound,
    robust_logits,
)
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.training.defense import BatchContext, make_defense


def test_registered_with_prefixed_options():
    d = make_defense("certified", {"cert_eps": "0.1", "cert_cert_steps": "2",
                                   "cert_method": "ibp"})
    assert isinstance(d, CertifiedTraining)
    assert d.config.eps == 0.1 and d.config.cert_steps == 2 and d.config.method == "ibp"
    with pytest.raises(ConfigError):
        make_defense("certified", {"cert_epsilon": 0.1})
    with pytest.raises(ConfigError):
        make_defense("certified", {"cert_method": "zonotope"})


def test_schedules():
    c = CertifiedConfig(eps=0.1, ramp_start=0.2, ramp=0.5, kappa_start=1.0, kappa_final=0.4,
                        beta_start=1.0, beta_final=0.0)
    assert c.eps_at(0.0, 0) == 0.0 and c.eps_at(0.2, 0) == 0.0
    assert c.eps_at(0.45, 0) == pytest.approx(0.05)
    assert c.eps_at(0.7, 0) == pytest.approx(0.1) and c.eps_at(1.0, 0) == pytest.approx(0.1)
    assert c.kappa_at(0.0) == 1.0 and c.kappa_at(0.1) == pytest.approx(0.4)
    assert c.kappa_at(0.05) == pytest.approx(0.7)
    assert c.beta_at(0.05) == pytest.approx(0.5)
    e = CertifiedConfig(eps=0.2, ramp_epochs=4)
    assert [e.eps_at(0.9, k) for k in range(6)] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.2])


def test_robust_logits_pads_zero_at_true_class():
    lb = torch.tensor([[0.1, 0.2], [0.3, -0.4]])
    y = torch.tensor([0, 2])
    assert torch.equal(robust_logits(lb, y), torch.tensor([[0.0, -0.1, -0.2],
                                                           [-0.3, 0.4, 0.0]]))


def _small(seed=0, arch="FC32-FC10", steps=4):
    torch.manual_seed(seed)
    return SNNClassifier(build_model(ModelConfig(arch, (1, 8, 8), num_steps=steps,
                                                 readout="rate")), seed=seed)


@pytest.mark.parametrize("method", ["crown", "ibp", "crown-ibp"])
def test_bound_is_differentiable_in_every_layer(method):
    clf = _small(arch="C4K3S2-FC16-FC10")
    with torch.no_grad():
        for syn in clf.model.synapses:
            syn.weight.mul_(2.0)
    split = load_digits_split()
    x, y = split.train.x[:32], split.train.y[:32]
    lb = certified_bound(clf, x, y, 0.05, CertifiedConfig(method=method), beta=0.5)
    assert lb.shape == (32, 9)
    robust = torch.nn.functional.cross_entropy(robust_logits(lb, y), y)
    robust.backward()
    for k, syn in enumerate(clf.model.synapses):
        assert syn.weight.grad is not None and syn.weight.grad.abs().sum() > 0, k


def test_loss_mixes_clean_and_robust_terms():
    clf = _small()
    split = load_digits_split()
    x, y = split.train.x[:16], split.train.y[:16]
    d = CertifiedTraining(CertifiedConfig(eps=0.05, ramp=0.5, kappa_start=1.0, kappa_final=0.25))
    loss0, m0 = d.loss(BatchContext(clf, x, y, epoch=0, progress=0.0))
    assert m0["eps"] == 0.0 and m0["kappa"] == 1.0 and "robust_loss" not in m0
    loss1, m1 = d.loss(BatchContext(clf, x, y, epoch=0, progress=1.0))
    assert m1["eps"] == pytest.approx(0.05) and m1["kappa"] == pytest.approx(0.25)
    assert loss1.item() == pytest.approx(0.25 * m1["clean_loss"] + 0.75 * m1["robust_loss"],
                                         rel=1e-5)


def test_trainer_runs_certified_and_lowers_verified_error(tmp_path):
    from neurodeploy.training.trainer import TrainConfig, train

    full = load_digits_split()
    split = DatasetSplit(full.train.subset(600), full.test, full.description)
    eps, steps = 0.05, 4
    results = {}
    for name, defense in (("plain", make_defense("none")),
                          ("certified", make_defense("certified", {
                              "cert_eps": eps, "cert_cert_steps": 3, "cert_method": "crown-ibp",
                              "cert_ramp": 0.5, "cert_kappa_start": 1.0,
                              "cert_kappa_final": 0.3}))):
        clf = _small(seed=0, steps=steps)
        cfg = TrainConfig(epochs=4, batch_size=50, lr=5e-3, grad_clip=1.0, seed=0,
                          device="cpu", eval_every=4)
        train(clf, split, cfg, defense=defense, out_dir=tmp_path / name, quiet=True)
        r = certify(clf.model, full.test.x[:200], full.test.y[:200], eps, method="ibp", seed=3)
        results[name] = (r.verified_error, r.clean_accuracy)
    assert (tmp_path / "certified" / "model.pt").is_file()
    plain_err, plain_acc = results["plain"]
    cert_err, cert_acc = results["certified"]
    assert cert_acc > 0.5, results  # still a classifier
    assert cert_err < plain_err - 0.1, results
