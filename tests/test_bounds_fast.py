"""The fast S-CROWN paths against the generic bounded-operation path they replace.

- ``_PaperNeuronBackward`` (one autograd node per layer, hand-written gradient) vs the step by
  step fire/temporal backward through :mod:`neurodeploy.bounds.ops` with autograd: same bound,
  same gradients w.r.t. every weight, on FC, conv+avg-pool and conv+sum-pool nets and for the
  Bernoulli ℓ∞ and spike-flip sets; plus ``gradcheck`` in float64.
- ``unstable_input_term`` (the first FC layer's ``A·W`` sampled at the unstable inputs, rows
  sorted by count, chunked) vs the dense product: same value and gradients.
"""

from __future__ import annotations

import pytest
import torch

from neurodeploy.bounds import crown
from neurodeploy.bounds.crown import RelaxParams, crown_margin_lower
from neurodeploy.bounds.ibp import ibp_bounds, margin_spec
from neurodeploy.bounds.network import bounded_layers
from neurodeploy.bounds.perturbation import BernoulliLinfSet, SpikeFlipSet
from neurodeploy.encoding import make_generator
from neurodeploy.models import ModelConfig, build_model

NETS = {
    "fc": ("FC48-FC24-FC10", (1, 8, 8)),
    "conv-avgpool": ("C4K3S2P1-AP2-FC16-FC10", (1, 8, 8)),
    "conv-sumpool-conv": ("C4K3S1-SP2-C4K3S2-FC10", (2, 8, 8)),
}


def _net(arch, shape, steps, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch, shape, num_steps=steps, readout="rate"))
    with torch.no_grad():
        for syn in model.synapses:
            if hasattr(syn, "weight"):
                syn.weight.mul_(2.0)  # enough firing that every relaxation case occurs
                syn.bias.add_(0.1)
    return model


def _generic() -> RelaxParams:
    """Relaxation parameters that select nothing (key of no layer) but force the generic path."""
    return RelaxParams(fire_lo={(-1, -1): torch.zeros(1)})


def _bound_and_grads(model, box, y, params):
    model.zero_grad(set_to_none=True)
    layers = bounded_layers(model, surrogate=True)
    bounds = ibp_bounds(layers, box)
    lb = crown_margin_lower(layers, bounds, margin_spec(y, 10), box, params)
    weights = torch.randn(lb.shape, generator=torch.Generator().manual_seed(5))
    (lb * weights).sum().backward()
    return lb.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("steps", [1, 3, 5])
@pytest.mark.parametrize("pset", ["bernoulli", "flip"])
def test_fast_paper_path_equals_generic_path(name, steps, pset):
    arch, shape = NETS[name]
    model = _net(arch, shape, steps)
    g = make_generator(3)
    x = torch.rand(12, *shape, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    if pset == "bernoulli":
        box = BernoulliLinfSet(0.08).box(x, steps, g)
    else:
        spikes = (torch.rand(steps, *x.shape, generator=g) < x).float()
        box = SpikeFlipSet(0.05, "random").box(spikes, steps, g)
    fast, g_fast = _bound_and_grads(model, box, y, None)
    slow, g_slow = _bound_and_grads(model, box, y, _generic())
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-5), (fast - slow).abs().max()
    touched = 0
    for n in g_slow:
        scale = g_slow[n].abs().max().clamp(min=1e-6)
        assert (g_fast[n] - g_slow[n]).abs().max() / scale < 1e-4, n
        touched += int(g_slow[n].abs().max() > 0)
    assert touched >= 2  # the comparison is not between two zero gradients


def test_paper_neuron_backward_gradcheck():
    g = torch.Generator().manual_seed(0)
    steps, b, s, n = 3, 2, 3, 5

    def r(*shape, **kw):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(
            kw.get("grad", True))

    a_in = r(steps, b, s, n)
    lw, uw, lb, ub, p = (r(steps, b, n) for _ in range(5))
    q = r(steps, b, n, grad=False)
    never = (torch.rand(steps, b, n, generator=g) < 0.5).double()

    def f(a_in, lw, uw, lb, ub, p):
        return crown._PaperNeuronBackward.apply(a_in, lw, uw, lb, ub, p, q, never, 0.3)

    assert torch.autograd.gradcheck(f, (a_in, lw, uw, lb, ub, p))


@pytest.mark.parametrize("k_frac", [0.0, 0.02, 0.05, 0.5])
def test_unstable_input_term_equals_dense_product(k_frac):
    g = torch.Generator().manual_seed(1)
    n, s, o, i = 37, 4, 20, 30  # n not a multiple of the chunk size
    a_m = torch.randn(n, s, o, generator=g, requires_grad=True)
    w = torch.randn(o, i, generator=g, requires_grad=True)
    d = (torch.rand(n, i, generator=g) < k_frac).float() * (0.5 + torch.rand(n, i, generator=g))
    fast = crown.unstable_input_term(a_m, w, d)
    dense = ((a_m @ w).clamp(max=0) * d.unsqueeze(1)).sum(-1)
    assert torch.allclose(fast, dense, atol=1e-5)
    if k_frac == 0:  # no unstable input: the term is a constant 0
        assert not fast.requires_grad and torch.equal(fast, torch.zeros_like(fast))
        return
    up = torch.randn(n, s, generator=g)
    ga_f, gw_f = torch.autograd.grad((fast * up).sum(), (a_m, w))
    ga_d, gw_d = torch.autograd.grad((dense * up).sum(), (a_m, w))
    assert torch.allclose(ga_f, ga_d, atol=1e-5)
    assert torch.allclose(gw_f, gw_d, atol=1e-5)
    assert gw_d.abs().max() > 0
