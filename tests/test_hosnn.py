"""HoSNN: TA-LIF step semantics, gradients through θ, NDS collection, conversion, defense."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurodeploy.classifier import SNNClassifier
from neurodeploy.defenses.hosnn import (
    TALIF,
    collect_nds,
    convert_to_hosnn_,
    hosnn_from_lif,
    talif_modules,
)
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from neurodeploy.neurons import LIF
from neurodeploy.training.defense import make_defense


def _reference_talif(currents, alpha, theta0, theta_v, nds):
    """Pure-Python TA-LIF for one neuron: lists of floats in, (spikes, mems, thetas) out."""
    m_prev, s_prev, th = 0.0, 0.0, theta0
    spikes, mems, thetas = [], [], []
    for t, cur in enumerate(currents):
        m = cur + alpha * m_prev * (1.0 - s_prev)
        th = th + theta_v * (m - nds[t])
        s = 1.0 if m > th else 0.0
        spikes.append(s)
        mems.append(m)
        thetas.append(th)
        m_prev, s_prev = m, s
    return spikes, mems, thetas


def _run_population(neuron, currents):
    state = neuron.init_state(currents[0])
    spk, mem, th = [], [], []
    for t in range(currents.shape[0]):
        out = neuron(currents[t], state, t)
        state = out.state
        spk.append(out.spk)
        mem.append(out.mem)
        th.append(out.theta)
    return torch.stack(spk), torch.stack(mem), torch.stack(th)


def test_talif_three_steps_by_hand():
    # Dyadic numbers: every operation is exact in binary floating point.
    n = TALIF(alpha=0.25, theta=0.25, shape=(1,), num_steps=3, theta_v_init=0.5)
    n.set_nds(torch.tensor([[0.125], [0.25], [0.5]]))
    cur = torch.tensor([[0.5], [0.25], [0.5]])
    spk, mem, th = _run_population(n, cur)
    # t=0: m = 0.5; θ = 0.25 + 0.5·(0.5 − 0.125) = 0.4375; 0.5 > 0.4375 → spike
    # t=1: m = 0.25 + 0.25·0.5·0 = 0.25 (reset); θ = 0.4375 + 0.5·(0.25 − 0.25) = 0.4375; no spike
    # t=2: m = 0.5 + 0.25·0.25 = 0.5625; θ = 0.4375 + 0.5·(0.5625 − 0.5) = 0.46875 → spike
    assert spk.flatten().tolist() == [1.0, 0.0, 1.0]
    assert mem.flatten().tolist() == [0.5, 0.25, 0.5625]
    assert th.flatten().tolist() == [0.4375, 0.4375, 0.46875]


def test_talif_matches_reference_over_24_steps_with_resets():
    torch.manual_seed(1)
    T, N = 24, 6
    alpha, theta0 = 0.25, 0.25
    n = TALIF(alpha, theta0, (N,), T).double()
    theta_v = torch.tensor([0.0, 0.2, 0.5, 1.0, 0.05, 2.0], dtype=torch.float64)
    with torch.no_grad():
        n.theta_v.copy_(theta_v)
    nds = torch.rand(T, N, dtype=torch.float64) * 0.3
    n.set_nds(nds)
    cur = torch.rand(T, 2, N, dtype=torch.float64) * 0.7 - 0.1
    spk, mem, th = _run_population(n, cur)
    resets = 0
    for b in range(2):
        for i in range(N):
            rs, rm, rt = _reference_talif(
                cur[:, b, i].tolist(), alpha, theta0, float(theta_v[i]), nds[:, i].tolist()
            )
            assert spk[:, b, i].tolist() == rs
            assert mem[:, b, i].tolist() == rm
            assert th[:, b, i].tolist() == rt
            resets += sum(1 for t in range(T - 1) if rs[t] == 1.0)
    assert resets >= 10  # the trace really exercises hard resets
    assert spk.sum() < spk.numel()  # and non-spiking steps


def test_theta_reinitialised_per_sample_and_batch_independent():
    torch.manual_seed(2)
    n = TALIF(0.25, 0.25, (4,), 5, theta_v_init=0.7)
    n.set_nds(torch.rand(5, 4) * 0.2)
    cur = torch.rand(5, 3, 4)
    whole = _run_population(n, cur)
    for b in range(3):
        single = _run_population(n, cur[:, b : b + 1])
        for a, s in zip(whole, single, strict=True):
            assert torch.equal(a[:, b : b + 1], s)
    state = n.init_state(cur[0])
    assert torch.equal(state[2], torch.full_like(cur[0], 0.25))
    again = _run_population(n, cur)  # no state carried between calls
    assert all(torch.equal(a, b) for a, b in zip(whole, again, strict=True))


def _lif_and_hosnn(theta_v: float, arch: str = "FC24-FC16-FC10", seed: int = 0):
    torch.manual_seed(seed)
    lif = build_model(ModelConfig(arch, (1, 8, 8), num_steps=6))
    x = torch.rand(16, 1, 8, 8)
    nds = collect_nds(SNNClassifier(lif), x, batch_size=8)
    return lif, hosnn_from_lif(lif, nds, theta_v), x


def test_theta_v_zero_is_plain_lif_exactly():
    lif, hos, x = _lif_and_hosnn(0.0)
    x_seq = (torch.rand(6, *x.shape) < x).float()
    a = lif.run(x_seq, record=True)
    b = hos.run(x_seq, record=True)
    for k in range(3):
        assert torch.equal(a.spikes[k], b.spikes[k])
        assert torch.equal(a.mems[k], b.mems[k])
    assert torch.equal(a.logits, b.logits)


def test_output_layer_stays_lif_and_nds_shapes():
    lif, hos, _ = _lif_and_hosnn(0.2)
    assert isinstance(hos.neurons[-1], LIF)
    assert [type(n) for n in hos.neurons[:-1]] == [TALIF, TALIF]
    assert hos.config.neuron == "talif"
    assert lif.config.neuron == "lif"  # hosnn_from_lif copies
    assert tuple(hos.neurons[0].nds.shape) == (6, 24)
    assert tuple(hos.neurons[1].nds.shape) == (6, 16)
    for k in range(2):
        assert torch.equal(hos.synapses[k].weight, lif.synapses[k].weight)


def test_collect_nds_is_mean_pre_reset_membrane():
    torch.manual_seed(3)
    model = build_model(ModelConfig("FC12-FC10", (1, 8, 8), num_steps=4, encoding="direct"))
    x = torch.rand(10, 1, 8, 8)
    nds = collect_nds(model, x, batch_size=3)
    with torch.no_grad():
        trace = model.run(x.unsqueeze(0).expand(4, *x.shape), record=True)
    assert len(nds) == 1
    assert torch.allclose(nds[0], trace.mems[0].mean(1), atol=1e-6, rtol=0)
    # pre-reset: some neurons fire, so the mean exceeds the post-reset mean
    post = trace.mems[0] * (1 - trace.spikes[0])
    assert (nds[0] > post.mean(1) + 1e-6).any()


def _detached_theta_forward(self, current, state, t):
    from neurodeploy.neurons import StepOut, lif_fire, lif_integrate

    mem_prev, spk_prev, theta_prev = state
    mem = lif_integrate(current, mem_prev, spk_prev, self.alpha)
    theta = (theta_prev + self.theta_v * (mem - self.nds[t])).detach()
    spk = lif_fire(mem, theta, self.spike_fn)
    return StepOut(spk, mem, theta, (mem, spk, theta))


def test_white_box_gradient_flows_through_theta(monkeypatch):
    _, hos, x = _lif_and_hosnn(0.5, seed=4)
    clf = SNNClassifier(hos, seed=7)
    y = torch.arange(16) % 10

    def grads():
        clf.reseed(7)
        hos.zero_grad()
        xi = x.clone().requires_grad_(True)
        loss = F.cross_entropy(clf(xi), y)
        loss.backward()
        return xi.grad.clone(), [n.theta_v.grad for n in talif_modules(hos)]

    g_full, gv = grads()
    assert g_full.abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in gv)  # ∂loss/∂θ_v ≠ 0
    monkeypatch.setattr(TALIF, "forward", _detached_theta_forward)
    g_det, gv_det = grads()
    assert all(g is None or g.abs().sum() == 0 for g in gv_det)
    assert not torch.allclose(g_full, g_det)  # θ dynamics contribute to ∂loss/∂x


def test_checkpoint_round_trip_keeps_nds_and_theta_v(tmp_path):
    _, hos, x = _lif_and_hosnn(0.3)
    with torch.no_grad():
        hos.neurons[0].theta_v[3] = 0.9
    path = tmp_path / "hosnn.pt"
    save_checkpoint(path, hos)
    loaded, rec = load_checkpoint(path)
    assert rec["config"]["neuron"] == "talif"
    for a, b in zip(talif_modules(hos), talif_modules(loaded), strict=True):
        assert torch.equal(a.nds, b.nds)
        assert torch.equal(a.theta_v, b.theta_v)
    x_seq = (torch.rand(6, *x.shape) < x).float()
    hos.eval()
    assert torch.equal(hos(x_seq), loaded(x_seq))


def test_conversion_validates_nds():
    torch.manual_seed(0)
    lif = build_model(ModelConfig("FC24-FC10", (1, 8, 8), num_steps=6))
    with pytest.raises(ConfigError, match="hidden layers"):
        hosnn_from_lif(lif, [torch.zeros(6, 24), torch.zeros(6, 10)])
    with pytest.raises(ConfigError, match="shape"):
        hosnn_from_lif(lif, [torch.zeros(5, 24)])
    with pytest.raises(ConfigError, match="NaN"):
        hosnn_from_lif(lif, [torch.full((6, 24), float("nan"))])
    hos = hosnn_from_lif(lif, [torch.zeros(6, 24)])
    with pytest.raises(ConfigError, match="plain LIF"):
        convert_to_hosnn_(hos, [torch.zeros(6, 24)])


def test_defense_prepare_converts_in_place_and_clamps_theta_v():
    torch.manual_seed(5)
    model = build_model(ModelConfig("FC16-FC10", (1, 8, 8), num_steps=5))
    clf = SNNClassifier(model)
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    untrained = make_defense("hosnn")
    with pytest.raises(ConfigError, match="--init-from"):
        untrained.prepare(clf, x, y)  # an untrained LIF (≈10 %) has no meaningful NDS
    assert model.config.neuron == "lif"
    expected = collect_nds(clf, x)  # the defense's defaults: batch 256, seed 0
    d = make_defense("hosnn", {"hosnn_min_clean_acc": "0", "hosnn_theta_v_init": 0.4})
    d.prepare(clf, x, y)
    assert clf.model is model and model.config.neuron == "talif"
    assert model.config.neuron_params == {"theta_v_init": 0.4}
    (n,) = talif_modules(model)
    assert torch.equal(n.nds, expected[0])
    with torch.no_grad():
        n.theta_v[:4] = -1.0
    d.after_step(clf)
    assert (n.theta_v >= 0).all() and n.theta_v[:4].eq(0).all() and n.theta_v[4:].eq(0.4).all()
    d.prepare(clf, x, y)  # already TA-LIF (resume): kept as is
    assert talif_modules(model) == [n]
    assert d.checkpoint_extra()["hosnn"]["theta_v_init"] == 0.4


def test_defense_options_are_checked():
    with pytest.raises(ConfigError, match="hosnn_theta_vinit"):
        make_defense("hosnn", {"hosnn_theta_vinit": 0.1})
    with pytest.raises(ConfigError, match="cannot read"):
        make_defense("hosnn", {"hosnn_theta_v_init": "abc"})
    with pytest.raises(ConfigError, match=">= 0"):
        make_defense("hosnn", {"hosnn_theta_v_init": -0.1})


def test_talif_refuses_steps_beyond_its_nds():
    n = TALIF(0.25, 0.25, (3,), 2)
    cur = torch.zeros(1, 3)
    with pytest.raises(ConfigError, match="outside its NDS"):
        n(cur, n.init_state(cur), 2)


def test_cli_train_hosnn_from_clean_lif_checkpoint(tmp_path):
    """`neurodeploy train --init-from lif.pt --defense hosnn` converts the clean LIF model
    (NDS collected from it) and saves a TA-LIF checkpoint whose NDS is in the state dict."""
    from neurodeploy.cli import main
    from neurodeploy.models import load_checkpoint

    base = ["--data", "digits", "--train-limit", "600", "--test-limit", "60", "-q",
            "--threads", "1"]
    lif = tmp_path / "lif"
    assert main(["train", *base, "--arch", "FC64-FC10", "--epochs", "4", "--lr", "0.01",
                 "--out", str(lif)]) == 0
    out = tmp_path / "hosnn"
    assert main(["train", *base, "--init-from", str(lif / "model.pt"), "--defense", "hosnn",
                 "--epochs", "1", "--out", str(out)]) == 0
    model, _ = load_checkpoint(out / "model.pt")
    assert model.config.neuron == "talif"
    assert [n.kind for n in model.neurons] == ["talif", "lif"]
    assert any("nds" in k for k in model.state_dict())
