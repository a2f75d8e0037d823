"""S-IBP / S-CROWN / α-S-CROWN: exactness of each bounded operation, agreement with a literal
transcription of certify_snn, and soundness against ≥ 10⁴ sampled members of every
perturbation set (and a check that the same checker catches a broken bound)."""

from __future__ import annotations

import itertools

import pytest
import torch

from neurodeploy.bounds import ops
from neurodeploy.bounds.certify import (
    certify,
    certify_many,
    input_box,
    is_verified,
    margin_bounds,
    verified_error,
)
from neurodeploy.bounds.crown import RelaxParams, crown_margin_lower
from neurodeploy.bounds.ibp import ibp_bounds, ibp_margin_lower, margin_spec
from neurodeploy.bounds.network import bounded_layers
from neurodeploy.bounds.perturbation import (
    AnalogLinfSet,
    BernoulliLinfSet,
    SpikeFlipSet,
)
from neurodeploy.bounds.soundness import check_soundness
from neurodeploy.encoding import make_generator
from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelConfig, build_model

SAMPLES = 10_000  # per perturbation set: samples_per_input × batch


def _net(arch, shape, steps=6, encoding="bernoulli", scale=1.0, seed=0, readout="rate"):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch, shape, num_steps=steps, encoding=encoding,
                                    readout=readout))
    with torch.no_grad():
        for syn in model.synapses:
            if hasattr(syn, "weight"):
                syn.weight.mul_(scale)
                syn.bias.add_(0.1)
    return model.eval()


# ----------------------------------------------------------------------------- operations


