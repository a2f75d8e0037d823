"""Adversarial training (FGSM-AT, PGD-AT, RAT) and defense composition."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.attacks import make_attack
from neurodeploy.classifier import SNNClassifier
from neurodeploy.defenses.adversarial import AdversarialTraining, orthogonal_retraction_
from neurodeploy.defenses.compose import ComposedDefense
from neurodeploy.defenses.hosnn import talif_modules
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.training.defense import BatchContext, make_defense


def _clf(seed: int = 0, arch: str = "FC24-FC10") -> SNNClassifier:
    torch.manual_seed(seed)
    cfg = ModelConfig(arch, (1, 8, 8), num_steps=6, encoding="direct")
    return SNNClassifier(build_model(cfg), seed=seed)


def _batch(n: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 10


def test_retraction_formula_and_orthonormal_fixed_point():
    torch.manual_seed(0)
    lin, conv = nn.Linear(7, 5), nn.Conv2d(2, 3, 3)
    model = nn.Sequential(lin, conv)
    w_lin, w_conv = lin.weight.detach().clone(), conv.weight.detach().clone().reshape(3, -1)
    beta = 0.01
    orthogonal_retraction_(model, beta)
    assert torch.allclose(lin.weight, (1 + beta) * w_lin - beta * w_lin @ w_lin.T @ w_lin)
    expect = ((1 + beta) * w_conv - beta * w_conv @ w_conv.T @ w_conv).reshape(conv.weight.shape)
    assert torch.allclose(conv.weight, expect)
    q, _ = torch.linalg.qr(torch.randn(7, 5))
    with torch.no_grad():
        lin.weight.copy_(q.T)  # orthonormal rows
    before = lin.weight.detach().clone()
    orthogonal_retraction_(nn.Sequential(lin), 0.1)
    assert torch.allclose(lin.weight, before, atol=1e-6)


def test_retraction_updates_30_percent_of_rows_of_wide_layers_reproducibly():
    torch.manual_seed(0)
    lin = nn.Linear(4, 250)
    w0 = lin.weight.detach().clone()
    orthogonal_retraction_(nn.Sequential(lin), 0.05, torch.Generator().manual_seed(3))
    changed = (lin.weight != w0).any(1)
    assert int(changed.sum()) == int(250 * 0.3)
    w1 = lin.weight.detach().clone()
    lin.weight.data.copy_(w0)
    orthogonal_retraction_(nn.Sequential(lin), 0.05, torch.Generator().manual_seed(3))
    assert torch.equal(lin.weight, w1)


def test_names_and_options():
    at = make_defense("at")
    assert isinstance(at, AdversarialTraining) and at.attack_name == "fgsm"  # at = fgsm-at
    assert make_defense("at", {"at_attack": "pgd"}).attack_name == "pgd"
    assert make_defense("pgd-at").attack_name == "pgd"
    assert make_defense("rat").rat is not None and make_defense("rat").attack_name == "fgsm"
    with pytest.raises(ConfigError, match="always uses pgd"):
        make_defense("pgd-at", {"at_attack": "fgsm"})
    with pytest.raises(ConfigError, match="rat_"):
        make_defense("fgsm-at", {"rat_beta": 0.1})
    with pytest.raises(ConfigError, match="at_eps"):
        make_defense("fgsm-at", {"at_eps": 2.0})
    with pytest.raises(ConfigError, match="at_epsilon"):
        make_defense("fgsm-at", {"at_epsilon": 0.1})


def test_fgsm_at_loss_is_ce_on_the_attack_suites_fgsm_example():
    clf = _clf()
    x, y = _batch()
    d = make_defense("fgsm-at", {"at_eps": 0.1})
    ctx = BatchContext(clf, x, y, epoch=0, progress=0.5, generator=clf.generator)
    loss, m = d.loss(ctx)
    x_adv = make_attack("fgsm", eot_iter=1).perturb(clf, x, y, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_adv, x)
    expected = F.cross_entropy(clf(x_adv), y)
    assert torch.equal(loss.detach(), expected.detach())
    assert m["at_eps"] == 0.1 and 0 <= m["adv_acc"] <= 1
    loss.backward()
    assert clf.model.synapses[0].weight.grad.abs().sum() > 0


def test_pgd_at_and_clean_mix_and_warmup():
    clf = _clf()
    x, y = _batch()
    d = make_defense("pgd-at", {"at_eps": 0.1, "at_steps": 2, "at_clean_weight": 0.25,
                                "at_warmup": 0.5})
    assert d.eps_at(0.0) == 0.0 and d.eps_at(0.25) == pytest.approx(0.05) and d.eps_at(0.9) == 0.1
    ctx = BatchContext(clf, x, y, epoch=0, progress=0.0)
    loss0, _ = d.loss(ctx)  # ε = 0 at the start of the warm-up: plain CE
    assert torch.allclose(loss0, F.cross_entropy(clf(x), y))
    g = torch.Generator().manual_seed(5)
    ctx = BatchContext(clf, x, y, epoch=0, progress=1.0, generator=g)
    loss, m = d.loss(ctx)
    g = torch.Generator().manual_seed(5)
    x_adv = make_attack("pgd", n_iter=2, eot_iter=1).perturb(clf, x, y, 0.1, g)
    expected = 0.75 * F.cross_entropy(clf(x_adv), y) + 0.25 * F.cross_entropy(clf(x), y)
    assert torch.allclose(loss, expected)
    assert "train_acc" in m and "adv_acc" in m


def test_rat_after_step_retracts_with_the_classifier_generator():
    clf = _clf()
    d = make_defense("rat", {"rat_beta": 0.02})
    w = [clf.model.synapses[k].weight.detach().clone() for k in range(2)]
    d.after_step(clf)
    for k in range(2):
        expect = 1.02 * w[k] - 0.02 * w[k] @ w[k].T @ w[k]
        assert torch.allclose(clf.model.synapses[k].weight, expect)


def test_tgo_plus_at_computes_the_tgo_loss_on_x_adv():
    clf = _clf()
    x, y = _batch()
    opts = {"tgo_sigma": 0.0, "tgo_lambda_max": 5.0, "at_eps": 0.1}
    d = make_defense("tgo+at", opts)
    assert isinstance(d, ComposedDefense) and d.name == "tgo+at"
    d.prepare(clf, x, y)
    ctx = BatchContext(clf, x, y, epoch=0, progress=1.0)
    loss, m = d.loss(ctx)
    x_adv = make_attack("fgsm", eot_iter=1).perturb(clf, x, y, 0.1)
    tgo = make_defense("tgo", opts)
    ref, rm = tgo.loss(dataclasses.replace(ctx, x=x_adv))
    assert torch.allclose(loss, ref) and m["mc"] == pytest.approx(rm["mc"])
    assert m["mc"] > 0 and m["lambda"] == 5.0
    assert make_defense("at+tgo", opts).name == "tgo+at"  # order does not matter
    extra = d.checkpoint_extra()
    assert extra["defense"] == "tgo+at" and len(extra["parts"]) == 2


def test_hosnn_plus_at_converts_and_clamps():
    clf = _clf(arch="FC16-FC10")
    x, y = _batch(20)
    d = make_defense("hosnn+fgsm-at", {"hosnn_min_clean_acc": 0.0, "at_eps": 0.05})
    d.prepare(clf, x, y)
    assert clf.model.config.neuron == "talif"
    (n,) = talif_modules(clf.model)
    loss, _ = d.loss(BatchContext(clf, x, y, epoch=0, progress=0.5))
    loss.backward()
    assert n.theta_v.grad is not None
    with torch.no_grad():
        n.theta_v[0] = -0.5
    d.after_step(clf)
    assert n.theta_v[0] == 0


@pytest.mark.parametrize(
    "spec, match",
    [
        ("hosnn+tgo", "replace the hidden neurons"),
        ("at+rat", "two adversarial-training parts"),
        ("fgsm-at+pgd-at", "two adversarial-training parts"),
        ("tgo+tgo", "twice"),
        ("none+at", "'none'"),
        ("tgo", None),
        ("hosnn+tgo+at", "replace the hidden neurons"),
    ],
)
def test_composition_rules(spec, match):
    if match is None:
        make_defense(spec)
        return
    with pytest.raises(ConfigError, match=match):
        make_defense(spec)


@pytest.mark.skipif(
    importlib.util.find_spec("neurodeploy.defenses.certified") is None,
    reason="certified defense not available",
)
def test_certified_compositions():
    with pytest.raises(ConfigError, match="plain LIF only"):
        make_defense("certified+tgo")
    with pytest.raises(ConfigError, match="plain LIF only"):
        make_defense("certified+hosnn")
    d = make_defense("certified+at")
    assert isinstance(d, ComposedDefense) and d.mix
