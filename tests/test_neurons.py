"""Neuron semantics against hand-derived traces (exact dyadic arithmetic, so equality is exact).

Canonical LIF: m[t] = I[t] + α·m[t-1]·(1 − s[t-1]);  s[t] = 1[m[t] > θ]  (strict, hard reset).
"""

from __future__ import annotations

from fractions import Fraction as Fr

import pytest
import torch

from neurodeploy.models import ModelConfig, build_model
from neurodeploy.neurons import LIF, LeakyIntegrator, lif_step
from neurodeploy.surrogates import make_surrogate

# --- Trace A: α = 1/2, θ = 1, 24 steps. Derivation (m[t] = I + m[t-1]/2, or I after a spike):
#  t0 5/8 | t1 5/8+5/16=15/16 | t2 5/8+15/32=35/32 >1 SPIKE | t3 reset: 5/8 | t4 15/16 |
#  t5 35/32 SPIKE | t6 3/2 SPIKE | t7 -1/4 (reset) | t8 1/2-1/8=3/8 | t9 1/2+3/16=11/16 |
#  t10 1/2+11/32=27/32 | t11 1+27/64=91/64 SPIKE | t12 0 (reset) | t13 1+0=1, NOT >1 |
#  t14 1/8+1/2=5/8 | t15 7/8+5/16=19/16 SPIKE | t16 1/4 (reset) | t17 3/4+1/8=7/8 |
#  t18 -1/2+7/16=-1/16 | t19 2-1/32=63/32 SPIKE | t20 2 (reset) SPIKE | t21 0 (reset) |
#  t22 1/2 | t23 3/4+1/4=1, NOT >1
A_ALPHA, A_THETA = 0.5, 1.0
A_IN = "5/8 5/8 5/8 5/8 5/8 5/8 3/2 -1/4 1/2 1/2 1/2 1 0 1 1/8 7/8 1/4 3/4 -1/2 2 2 0 1/2 3/4"
A_MEM = (
    "5/8 15/16 35/32 5/8 15/16 35/32 3/2 -1/4 3/8 11/16 27/32 91/64 0 1 5/8 19/16 1/4 7/8 "
    "-1/16 63/32 2 0 1/2 1"
)
A_SPK = "0 0 1 0 0 1 1 0 0 0 0 1 0 0 0 1 0 0 0 1 1 0 0 0"

# --- Trace B: the project default α = θ = 1/4, 20 steps.
#  t0..t7: m = 1/8 + m/4 → 1/8, 5/32, 21/128, … (→ 1/6 < 1/4, never fires) |
#  t8 1/4 + 21845/524288 = 152917/524288 > 1/4 SPIKE | t9 1/4 (reset) NOT >1/4 |
#  t10..t12 3/16 + 1/16 = 1/4 NOT >1/4 (strict) | t13 -1/8 + 1/16 = -1/16 | t14 1/2 - 1/64 = 31/64
#  SPIKE | t15 0 (reset) | t16 0 | t17 3/16 | t18 1/4 + 3/64 = 19/64 SPIKE | t19 1/16 (reset)
B_ALPHA, B_THETA = 0.25, 0.25
B_IN = "1/8 1/8 1/8 1/8 1/8 1/8 1/8 1/8 1/4 1/4 3/16 3/16 3/16 -1/8 1/2 0 0 3/16 1/4 1/16"
B_MEM = (
    "1/8 5/32 21/128 85/512 341/2048 1365/8192 5461/32768 21845/131072 152917/524288 "
    "1/4 1/4 1/4 1/4 -1/16 31/64 0 0 3/16 19/64 1/16"
)
B_SPK = "0 0 0 0 0 0 0 0 1 0 0 0 0 0 1 0 0 0 1 0"


def _parse(alpha: float, theta: float, cur: str, mem: str, spk: str):
    return alpha, theta, cur.split(), mem.split(), [int(v) for v in spk.split()]


TRACES = {
    "A": _parse(A_ALPHA, A_THETA, A_IN, A_MEM, A_SPK),
    "B": _parse(B_ALPHA, B_THETA, B_IN, B_MEM, B_SPK),
}


def _t(values: list[str]) -> torch.Tensor:
    return torch.tensor([float(Fr(v)) for v in values], dtype=torch.float32)


