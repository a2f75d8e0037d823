"""Attacks: registry/config validation, threat model (ε-ball, domain, ℓ0 budget), shapes,
APGD schedule and strength, Square on non-differentiable callables, gradient modes, EoT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurodeploy.attacks import TransferAttack, is_correct, make_attack
from neurodeploy.attacks.apgd import checkpoint_schedule, target_ranking
from neurodeploy.attacks.base import dlr_loss, dlr_targeted_loss, margin_loss
from neurodeploy.attacks.eot import eot_loss_grad
from neurodeploy.attacks.grad_modes import RateGradNeuron, gradient_mode
from neurodeploy.attacks.toy import cached_digits_snn
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model

TOL = 1e-6  # float32 rounding of x ± ε
BOX_ATTACKS = {
    "fgsm": {}, "rfgsm": {}, "bim": {"n_iter": 3}, "pgd": {"n_iter": 3, "n_restarts": 2},
    "apgd-ce": {"n_iter": 4}, "apgd-dlr": {"n_iter": 4}, "apgd-t": {"n_iter": 3, "n_target_classes": 2},
    "square": {"n_queries": 15},
}


@pytest.fixture(scope="module")
def digits():
    sp = load_digits_split()
    return sp.test.x[:64], sp.test.y[:64]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return cached_digits_snn(str(tmp_path_factory.getbasetemp()), epochs=3)


def tiny_snn(encoding: str = "direct", seed: int = 0, steps: int = 4) -> SNNClassifier:
    torch.manual_seed(seed)
    m = build_model(ModelConfig("FC32-FC10", (1, 8, 8), num_steps=steps, encoding=encoding))
    with torch.no_grad():
        for s in m.synapses:
            s.weight.mul_(3.0)
    return SNNClassifier(m.eval(), seed=seed)


class TimeFirstAnalog(nn.Module):
    """Analog (current) input given time-first ``[T, B, 1, 8, 8]`` in [0, 1]."""

    batch_dim = 1

    def __init__(self, clf: SNNClassifier) -> None:
        super().__init__()
        self.model = clf.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------- registry


def test_unknown_attack_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        make_attack("pgdd")
    for name in ("apgd-ce", "apgd-dlr", "apgd-t", "fgsm", "pgd", "square", "spike-g2s", "spike-topk"):
        assert name in str(err.value)


@pytest.mark.parametrize("name,params", [
    ("pgd", {"n_iters": 5}), ("apgd-ce", {"loss": "dlr"}), ("fgsm", {"steps": 1}),
])
def test_unknown_parameter_is_refused(name, params):
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_attack(name, **params)


@pytest.mark.parametrize("name,params", [
    ("pgd", {"n_iter": 0}), ("pgd", {"loss": "hinge"}), ("apgd-ce", {"norm": "l1"}),
    ("pgd", {"grad_mode": "bpttt"}), ("pgd", {"grad_mode": "bptt:nope"}), ("square", {"p_init": 0}),
    ("apgd-ce", {"eot_iter": 0}), ("spike-g2s", {"zero_grad_flip_prob": 2.0}),
])
def test_invalid_values_are_refused(name, params):
    with pytest.raises(ConfigError):
        make_attack(name, **params)


def test_eps_outside_domain_is_refused(digits):
    x, y = digits
    clf = tiny_snn()
    for eps in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError):
            make_attack("fgsm").perturb(clf, x, y, eps)
    spk = tiny_snn("spikes")
    s = (torch.rand(4, 8, 1, 8, 8) < 0.3).float()
    with pytest.raises(ConfigError):
        make_attack("spike-g2s").perturb(spk, s, torch.zeros(8, dtype=torch.long), 2.5)
    with pytest.raises(ConfigError, match="spike"):
        make_attack("pgd").perturb(spk, s, torch.zeros(8, dtype=torch.long), 2)


# --------------------------------------------------------------------------- threat model


@pytest.mark.parametrize("name", sorted(BOX_ATTACKS))
@pytest.mark.parametrize("eps", [0.03, 0.3])
def test_box_attacks_stay_in_ball_and_domain(name, eps, digits):
    x, y = digits
    clf = tiny_snn("bernoulli") if name in ("pgd", "apgd-ce") else tiny_snn()
    params = dict(BOX_ATTACKS[name])
    if name != "square":
        params["eot_iter"] = 2 if clf.stochastic else None
    x_adv = make_attack(name, **params).perturb(clf, x, y, eps, torch.Generator().manual_seed(1))
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + TOL
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd-ce", "square"])
def test_time_first_box_input(name, digits):
    x, y = digits
    clf = TimeFirstAnalog(tiny_snn())
    xt = x.unsqueeze(0).expand(4, *x.shape).contiguous()  # [T, B, 1, 8, 8]
    params = dict(BOX_ATTACKS[name])
    x_adv = make_attack(name, **params).perturb(clf, xt, y, 0.1)
    assert x_adv.shape == xt.shape
    assert (x_adv - xt).abs().max() <= 0.1 + TOL
    # per-sample independence along the batch dim (dim 1): perturbing only uses that sample
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_l2_attacks_stay_in_l2_ball(digits):
    x, y = digits
    for name in ("pgd", "apgd-ce", "fgsm"):
        x_adv = make_attack(name, norm="l2", **({} if name == "fgsm" else {"n_iter": 4})).perturb(
            tiny_snn(), x, y, 0.5)
        assert (x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
        assert x_adv.min() >= 0 and x_adv.max() <= 1


# --------------------------------------------------------------------------- spikes (ℓ0)


@pytest.fixture(scope="module")
def spike_model():
    """A spike-input SNN trained on fixed Bernoulli spike trains of digits."""
    sp = load_digits_split()
    g = torch.Generator().manual_seed(0)
    T = 6
    xs = (sp.train.x.unsqueeze(0) > torch.rand(T, *sp.train.x.shape, generator=g)).float()
    from neurodeploy.attacks.toy import train_digits_snn

    clf = train_digits_snn("spikes", num_steps=T, epochs=3, x=xs, y=sp.train.y)
    xt = (sp.test.x[:48].unsqueeze(0) > torch.rand(T, 48, 1, 8, 8, generator=g)).float()
    return clf, xt, sp.test.y[:48]


@pytest.mark.parametrize("name", ["spike-g2s", "spike-topk", "square"])
@pytest.mark.parametrize("budget", [0, 1, 7, 40])
def test_spike_attacks_binary_and_within_budget(name, budget, spike_model):
    clf, xt, y = spike_model
    params = {"n_iter": 4} if name != "square" else {"n_queries": 20}
    x_adv = make_attack(name, **params).perturb(clf, xt, y, budget, torch.Generator().manual_seed(3))
    assert x_adv.shape == xt.shape
    assert bool(((x_adv == 0) | (x_adv == 1)).all())
    flips = (x_adv != xt).permute(1, 0, 2, 3, 4).reshape(xt.shape[1], -1).sum(1)
    assert int(flips.max()) <= budget
    if budget == 0:
        assert torch.equal(x_adv, xt)


@pytest.mark.parametrize("name", ["spike-g2s", "spike-topk"])
def test_spike_attacks_break_points(name, spike_model):
    clf, xt, y = spike_model
    with torch.no_grad():
        clean = is_correct(clf(xt), y)
    x_adv = make_attack(name, n_iter=15).perturb(clf, xt, y, 40)
    with torch.no_grad():
        adv = is_correct(clf(x_adv), y)
    assert adv.float().mean() <= clean.float().mean() - 0.1


# --------------------------------------------------------------------------- APGD details


def test_checkpoint_schedule_matches_autoattack():
    # AutoAttack, N = 100: checks after 22, 41, 57, 70, 80, 87, 93, 99 iterations
    assert [i + 1 for i in checkpoint_schedule(100)] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert [i + 1 for i in checkpoint_schedule(10)] == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_losses_exact():
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0], [1.0, 4.0, 0.0, 2.0]])
    y = torch.tensor([0, 2])
    assert torch.equal(margin_loss(z, y), torch.tensor([2.0 - 3.0, 4.0 - 0.0]))
    # DLR: -(z_y - max_{i≠y}) / (π1 - π3)
    expect = torch.tensor([-(3.0 - 2.0) / (3.0 - 1.0 + 1e-12), -(0.0 - 4.0) / (4.0 - 1.0 + 1e-12)])
    assert torch.allclose(dlr_loss(z, y), expect, rtol=0, atol=1e-7)
    t = torch.tensor([2, 1])
    expect_t = torch.tensor([-(3.0 - 2.0) / (3.0 - 0.5 * (1.0 + 0.0) + 1e-12),
                             -(0.0 - 4.0) / (4.0 - 0.5 * (1.0 + 0.0) + 1e-12)])
    assert torch.allclose(dlr_targeted_loss(z, y, t), expect_t, rtol=0, atol=1e-7)
    assert target_ranking(z, y).tolist() == [[2, 1, 3], [1, 3, 0]]


def test_apgd_not_weaker_than_pgd_on_trained_digits_snn(trained, digits):
    x, y = digits
    accs = {}
    for name in ("pgd", "apgd-ce"):
        x_adv = make_attack(name, n_iter=30).perturb(trained, x, y, 0.1, torch.Generator().manual_seed(0))
        with torch.no_grad():
            accs[name] = float(is_correct(trained(x_adv), y).float().mean())
    with torch.no_grad():
        clean = float(is_correct(trained(x), y).float().mean())
    assert accs["apgd-ce"] <= accs["pgd"] < clean


def test_attacks_are_seeded(digits):
    x, y = digits
    clf = tiny_snn()
    a = make_attack("pgd", n_iter=3)
    r1 = a.perturb(clf, x, y, 0.1, torch.Generator().manual_seed(5))
    r2 = a.perturb(clf, x, y, 0.1, torch.Generator().manual_seed(5))
    r3 = a.perturb(clf, x, y, 0.1, torch.Generator().manual_seed(6))
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)


# --------------------------------------------------------------------------- Square


def numpy_classifier(seed: int = 0):
    """Non-differentiable: numpy linear map, then integer 'spike counts' (floor)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(64, 10)).astype(np.float32)

    def f(x: torch.Tensor) -> np.ndarray:
        a = x.detach().cpu().numpy().reshape(x.shape[0], -1)
        return np.floor(a @ W * 2.0)

    return f, W


