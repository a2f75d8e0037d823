"""TGO: noisy LIF semantics and seeding, membrane constraint, λ schedule, proximal share."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurodeploy.classifier import SNNClassifier
from neurodeploy.defenses.tgo import (
    NoisyLIF,
    convert_to_noisy_,
    cosine_lambda,
    membrane_constraint,
    proximal_share,
    set_noise_at_inference_,
)
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, SNNTrace, build_model
from neurodeploy.neurons import LIF
from neurodeploy.training.defense import BatchContext, make_defense


def _models(sigma: float, noise_at_inference: bool = False, encoding: str = "bernoulli"):
    torch.manual_seed(0)
    cfg = ModelConfig("FC32-FC24-FC10", (1, 8, 8), num_steps=8, encoding=encoding)
    lif = build_model(cfg)
    noisy = build_model(
        ModelConfig(
            cfg.arch, cfg.input_shape, num_steps=8, encoding=encoding, neuron="noisy",
            neuron_params={"sigma": sigma, "noise_at_inference": noise_at_inference},
        )
    )
    noisy.synapses.load_state_dict(lif.synapses.state_dict())
    return lif, noisy


def test_noise_off_is_plain_lif_exactly():
    lif, noisy = _models(0.3)
    x_seq = (torch.rand(8, 5, 1, 8, 8) < 0.4).float()
    noisy.eval()  # eval, noise_at_inference=False → no noise
    a, b = lif.run(x_seq, record=True), noisy.run(x_seq, record=True)
    for k in range(3):
        assert torch.equal(a.spikes[k], b.spikes[k])
        assert torch.equal(a.mems[k], b.mems[k])
    # σ = 0 in training mode is the plain LIF too
    _, zero = _models(0.0)
    zero.train()
    assert torch.equal(zero.run(x_seq).logits, a.logits)
    assert isinstance(noisy.neurons[-1], LIF) and isinstance(noisy.neurons[0], NoisyLIF)


def _reference_noisy(cur, noise, alpha, theta):
    m_prev, s_prev = torch.zeros_like(cur[0]), torch.zeros_like(cur[0])
    spikes, mems = [], []
    for t in range(cur.shape[0]):
        m = cur[t] + alpha * m_prev * (1 - s_prev)
        s = (m + noise[t] > theta).to(m.dtype)
        spikes.append(s)
        mems.append(m)
        m_prev, s_prev = m, s
    return torch.stack(spikes), torch.stack(mems)


def test_noisy_step_fires_on_m_plus_xi_and_resets_with_the_actual_spike():
    torch.manual_seed(1)
    T, shape = 20, (4, 16)
    n = NoisyLIF(0.25, 0.25, sigma=0.2)
    n.train()
    n.generator = torch.Generator().manual_seed(11)
    cur = torch.rand(T, *shape) * 0.5
    state = n.init_state(cur[0])
    spk, mem = [], []
    for t in range(T):
        out = n(cur[t], state, t)
        state = out.state
        spk.append(out.spk)
        mem.append(out.mem)
    spk, mem = torch.stack(spk), torch.stack(mem)
    g = torch.Generator().manual_seed(11)
    noise = torch.stack([0.2 * torch.randn(shape, generator=g) for _ in range(T)])
    ref_s, ref_m = _reference_noisy(cur, noise, 0.25, 0.25)
    assert torch.equal(spk, ref_s) and torch.equal(mem, ref_m)
    clean_s, _ = _reference_noisy(cur, torch.zeros_like(noise), 0.25, 0.25)
    assert not torch.equal(spk, clean_s)  # the noise does flip spikes


def test_noise_is_reproducible_through_the_classifier_seed():
    _, noisy = _models(0.2, noise_at_inference=True, encoding="direct")
    noisy.eval()
    clf = SNNClassifier(noisy, seed=3)
    x = torch.rand(6, 1, 8, 8)
    assert clf.stochastic
    clf.reseed(3)
    a = clf.model.run(clf.encode(x), record=True).spikes[0]
    clf.reseed(3)
    b = clf.model.run(clf.encode(x), record=True).spikes[0]
    clf.reseed(4)
    c = clf.model.run(clf.encode(x), record=True).spikes[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    set_noise_at_inference_(noisy, False)
    assert not clf.stochastic and noisy.config.neuron_params["noise_at_inference"] is False
    assert torch.equal(clf(x), clf(x))


def test_membrane_constraint_by_hand_and_its_gradient():
    mem = torch.tensor([[[0.25, 0.27, 0.19, 0.60]], [[0.0, 0.33, 0.24, 0.31]]], requires_grad=True)
    trace = SNNTrace(logits=torch.zeros(1, 2), out_spikes=torch.zeros(()), v=(mem,),
                     theta=(torch.full_like(mem, 0.25),))
    c = membrane_constraint(trace, 0.05, [0])
    # per entry max(0, 0.05 − |m − 0.25|): .05, .03, 0, 0 | 0, 0, .04, 0  → mean over 8
    assert math.isclose(c.item(), (0.05 + 0.03 + 0.04) / 8, rel_tol=1e-6)
    c.backward()
    expected = torch.tensor([[[0.0, 1, 0, 0]], [[0, 0, -1, 0]]]) / 8
    # |m−θ| at m = θ has subgradient 0 in torch; inside the band the gradient points away from θ
    assert torch.allclose(-mem.grad, expected)
    with pytest.raises(ConfigError):
        membrane_constraint(trace, 0.0, [0])


def test_cosine_lambda_schedule():
    assert cosine_lambda(0.0, 2.0) == 0.0
    assert math.isclose(cosine_lambda(0.5, 2.0), 1.0)
    assert math.isclose(cosine_lambda(1.0, 2.0), 2.0)
    assert cosine_lambda(1.7, 2.0) == cosine_lambda(1.0, 2.0)
    vals = [cosine_lambda(p / 10, 1.0) for p in range(11)]
    assert vals == sorted(vals)


def test_proximal_share_counts_pre_reset_membranes():
    lif, _ = _models(0.1, encoding="direct")
    x = torch.rand(7, 1, 8, 8)
    share = proximal_share(lif, x, 0.05, batch_size=3)
    with torch.no_grad():
        tr = lif.run(x.unsqueeze(0).expand(8, *x.shape), record=True)
    near = [((m - 0.25).abs() < 0.05) for m in tr.mems]
    assert share.per_layer == tuple(int(n.sum()) / n.numel() for n in near)
    assert math.isclose(share.overall, sum(int(n.sum()) for n in near) / sum(n.numel() for n in near))


def test_tgo_defense_prepare_converts_and_loss_adds_lambda_mc():
    lif, _ = _models(0.1)
    clf = SNNClassifier(lif)
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    d = make_defense("tgo", {"tgo_sigma": 0.1, "tgo_lambda_max": 3.0, "tgo_delta": 0.1})
    d.prepare(clf, x, y)
    assert lif.config.neuron == "noisy" and isinstance(lif.neurons[1], NoisyLIF)
    assert lif.config.neuron_params == {"sigma": 0.1, "noise_at_inference": False}
    assert 0 < d.checkpoint_extra()["tgo"]["proximal_share_start"] < 1
    lif.train()
    for p, lam in ((0.0, 0.0), (1.0, 3.0)):
        loss, m = d.loss(BatchContext(clf, x, y, epoch=0, progress=p))
        assert m["lambda"] == lam
        assert math.isclose(loss.item(), m["task_loss"] + lam * m["mc"], rel_tol=1e-6)
    assert m["mc"] > 0
    with pytest.raises(ConfigError, match="sigma"):
        make_defense("tgo", {"tgo_sigma": 0.2}).prepare(clf, x, y)
    with pytest.raises(ConfigError, match="tgo_delt"):
        make_defense("tgo", {"tgo_delt": 0.2})


def test_membrane_constraint_training_lowers_the_proximal_share():
    torch.manual_seed(2)
    model = build_model(ModelConfig("FC32-FC10", (1, 8, 8), num_steps=6, encoding="direct"))
    x = torch.rand(64, 1, 8, 8)
    before = proximal_share(model, x, 0.1).overall
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        tr = model.run(x.unsqueeze(0).expand(6, *x.shape), record=True)
        loss = membrane_constraint(tr, 0.1, [0, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = proximal_share(model, x, 0.1).overall
    assert before > 0.02 and after < 0.5 * before


def test_noisy_neuron_params_are_validated():
    with pytest.raises(ConfigError, match="unknown neuron_params"):
        build_model(ModelConfig("FC8-FC10", (1, 8, 8), neuron="noisy", neuron_params={"sgma": 1}))
    with pytest.raises(ConfigError, match="sigma"):
        NoisyLIF(0.25, 0.25, sigma=-1.0)
    lif, _ = _models(0.1)
    convert_to_noisy_(lif, 0.1)
    with pytest.raises(ConfigError, match="neuron='lif'"):
        convert_to_noisy_(lif, 0.1)


def test_noisy_gradients_flow_in_training():
    _, noisy = _models(0.2, encoding="direct")
    noisy.train()
    clf = SNNClassifier(noisy)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    F.cross_entropy(clf(x), torch.arange(4)).backward()
    assert x.grad.abs().sum() > 0
