"""The attacks' fused LIF input-gradient path (neurodeploy.attacks.fastsnn) against autograd
through the model's own modules: equal logits, close input gradients, the same draws for
stochastic encoders; eligibility; and that attacks use it (and can opt out)."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks.base import ce_loss
from neurodeploy.attacks.fastsnn import FastSNN, fast_classifier
from neurodeploy.attacks.grad_modes import gradient_mode
from neurodeploy.classifier import SNNClassifier
from neurodeploy.encoding import FixedBernoulliEncoder
from neurodeploy.errors import ConfigError, DataError
from neurodeploy.models import ModelConfig, build_model

CASES = [
    ("FC64-FC32-FC10", (1, 8, 8), "bernoulli", "rate", 0.25, "rect"),
    ("FC64-FC10", (1, 8, 8), "direct", "count", 0.9, "atan"),
    ("C4K3S2P1-AP2-FC16-FC10", (1, 8, 8), "bernoulli", "membrane", 0.5, "rect"),
    ("C4K3S1-SP2-C4K3S2-FC10", (2, 8, 8), "direct", "rate", 0.25, "fast_sigmoid"),
    ("FC32-FC10", (1, 6, 6), "spikes", "count", 0.25, "triangle"),
]


def _clf(arch, shape, enc, readout, alpha, surrogate, seed=0):
    torch.manual_seed(seed)
    m = build_model(ModelConfig(arch, shape, num_steps=6, encoding=enc, readout=readout,
                                alpha=alpha, theta=0.25, surrogate=surrogate))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)  # enough activity for every branch of the recurrence
    return m


def _inputs(shape, enc, n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    if enc == "spikes":
        return (torch.rand(6, n, *shape, generator=g) < 0.3).float()
    return torch.rand(n, *shape, generator=g)


def _logits_and_grad(f, x, y):
    xg = x.clone().requires_grad_(True)
    z = f(xg)
    (g,) = torch.autograd.grad(ce_loss(z, y).sum(), xg)
    return z.detach(), g


@pytest.mark.parametrize("case", CASES, ids=[c[0] + "-" + c[2] for c in CASES])
def test_fused_path_equals_modules(case):
    arch, shape, enc, readout, alpha, surrogate = case
    model = _clf(*case)
    x = _inputs(shape, enc)
    y = torch.randint(0, 10, (x.shape[1 if enc == "spikes" else 0],),
                      generator=torch.Generator().manual_seed(2))
    ref_clf, fast_clf = SNNClassifier(model, seed=7), SNNClassifier(model, seed=7)
    fast = fast_classifier(fast_clf)
    assert isinstance(fast, FastSNN)
    z_ref, g_ref = _logits_and_grad(ref_clf, x, y)
    z_fast, g_fast = _logits_and_grad(fast, x, y)
    assert torch.equal(z_ref, z_fast)  # same draws, same arithmetic
    assert g_ref.abs().max() > 0
    assert torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-6), (g_fast - g_ref).abs().max()
    # both classifiers consumed the same random stream: the next draws agree too
    assert torch.equal(ref_clf(x), fast(x))


def test_fused_path_follows_the_gradient_mode_surrogate():
    model = _clf(*CASES[0])
    x, y = _inputs((1, 8, 8), "bernoulli"), torch.arange(24) % 10
    clf = SNNClassifier(model, seed=3)
    with gradient_mode(clf, "bptt:atan"):
        clf.reseed(3)
        _, g_ref = _logits_and_grad(clf, x, y)
        clf.reseed(3)
        _, g_fast = _logits_and_grad(fast_classifier(clf), x, y)
    clf.reseed(3)
    _, g_rect = _logits_and_grad(clf, x, y)
    assert torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(g_rect, g_ref)  # the mode changed the gradient


def test_ineligible_classifiers_use_the_modules():
    from neurodeploy.defenses import hosnn, tgo  # noqa: F401 - registers the neuron kinds

    assert fast_classifier(torch.nn.Linear(4, 2)) is None
    for neuron in ("talif", "noisy"):
        m = build_model(ModelConfig("FC16-FC10", (1, 4, 4), neuron=neuron))
        assert fast_classifier(SNNClassifier(m)) is None
    clf = SNNClassifier(build_model(ModelConfig("FC16-FC10", (1, 4, 4))))
    assert fast_classifier(clf) is not None
    for mode in ("bptr", "rga"):
        with gradient_mode(clf, mode):
            assert fast_classifier(clf) is None


def test_attacks_use_the_fused_path_unless_disabled(monkeypatch):
    model = _clf(*CASES[1])
    clf = SNNClassifier(model)
    x, y = _inputs((1, 8, 8), "direct", n=16), torch.arange(16) % 10
    calls = []
    orig = FastSNN.__call__
    monkeypatch.setattr(FastSNN, "__call__", lambda self, xb: calls.append(1) or orig(self, xb))
    adv_fused = make_attack("apgd-ce", n_iter=10).perturb(clf, x, y, 0.1)
    assert calls
    n = len(calls)
    adv_plain = make_attack("apgd-ce", n_iter=10, fused=False).perturb(clf, x, y, 0.1)
    assert len(calls) == n
    for adv in (adv_fused, adv_plain):
        assert (adv - x).abs().max() <= 0.1 + 1e-6
    with pytest.raises(ConfigError):
        make_attack("pgd", fused="yes")


def test_fixed_bernoulli_encoder():
    enc = FixedBernoulliEncoder.draw(5, (1, 4, 4), seed=0)
    x = torch.rand(3, 1, 4, 4)
    s1, s2 = enc(x), enc(x)
    assert torch.equal(s1, s2) and s1.shape == (5, 3, 1, 4, 4)
    assert torch.equal(s1, (x.unsqueeze(0) > enc.u).float())
    assert not enc.stochastic
    with pytest.raises(DataError):
        enc(torch.rand(3, 1, 5, 5))
    with pytest.raises(ConfigError):
        FixedBernoulliEncoder(5, torch.rand(4, 1, 1, 4, 4))


def test_spike_function_without_gradient_gives_zero_gradient():
    """A Heaviside without surrogate (gradient masking) must not raise: zero input gradient,
    as through the modules (the masking checks then flag it)."""
    model = _clf(*CASES[0])
    for neuron in model.neurons:
        neuron.spike_fn = lambda v: (v > 0).float()
    fast = fast_classifier(SNNClassifier(model))
    x, y = _inputs((1, 8, 8), "bernoulli"), torch.arange(24) % 10
    _, g = _logits_and_grad(fast, x, y)
    assert torch.equal(g, torch.zeros_like(g))