def test_square_on_non_differentiable_callable(digits):
    x, _ = digits
    f, _ = numpy_classifier()
    y = torch.as_tensor(np.argmax(f(x), 1))  # labels = its own predictions → clean acc 100 %
    x_adv = make_attack("square", n_queries=200).perturb(f, x, y, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + TOL and x_adv.min() >= 0 and x_adv.max() <= 1
    acc = (torch.as_tensor(np.argmax(f(x_adv), 1)) == y).float().mean()
    assert acc < 0.9
    with pytest.raises(ConfigError, match="spiking model"):
        make_attack("pgd", grad_mode="bptr").perturb(f, x, y, 0.1)


# --------------------------------------------------------------------------- grad modes


def _one_layer(encoding="direct"):
    torch.manual_seed(0)
    m = build_model(ModelConfig("FC10", (1, 2, 2), num_steps=5, encoding=encoding))
    with torch.no_grad():
        m.synapses[0].weight.copy_(torch.randn(10, 4))
        m.synapses[0].bias.copy_(torch.linspace(-0.3, 0.3, 10))
    return SNNClassifier(m.eval())


def test_grad_modes_keep_forward_and_restore():
    clf = _one_layer()
    x = torch.rand(6, 1, 2, 2)
    ref = clf(x)
    neuron = clf.model.neurons[0]
    fn = neuron.spike_fn
    for mode in ("bptt:atan", "bptr", "rga"):
        with gradient_mode(clf, mode):
            assert torch.equal(clf(x), ref)
            if mode != "bptt:atan":
                assert isinstance(clf.model.neurons[0], RateGradNeuron)
        assert clf.model.neurons[0] is neuron and neuron.spike_fn is fn


def test_bptr_and_rga_gradients_exact():
    clf = _one_layer()
    x = torch.rand(3, 1, 2, 2)
    W = clf.model.synapses[0].weight.detach()
    b = clf.model.synapses[0].bias.detach()
    T, theta, alpha = 5, 0.25, 0.25
    c = 4
    with torch.no_grad():
        out = clf.model.run(clf.encode(x)).out_spikes  # [T, B, 10]
    fired = (out.sum(0)[:, c] > 0).float()
    for mode in ("bptr", "rga"):
        xg = x.clone().requires_grad_(True)
        with gradient_mode(clf, mode):
            clf(xg)[:, c].sum().backward()
        if mode == "bptr":
            coef = fired
        else:
            u = ((xg.detach().flatten(1) @ W.T + b)[:, c]) / theta
            mid = (1 - 0.2 + 0.2 * alpha) / (alpha + 1)
            coef = torch.where((u >= 0) & (u <= 1 - alpha), torch.tensor(0.2),
                               torch.where((u >= 1 - alpha) & (u <= 2), torch.tensor(mid), torch.tensor(0.0))) / theta
        expect = (T * coef[:, None] * W[c][None, :]).view_as(x)
        assert torch.allclose(xg.grad, expect, atol=1e-6), mode


def test_grad_mode_changes_the_gradient():
    clf = _one_layer()
    x = torch.rand(4, 1, 2, 2)
    grads = {}
    for mode in ("bptt", "bptt:atan", "bptr"):
        xg = x.clone().requires_grad_(True)
        with gradient_mode(clf, mode):
            nn.functional.cross_entropy(clf(xg), torch.zeros(4, dtype=torch.long)).backward()
        grads[mode] = xg.grad
    assert not torch.allclose(grads["bptt"], grads["bptt:atan"])
    assert not torch.allclose(grads["bptt"], grads["bptr"])


def test_bptr_attack_runs_and_stays_in_ball(digits, trained):
    x, y = digits
    for mode in ("bptr", "rga", "bptt:triangle"):
        x_adv = make_attack("pgd", n_iter=3, grad_mode=mode).perturb(trained, x, y, 0.1)
        assert (x_adv - x).abs().max() <= 0.1 + TOL


# --------------------------------------------------------------------------- EoT / transfer


def test_eot_folding_equals_single_draw_for_deterministic_model(digits):
    x, y = digits
    clf = tiny_snn()
    from neurodeploy.attacks.base import BatchFirst, ce_loss

    f = BatchFirst(clf, 0)
    z1, l1, g1 = eot_loss_grad(f, x, y, ce_loss, 1)
    z3, l3, g3 = eot_loss_grad(f, x, y, ce_loss, 3)
    assert torch.allclose(z1, z3, atol=1e-6) and torch.allclose(l1, l3, atol=1e-6)
    assert torch.allclose(g1, g3, atol=1e-6)


def test_eot_averages_stochastic_gradients(digits):
    x, y = digits
    clf = tiny_snn("bernoulli")
    from neurodeploy.attacks.base import BatchFirst, ce_loss

    f = BatchFirst(clf, 0)
    clf.reseed(0)
    _, _, g_many = eot_loss_grad(f, x[:4], y[:4], ce_loss, 4)
    clf.reseed(0)
    # the same 4 draws, one at a time: the folded batch draws u for [4·B] in one call, so
    # compare with a manual fold
    xr = x[:4].unsqueeze(0).expand(4, *x[:4].shape).reshape(16, *x.shape[1:]).clone().requires_grad_(True)
    nn.functional.cross_entropy(clf(xr), y[:4].repeat(4), reduction="sum").backward()
    manual = xr.grad.view(4, 4, *x.shape[1:]).mean(0)
    assert torch.allclose(g_many, manual, atol=1e-6)


def test_transfer_attack_uses_source(digits):
    x, y = digits
    src, tgt = tiny_snn(seed=1), tiny_snn(seed=2)
    base = make_attack("pgd", n_iter=3)
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    x_t = TransferAttack(base, src).perturb(tgt, x, y, 0.1, gen())
    x_s = base.perturb(src, x, y, 0.1, gen())
    assert torch.equal(x_t, x_s)
    assert TransferAttack(base, src).to_dict()["transfer"] is True
