"""Attack-time views of a classifier (issue 11, point 1): backward surrogates independent of
training (incl. the adaptive ASSG surrogate), the smooth threshold input gradient around a known
Bernoulli map, the loss on the output membrane — each through the modules and through the fused
path (same logits, same gradients) — and known-draw classifiers bound to examples."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks.base import BatchFirst, attack_views, ce_loss, membrane_logits
from neurodeploy.attacks.fastsnn import fast_classifier
from neurodeploy.attacks.grad_modes import gradient_mode
from neurodeploy.classifier import AUX_LOGITS, SNNClassifier
from neurodeploy.encoding import (
    KnownDrawEncoder,
    host_spikes,
    host_uniform,
    parse_input_grad,
    threshold_grad_weight,
)
from neurodeploy.errors import ConfigError, DataError
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.surrogates import adaptive_sharpness, make_surrogate


def _model(arch="FC48-FC32-FC10", readout="rate", alpha=0.5, seed=0):
    torch.manual_seed(seed)
    m = build_model(ModelConfig(arch, (1, 6, 6), num_steps=5, encoding="bernoulli",
                                readout=readout, alpha=alpha, theta=0.25, surrogate="rect"))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _x(n=16, seed=1):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def _grad(f, x, y, loss=ce_loss):
    xg = x.clone().requires_grad_(True)
    z = f(xg)
    (g,) = torch.autograd.grad(loss(z, y).sum(), xg)
    return z.detach(), g


VIEWS = [
    ("bptt:fast_sigmoid:5", "ste", "readout"),
    ("bptt:assg", "ste", "readout"),
    ("bptt:assg:2", "sigmoid:10", "membrane"),
    ("bptt:atan", "sigmoid:20", "readout"),
    ("bptt", "ste", "membrane"),
]


@pytest.mark.parametrize("mode,input_grad,loss_on", VIEWS)
@pytest.mark.parametrize("readout", ["rate", "membrane"])
def test_fused_views_equal_modules(mode, input_grad, loss_on, readout):
    model = _model(readout=readout)
    n = 16
    enc = KnownDrawEncoder.from_host(torch.arange(n), seed=5, num_steps=5, shape=(1, 6, 6))
    x, y = _x(n), torch.arange(n) % 10
    cfg = make_attack("pgd", grad_mode=mode, input_grad=input_grad, loss_on=loss_on).config
    loss = ce_loss if loss_on == "readout" else (lambda z, yy: ce_loss(membrane_logits(z), yy))
    ref, fastc = SNNClassifier(model, enc), SNNClassifier(model, enc)
    with gradient_mode(ref, mode), attack_views(ref, cfg):
        z_ref, g_ref = _grad(ref, x, y, loss)
    with gradient_mode(fastc, mode), attack_views(fastc, cfg):
        fast = fast_classifier(fastc)
        assert fast is not None
        z_fast, g_fast = _grad(fast, x, y, loss)
    assert torch.equal(z_ref, z_fast)
    assert g_ref.abs().max() > 0
    assert torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-6), (g_fast - g_ref).abs().max()


def test_views_leave_forward_values_and_are_restored():
    model = _model()
    clf = SNNClassifier(model, KnownDrawEncoder.from_host(torch.arange(8), 0, 5, (1, 6, 6)))
    x = _x(8)
    z0 = clf(x)
    cfg = make_attack("apgd-ce", input_grad="sigmoid:5", loss_on="membrane").config
    with attack_views(clf, cfg):
        z1 = clf(x)
        assert getattr(z1, AUX_LOGITS).shape == z1.shape
    assert torch.equal(z0, z1)
    assert (clf.input_grad, clf.aux_logits) == ("ste", "none")
    assert getattr(clf(x), AUX_LOGITS, None) is None


def test_smooth_input_gradient_is_the_sigmoid_derivative_around_u():
    # one layer-free check: d/dx of sum_t s[t] with s = 1[x > u] under sigmoid:k
    from neurodeploy.encoding import bernoulli_spikes

    x = torch.tensor([[0.3, 0.7]], requires_grad=True)
    u = torch.tensor([[[0.31, 0.2]], [[0.9, 0.69]]])  # [T=2, B=1, 2]
    s = bernoulli_spikes(x, u, "sigmoid:10")
    assert torch.equal(s, (x.detach().unsqueeze(0) > u).float())
    (g,) = torch.autograd.grad(s.sum(), x)
    sig = torch.sigmoid(10 * (x.detach().unsqueeze(0) - u))
    assert torch.allclose(g, (10 * sig * (1 - sig)).sum(0))
    assert torch.allclose(threshold_grad_weight(x.detach(), u, 10.0).sum(0), g)
    # near a threshold (x = 0.7 vs u = 0.69) the weight is larger than far from one
    w = threshold_grad_weight(x.detach(), u, 10.0)
    assert w[1, 0, 1] > w[0, 0, 1]
    with pytest.raises(ConfigError):
        parse_input_grad("sigmoid:-1")
    with pytest.raises(ConfigError):
        parse_input_grad("tanh")


def test_adaptive_sharpness_per_example():
    x = torch.tensor([[0.1, -0.3], [2.0, -2.0]])
    a = adaptive_sharpness(x, 1.0)
    assert torch.allclose(a.flatten(), torch.tensor([1 / 0.2, 1 / 2.0]))
    fn = make_surrogate("assg:2")
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(xg).sum(), xg)
    aa = 2.0 / torch.tensor([[0.2], [2.0]])
    assert torch.allclose(g, (aa / 2) / (1 + (torch.pi / 2 * aa * x) ** 2))
    # one example's gradient does not depend on the other rows of the batch
    xa = x[:1].clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(fn(xa).sum(), xa)
    assert torch.allclose(ga, g[:1])


def test_host_maps_and_known_draw_binding():
    x = _x(6)
    idx = torch.tensor([3, 9, 4, 0, 1, 2])
    enc = KnownDrawEncoder.from_host(idx, seed=2, num_steps=5, shape=(1, 6, 6))
    assert torch.equal(enc(x), host_spikes(x, idx, 2, 5))
    sub = enc.select(torch.tensor([4, 1]))
    assert torch.equal(sub.u, host_uniform(idx[[4, 1]], 2, 5, (1, 6, 6)))
    assert torch.equal(sub(x[[4, 1]]), host_spikes(x[[4, 1]], idx[[4, 1]], 2, 5))
    # EoT folding: a batch of k·N rows tiles the maps
    assert torch.equal(sub(x[[4, 1]].repeat(3, 1, 1, 1))[:, 2:4], sub(x[[4, 1]]))
    with pytest.raises(DataError, match="select"):
        enc(x[:4])
    model = _model()
    clf = SNNClassifier(model, enc)
    assert not clf.stochastic and clf.bound
    f = BatchFirst(clf, 0)
    rows = torch.tensor([5, 0, 2])
    assert torch.equal(f.rows(rows)(x[rows]), clf(x)[rows])


@pytest.mark.parametrize("name,params", [
    ("apgd-t", {"n_iter": 8, "n_target_classes": 3}),
    ("apgd-ce", {"n_iter": 8, "n_restarts": 2}),
    ("apgd-dlr", {"n_iter": 8}),
    ("pgd", {"n_iter": 6, "n_restarts": 2}),
    ("bim", {"n_iter": 6}),
])
@pytest.mark.parametrize("threat", ["unknown-eot", "known"])
def test_active_set_shrinks_under_eot_and_binding(name, params, threat):
    """Issue 11 point 10: per-example state (targets, maps) follows the still-active rows."""
    model = _model(seed=3)
    n = 24
    x = _x(n, seed=4)
    known = SNNClassifier(model, KnownDrawEncoder.from_host(torch.arange(n), 1, 5, (1, 6, 6)))
    y = known(x).argmax(1)  # every point starts correct under its known map
    if threat == "known":
        clf = known
        extra = {}
    else:
        clf = SNNClassifier(model, seed=0)
        extra = {"eot_iter": 3}
    atk = make_attack(name, **params, **extra)
    adv = atk.perturb(clf, x, y, 0.02)
    assert (adv - x).abs().max() <= 0.02 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    if threat == "known":  # some points fall early, others stay: the active set shrank
        wrong = clf(adv).argmax(1) != y
        assert 0 < int(wrong.sum()) < n
