"""One seeding rule for "the spikes this example gets": simulate, certification (with
``host_index``) and the audit all use the host encoder (neurodeploy.encoding.host_spikes)."""

from __future__ import annotations

import types

import torch

from neurodeploy.bounds.certify import certify, certify_many
from neurodeploy.encoding import host_spikes, host_uniform
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.simulation import encode


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def test_simulate_encodes_with_the_host_rule_whatever_the_batch():
    x = _images(9)
    data = types.SimpleNamespace(time_first=False, x=x)
    s = encode(data, 5, seed=3)
    assert s.dtype == torch.uint8 and tuple(s.shape) == (5, 9, 1, 6, 6)
    assert torch.equal(s, host_spikes(x, torch.arange(9), 3, 5).to(torch.uint8))
    # example 4 alone gets the spikes it gets inside the batch
    alone = host_spikes(x[4:5], torch.tensor([4]), 3, 5).to(torch.uint8)
    assert torch.equal(s[:, 4:5], alone)


def test_certification_with_host_index_uses_the_host_maps_and_is_batch_invariant():
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC24-FC10", (1, 6, 6), num_steps=4, readout="rate"))
    x = _images(12, 1)
    y = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(2))
    idx = torch.arange(100, 112)
    whole = certify_many(model, x, y, 0.03, 3, ("ibp", "crown"), seed=5, host_index=idx)
    split = certify_many(model, x, y, 0.03, 3, ("ibp", "crown"), seed=5, host_index=idx,
                         batch_size=5)
    # the same box per example: IBP is exact arithmetic on it; CROWN's batched matmuls may
    # differ in the last bits between batch sizes
    assert torch.equal(whole["ibp"].margin_lb, split["ibp"].margin_lb)
    assert torch.allclose(whole["crown"].margin_lb, split["crown"].margin_lb, rtol=0, atol=1e-5)
    for m in ("ibp", "crown"):
        assert torch.equal(whole[m].clean_correct, split[m].clean_correct)
    # the clean forward ran on the host's spikes for these examples
    with torch.no_grad():
        pred = model(host_spikes(x, idx, 5, 4)).argmax(1)
    assert torch.equal(whole["ibp"].clean_correct, pred == y)
    # at ε = 0 the box is exactly the host's spikes over the certified steps
    from neurodeploy.bounds.certify import input_box

    u = host_uniform(idx, 5, 3, (1, 6, 6))
    box = input_box(model, x, 0.0, 3, None, uniform=u)
    assert torch.equal(box.lo, host_spikes(x, idx, 5, 3)) and torch.equal(box.lo, box.hi)
    # without host_index the generator draws as before (and differ from the host's)
    plain = certify(model, x, y, 0.03, 3, "ibp", seed=5)
    assert plain.margin_lb.shape == whole["ibp"].margin_lb.shape