def test_hand_traces_are_self_consistent():
    """The literal tables obey the equations (guards against typos in the tables)."""
    for alpha, theta, cur, mem, spk in TRACES.values():
        assert len(cur) == len(mem) == len(spk) >= 20
        m_prev, s_prev = Fr(0), 0
        for i, m, s in zip(cur, mem, spk, strict=True):
            expect = Fr(i) + Fr(alpha) * m_prev * (1 - s_prev)
            assert Fr(m) == expect
            assert s == int(Fr(m) > Fr(theta))
            m_prev, s_prev = Fr(m), s
        assert sum(spk) >= 3  # resets are exercised


@pytest.mark.parametrize("name", sorted(TRACES))
def test_lif_step_matches_hand_trace(name):
    alpha, theta, cur, mem, spk = TRACES[name]
    fn = make_surrogate("rect")
    m, s = torch.zeros(1), torch.zeros(1)
    mems, spks = [], []
    for i in _t(cur):
        s, m = lif_step(i.view(1), m, s, alpha, theta, fn)
        mems.append(m.item())
        spks.append(int(s.item()))
    assert mems == _t(mem).tolist()
    assert spks == spk


@pytest.mark.parametrize("name", sorted(TRACES))
def test_snntorch_lif_module_matches_hand_trace(name):
    alpha, theta, cur, mem, spk = TRACES[name]
    neuron = LIF(alpha, theta)
    x = _t(cur).view(-1, 1)
    state = neuron.init_state(x[0])
    mems, spks = [], []
    for t in range(len(cur)):
        out = neuron(x[t], state, t)
        state = out.state
        mems.append(out.mem.item())
        spks.append(int(out.spk.item()))
    assert mems == _t(mem).tolist()
    assert spks == spk


@pytest.mark.parametrize("name", sorted(TRACES))
def test_single_layer_model_reproduces_trace(name):
    """A 1-input, 1-neuron FC model with w = 1, b = 0 fed the current directly."""
    alpha, theta, cur, mem, spk = TRACES[name]
    cfg = ModelConfig("FC1", (1,), num_steps=len(cur), alpha=alpha, theta=theta, encoding="direct")
    model = build_model(cfg)
    with torch.no_grad():
        model.synapses[0].weight.fill_(1.0)
        model.synapses[0].bias.zero_()
    trace = model.run(_t(cur).view(-1, 1, 1), record=True)
    assert trace.mems[0].flatten().tolist() == _t(mem).tolist()
    assert trace.out_spikes.flatten().tolist() == [float(s) for s in spk]
    assert trace.logits.item() == sum(spk)  # count readout


def test_leaky_integrator_membrane_readout():
    """m[t] = I[t] + α·m[t-1], never reset: α = 1/2, I = 1, 0, 0, 2 → 1, 1/2, 1/4, 17/8."""
    li = LeakyIntegrator(0.5, 1.0)
    x = torch.tensor([[1.0], [0.0], [0.0], [2.0]])
    state = li.init_state(x[0])
    got = []
    for t in range(4):
        out = li(x[t], state, t)
        state = out.state
        got.append(out.mem.item())
        assert out.spk.item() == 0
    assert got == [1.0, 0.5, 0.25, 2.125]


def test_layer_major_equals_step_major():
    """SpikingNet evaluates layer by layer; a step-major loop over lif_step gives equal spikes."""
    torch.manual_seed(3)
    cfg = ModelConfig("FC20-FC7-FC4", (6,), num_steps=12)
    model = build_model(cfg)
    x = (torch.rand(12, 5, 6) > 0.5).float()
    with torch.no_grad():
        trace = model.run(x, record=True)
        fn = make_surrogate("rect")
        mems = [torch.zeros(5, n) for n in (20, 7, 4)]
        spks = [torch.zeros(5, n) for n in (20, 7, 4)]
        outs = []
        for t in range(12):
            h = x[t]
            for k, syn in enumerate(model.synapses):
                spks[k], mems[k] = lif_step(syn(h), mems[k], spks[k], 0.25, 0.25, fn)
                h = spks[k]
            outs.append(h)
    assert torch.equal(torch.stack(outs), trace.out_spikes)
    assert trace.out_spikes.sum() > 0


def test_rect_surrogate_gradient_window():
    """rect: dS/dx = 1[|x| < 0.5] (certify_snn's m_len = 0.5)."""
    x = torch.tensor([-0.75, -0.5, -0.25, 0.0, 0.25, 0.49, 0.5, 1.0], requires_grad=True)
    make_surrogate("rect")(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_spike_is_strict_for_every_surrogate():
    x = torch.tensor([-1.0, 0.0, 1e-6])
    for name in ("rect", "atan", "fast_sigmoid", "sigmoid", "triangle"):
        assert make_surrogate(name)(x).tolist() == [0.0, 0.0, 1.0], name