def test_linear_interval_is_exact_over_binary_box():
    g = make_generator(0)
    w, b = torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    op = ops.BoundLinear(w, b, (6,))
    lo = torch.tensor([[0, 1, 0, 0, 1, 0.0]])
    hi = torch.tensor([[1, 1, 0, 1, 1, 1.0]])
    m_lo, m_hi = op.interval(lo, hi)
    free = [i for i in range(6) if lo[0, i] != hi[0, i]]
    vals = []
    for bits in itertools.product([0.0, 1.0], repeat=len(free)):
        s = lo.clone()
        s[0, free] = torch.tensor(bits)
        vals.append(op.forward(s))
    vals = torch.cat(vals)
    torch.testing.assert_close(m_lo[0], vals.min(0).values, rtol=0, atol=1e-6)
    torch.testing.assert_close(m_hi[0], vals.max(0).values, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv", "avgpool", "sumpool"])
def test_spatial_backward_is_the_adjoint(kind):
    """``linear(A)`` = (A·∂f/∂s, A·b): checked against autograd's vector-Jacobian product."""
    g = make_generator(1)
    if kind == "linear":
        op = ops.BoundLinear(torch.randn(7, 18, generator=g), torch.randn(7, generator=g),
                             (2, 3, 3))
        in_shape = (2, 3, 3)
    elif kind == "conv":
        op = ops.BoundConv2d(torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, generator=g),
                             2, 1, (2, 7, 7), (4, 4, 4))
        in_shape = (2, 7, 7)
    else:
        op = ops.BoundPool(2, 0.25 if kind == "avgpool" else 1.0, (3, 5, 5), (3, 2, 2))
        in_shape = (3, 5, 5)
    s = torch.rand(2, *in_shape, generator=g)
    out = op.forward(s)
    A = torch.randn(2, 3, *out.shape[1:], generator=g)
    a_in, const = op.linear(A)
    bias_out = op.forward(torch.zeros_like(s))
    for j in range(3):
        s_ = s.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((op.forward(s_) * A[:, j]).sum(), s_)
        torch.testing.assert_close(a_in[:, j], grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(const[:, j], (A[:, j] * bias_out).flatten(1).sum(1),
                                   rtol=1e-5, atol=1e-5)


def test_fire_relaxation_family_is_valid():
    g = make_generator(2)
    th = 0.25
    fire = ops.BoundFire(th)
    m_lo = torch.randn(400, generator=g)
    m_hi = m_lo + torch.rand(400, generator=g) * 2
    m_lo[:5] = th  # boundary case m_L = θ
    for fl, fh in [(None, None), (torch.rand(400, generator=g), torch.rand(400, generator=g)),
                   (torch.zeros(400), torch.ones(400)), (torch.ones(400), torch.zeros(400))]:
        r = fire.relaxation(m_lo, m_hi, fl, fh)
        grid = m_lo.unsqueeze(0) + (m_hi - m_lo).unsqueeze(0) * torch.linspace(0, 1, 101
                                                                                ).unsqueeze(1)
        grid = torch.cat([grid, torch.full((1, 400), th).clamp(m_lo, m_hi)])
        s = (grid > th).float()
        assert ((r.lw * grid + r.lb) <= s + 1e-6).all()
        assert ((r.uw * grid + r.ub) >= s - 1e-6).all()


def test_fire_relaxation_default_is_the_papers_choice():
    fire = ops.BoundFire(0.25)
    m_lo = torch.tensor([-1.0, 0.0, 0.3, -0.1])
    m_hi = torch.tensor([2.0, 0.4, 0.9, 0.2])
    r = fire.relaxation(m_lo, m_hi)
    # unstable, upper side larger: lower line through (θ,0),(m_U,1), upper s ≤ 1
    assert r.lw[0] == pytest.approx(1 / 1.75) and r.uw[0] == 0 and r.ub[0] == 1
    # unstable, lower side larger: s ≥ 0, upper line through (m_L,0),(θ,1)
    assert r.lw[1] == 0 and r.lb[1] == 0 and r.uw[1] == pytest.approx(1 / 0.25)
    assert r.ub[1] == pytest.approx(0.0, abs=1e-7)
    # always fires / never fires: constants
    assert (r.lw[2], r.lb[2], r.uw[2], r.ub[2]) == (0, 1, 0, 1)
    assert (r.lw[3], r.lb[3], r.uw[3], r.ub[3]) == (0, 0, 0, 0)


def test_temporal_relaxation_family_is_valid():
    g = make_generator(3)
    th = 0.25
    mem = ops.BoundMemUpdate(0.25, th)
    y_lo = torch.randn(300, generator=g) * 0.5
    y_hi = y_lo + torch.rand(300, generator=g)
    s_lo, s_hi = (y_lo > th).float(), (y_hi > th).float()
    for fl, fh in [(None, None), (torch.rand(300, generator=g), torch.rand(300, generator=g)),
                   (torch.ones(300), torch.ones(300))]:
        r = mem.relaxation(y_lo, y_hi, s_lo, s_hi, fl, fh)
        grid = y_lo + (y_hi - y_lo) * torch.linspace(0, 1, 101).unsqueeze(1)
        x = 1 - (grid > th).float()  # the branch the neuron is on
        z = x * grid
        assert ((r.ax_l * x + r.ay_l * grid + r.c_l) <= z + 1e-6).all()
        assert ((r.ax_u * x + r.ay_u * grid + r.c_u) >= z - 1e-6).all()


# ----------------------------------------------------------------------------- certify_snn


def _certify_snn_literal(weights, biases, s_U, s_L, y, theta=0.25, alpha=0.25):
    """A literal transcription of certify_snn's ``snn_bound`` / ``snn_crown_ibp`` for FC nets
    (index assignment as in ``snn_bound_layers.py``), for comparison."""
    T = s_U.shape[0]
    mU_all, mL_all, sU_all, sL_all = [], [], [], []
    xU, xL = s_U, s_L
    for w, b in zip(weights, biases, strict=True):
        mU, mL, sU, sL = [], [], [], []
        for t in range(T):
            fix = torch.addmm(b, xL[t], w.t())
            xor = (xU[t] + xL[t]) % 2
            mU.append(fix + xor @ w.clamp(min=0).t())
            mL.append(fix + xor @ w.clamp(max=0).t())
            if t > 0:
                u_tmp = torch.zeros_like(mU[t - 1])
                l_tmp = torch.zeros_like(mL[t - 1])
                i0 = sU[t - 1] == 0
                u_tmp[i0], l_tmp[i0] = mU[t - 1][i0], mL[t - 1][i0]
                i2 = (sU[t - 1] == 1) & (sL[t - 1] == 0)
                u_tmp[i2] = theta
                i3 = i2 & (mL[t - 1] < 0)
                l_tmp[i3] = mL[t - 1][i3]
                mU[t] = mU[t] + u_tmp * alpha
                mL[t] = mL[t] + l_tmp * alpha
            sU.append((mU[t] > theta).float())
            sL.append((mL[t] > theta).float())
        mU_all.append(mU), mL_all.append(mL), sU_all.append(sU), sL_all.append(sL)
        xU, xL = torch.stack(sU), torch.stack(sL)
    C = margin_spec(y, weights[-1].shape[0])
    ibp = torch.stack(sL).mean(0).unsqueeze(1) - torch.stack(sU).mean(0).unsqueeze(1)
    mid, diff = (torch.stack(sU).mean(0) + torch.stack(sL).mean(0)) / 2, (
        torch.stack(sU).mean(0) - torch.stack(sL).mean(0)) / 2
    ibp = (C @ mid.unsqueeze(-1)).squeeze(-1) - (C.abs() @ diff.unsqueeze(-1)).squeeze(-1)
    last_sA = [C / T for _ in range(T)]
    bias = 0
    for k in range(len(weights) - 1, -1, -1):
        w, b = weights[k], biases[k]
        next_mA = [0] * T
        next_sA = [0] * T
        for t in range(T - 1, -1, -1):
            m_U, m_L, s_U_, s_L_ = mU_all[k][t], mL_all[k][t], sU_all[k][t], sL_all[k][t]
            ud, ub = torch.zeros_like(m_U), torch.ones_like(m_U)
            ld, lb = torch.zeros_like(m_U), torch.zeros_like(m_U)
            lb[s_L_ == 1] = 1
            ub[s_U_ == 0] = 0
            i2 = (s_U_ == 1) & (s_L_ == 0)
            i3 = i2 & ((m_U - theta) >= (theta - m_L))
            i4 = i2 & ((m_U - theta) < (theta - m_L))
            ld[i3] = 1 / (m_U[i3] - theta)
            lb[i3] = (ld * (-theta))[i3]
            ud[i4] = 1 / (theta - m_L[i4])
            ub[i4] = (ud * (-m_L))[i4]
            pos, neg = last_sA[t].clamp(min=0), last_sA[t].clamp(max=0)
            next_mA[t] = next_mA[t] + ud.unsqueeze(1) * neg + ld.unsqueeze(1) * pos
            bias = bias + (neg * ub.unsqueeze(1)).sum(-1) + (pos * lb.unsqueeze(1)).sum(-1)
            if t > 0:
                tmp = alpha * next_mA[t]
                xU_, xL_ = 1 - sL_all[k][t - 1], 1 - sU_all[k][t - 1]
                yL = mL_all[k][t - 1]
                p_, n_ = tmp.clamp(min=0), tmp.clamp(max=0)
                next_mA[t - 1] = next_mA[t - 1] + xL_.unsqueeze(1) * tmp
                i2 = ((xU_ == 1) & (xL_ == 0)).unsqueeze(1)
                tp_x = torch.where(i2, yL.unsqueeze(1) * p_ + theta * n_, torch.zeros_like(tmp))
                bias = bias + tp_x.sum(-1)
                last_sA[t - 1] = last_sA[t - 1] - tp_x
            next_sA[t] = next_mA[t] @ w
            bias = bias + next_mA[t] @ b
        last_sA = next_sA
    crown = sum((A @ ((s_U[t] + s_L[t]) / 2).unsqueeze(-1)).squeeze(-1)
                - (A.abs() @ ((s_U[t] - s_L[t]) / 2).unsqueeze(-1)).squeeze(-1)
                for t, A in enumerate(last_sA)) + bias
    return ibp, crown, (mU_all, mL_all)


@pytest.mark.parametrize("steps", [1, 4])
def test_matches_certify_snn_literal(steps):
    model = _net("FC24-FC16-FC10", (1, 5, 5), steps=steps, scale=1.5)
    g = make_generator(4)
    x = torch.rand(6, 1, 5, 5, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    box = input_box(model, x, 0.05, steps, make_generator(5))
    out, bounds = margin_bounds(model, box, y, ("ibp", "crown"))
    ws = [s.weight.detach() for s in model.synapses]
    bs = [s.bias.detach() for s in model.synapses]
    ibp, crown, (mU, mL) = _certify_snn_literal(ws, bs, box.hi.flatten(2), box.lo.flatten(2), y)
    for k, lb in enumerate(bounds):
        torch.testing.assert_close(lb.m_hi, torch.stack(mU[k]), rtol=0, atol=1e-5)
        torch.testing.assert_close(lb.m_lo, torch.stack(mL[k]), rtol=0, atol=1e-5)
    torch.testing.assert_close(out["ibp"], ibp, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["crown"], crown, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- soundness

NETS = {
    "fc": ("FC32-FC16-FC10", (1, 6, 6)),
    "conv-avgpool": ("C4K3S2-AP2-FC10", (1, 8, 8)),
    "conv-sumpool-conv": ("C4K3S1-SP2-C4K3S2-FC10", (2, 8, 8)),
}
ALPHA_FAST = {"alpha-crown": {"iterations": 2, "lr": 0.3}}


def _report(rep):
    return (f"membrane {rep.membrane_violations} spikes {rep.spike_violations} margins "
            f"{rep.margin_violations} worst gap {rep.worst_margin_gap}")


@pytest.mark.parametrize("name", list(NETS))
def test_sound_bernoulli_linf(name):
    arch, shape = NETS[name]
    model = _net(arch, shape, steps=6)
    g = make_generator(10)
    x = torch.rand(8, *shape, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    rep = check_soundness(model, BernoulliLinfSet(0.03), x, y, 6, SAMPLES // 8,
                          ("ibp", "crown", "alpha-crown"), g, method_options=ALPHA_FAST)
    assert rep.samples >= SAMPLES
    assert rep.sound, _report(rep)


def test_sound_spike_flip_sets():
    arch, shape = NETS["conv-sumpool-conv"]
    model = _net(arch, shape, steps=5, encoding="spikes")
    g = make_generator(11)
    s = (torch.rand(5, 8, *shape, generator=g) < 0.3).float()
    y = torch.randint(0, 10, (8,), generator=g)
    for pset in (SpikeFlipSet(0.1), SpikeFlipSet(mode="all")):
        rep = check_soundness(model, pset, s, y, 5, SAMPLES // 8, ("ibp", "crown"), g)
        assert rep.samples >= SAMPLES
        assert rep.sound, _report(rep)


def test_sound_analog_direct_coding_and_short_horizon():
    arch, shape = NETS["fc"]
    model = _net(arch, shape, steps=8, encoding="direct")
    g = make_generator(12)
    x = torch.rand(8, *shape, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    rep = check_soundness(model, AnalogLinfSet(0.02), x, y, 3, SAMPLES // 8, ("ibp", "crown"), g)
    assert rep.sound, _report(rep)


def test_checker_catches_dropped_temporal_carry(monkeypatch):
    arch, shape = NETS["fc"]
    model = _net(arch, shape, steps=6)
    g = make_generator(13)
    x = torch.rand(8, *shape, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    monkeypatch.setattr(ops.BoundMemUpdate, "carry_interval",
                        lambda self, m_lo, m_hi, s_lo, s_hi: (torch.zeros_like(m_lo),) * 2)
    rep = check_soundness(model, BernoulliLinfSet(0.03), x, y, 6, 1000, ("ibp",), g)
    assert not rep.sound
    assert sum(rep.membrane_violations) > 0


def test_checker_catches_broken_crown(monkeypatch):
    """A fire relaxation that claims a larger lower line breaks S-CROWN (not S-IBP); the
    relaxation is shared by the paper-relaxation fast path and the generic path."""
    arch, shape = NETS["conv-avgpool"]
    model = _net(arch, shape, steps=6)
    g = make_generator(14)
    x = torch.rand(8, *shape, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    orig = ops.BoundFire.relaxation

    def broken(self, *args, **kwargs):
        r = orig(self, *args, **kwargs)
        return ops.LinearRelaxation(r.lw, r.lb + 0.5, r.uw, r.ub - 0.5)  # lines moved inward

    monkeypatch.setattr(ops.BoundFire, "relaxation", broken)
    rep = check_soundness(model, BernoulliLinfSet(0.03), x, y, 6, 1000, ("ibp", "crown"), g)
    assert rep.margin_violations["ibp"] == 0
    assert rep.margin_violations["crown"] > 0


def _train_digits(steps=4):
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_digits_split

    split = load_digits_split()
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC48-FC10", (1, 8, 8), num_steps=steps, readout="rate"))
    clf = SNNClassifier(model, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(3):
        perm = torch.randperm(len(split.train.y))
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(clf(split.train.x[idx]) * 4,
                                                     split.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, split


def test_sound_on_trained_digits_net():
    model, split = _train_digits()
    x, y = split.test.x[:10], split.test.y[:10]
    with torch.no_grad():
        acc = certify(model, split.test.x, split.test.y, 0.0, method="ibp").clean_accuracy
    assert acc > 0.6  # the net did learn; bounds on a trained net are the point
    g = make_generator(15)
    rep = check_soundness(model, BernoulliLinfSet(0.05), x, y, 4, SAMPLES // 10,
                          ("ibp", "crown", "alpha-crown"), g, method_options=ALPHA_FAST)
    assert rep.sound, _report(rep)


def test_sound_on_reference_checkpoint(shared_dir):
    from neurodeploy.data.idx import load_idx_split
    from neurodeploy.models import import_state_dict

    model = import_state_dict(
        shared_dir / "reference_models/certify_snn/FC_T_3_eps_0.06.pth.tar",
        ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate"))
    test = load_idx_split(shared_dir / "data/mnist").test
    g = make_generator(16)
    # 2,000 members here (the 10⁴-sample trained-net check is the digits test above)
    rep = check_soundness(model, BernoulliLinfSet(0.06), test.x[:4], test.y[:4], 10, 500,
                          ("ibp", "crown"), g)
    assert rep.sound, _report(rep)


# ----------------------------------------------------------------------------- tightness / API


def test_constant_fire_relaxation_equals_ibp_and_alpha_dominates():
    """With every fire relaxed by constants (slopes 0) the backward pass stops at the output
    layer and S-CROWN equals S-IBP; α-S-CROWN starts there, so it is never looser than S-IBP
    nor than the paper's S-CROWN (which *can* be looser than S-IBP: the step's linear
    relaxation may lose up to 1 per unstable output neuron and step)."""
    model = _net("C4K3S2-AP2-FC10", (1, 8, 8), steps=5)
    g = make_generator(17)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    box = input_box(model, x, 0.03, 5, make_generator(18))
    layers = bounded_layers(model, surrogate=False)
    with torch.no_grad():
        bounds = ibp_bounds(layers, box)
        spec = margin_spec(y, 10)
        params = RelaxParams()
        for k, lb in enumerate(bounds):
            for t in range(5):
                params.fire_lo[(k, t)] = torch.zeros_like(lb.m_lo[t])
                params.fire_hi[(k, t)] = torch.zeros_like(lb.m_lo[t])
        const = crown_margin_lower(layers, bounds, spec, box, params)
        ibp = ibp_margin_lower(bounds[-1], y)
    torch.testing.assert_close(const, ibp, rtol=0, atol=1e-6)
    out, _ = margin_bounds(model, box, y, ("ibp", "crown", "alpha-crown"),
                           method_options={"alpha-crown": {"iterations": 5}})
    assert (out["alpha-crown"] >= torch.maximum(out["ibp"], out["crown"]) - 1e-6).all()


def test_certify_api_and_conventions():
    model = _net("FC32-FC16-FC10", (1, 6, 6), steps=4)
    g = make_generator(19)
    x = torch.rand(20, 1, 6, 6, generator=g)
    y = torch.randint(0, 10, (20,), generator=g)
    r = certify(model, x, y, 0.02, cert_steps=3, method="crown", seed=1)
    assert r.margin_lb.shape == (20, 9) and r.verified.shape == (20,)
    assert r.clean_correct.shape == (20,) and r.cert_steps == 3
    assert torch.equal(r.verified, (r.margin_lb > 0).all(1))
    assert verified_error(model, x, y, 0.02, 3, "crown", seed=1) == pytest.approx(
        r.verified_error)
    # a zero margin (a possible tie) is not verified
    assert not is_verified(torch.zeros(1, 9)).item()
    # same seed → same numbers
    r2 = certify(model, x, y, 0.02, cert_steps=3, method="crown", seed=1)
    assert torch.equal(r.margin_lb, r2.margin_lb)
    many = certify_many(model, x, y, 0.02, 3, ("ibp", "crown"), seed=1)
    assert torch.equal(many["crown"].margin_lb, r.margin_lb)
    # ε = 0 on a clean draw: bounds collapse to the network's own margin
    with torch.no_grad():
        box = input_box(model, x, 0.0, 3, make_generator(2))
        out, _ = margin_bounds(model, box, y, ("ibp", "crown"))
        rates = model(box.lo).gather(1, y[:, None]) - model(box.lo)
    from neurodeploy.bounds.ibp import other_classes

    exact = rates.gather(1, other_classes(y, 10))
    torch.testing.assert_close(out["ibp"], exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["crown"], exact, rtol=0, atol=1e-5)


def test_refuses_other_neurons_and_methods():
    with pytest.raises(ConfigError):
        certify(_net("FC8-FC10", (1, 4, 4), readout="membrane"), torch.rand(2, 1, 4, 4),
                torch.tensor([0, 1]), 0.1)
    model = _net("FC8-FC10", (1, 4, 4))
    with pytest.raises(ConfigError):
        certify(model, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), 0.1, method="zonotope")
    with pytest.raises(ConfigError):
        BernoulliLinfSet(-0.1)
    bad = _net("FC8-FC10", (1, 4, 4))
    object.__setattr__(bad.config, "neuron", "noisy")
    with pytest.raises(ConfigError, match="canonical LIF"):
        certify(bad, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), 0.1)
