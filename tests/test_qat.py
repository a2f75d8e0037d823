"""Quantization-aware fine-tuning: the float model sees the chip's weight grid."""

from __future__ import annotations

import torch

from neurodeploy.exporters.compiler import compile_model
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.sims.emulator import Emulator
from neurodeploy.training.qat import quantization_aware


def _agreement(model, plan, spikes) -> float:
    with torch.no_grad():
        f = model.run(spikes, record=True).spikes
    e = Emulator(plan).run(spikes, record=True).layer_spikes
    return float(torch.stack([(a == torch.as_tensor(b).float()).float().mean()
                              for a, b in zip(f, e, strict=True)]).mean())


def test_grid_weights_compile_without_weight_error_and_match_the_emulator():
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC48-FC10", (1, 8, 8), readout="rate"))
    spikes = (torch.rand(10, 64, 1, 8, 8) < 0.4).float()
    before = compile_model(model)
    with quantization_aware(model) as scales:
        assert set(scales) == {"layer1", "layer2"}
        out = model(spikes)
        out.sum().backward()
        grad = model.synapses[0].parametrizations.weight.original.grad
        assert grad is not None and grad.abs().sum() > 0  # straight-through gradient
    assert not hasattr(model.synapses[0], "parametrizations")  # removed on exit
    after = compile_model(model)
    for name in ("layer1", "layer2"):
        assert before.quantization[name]["weight_max_abs_err_rel"] > 1e-3
        assert after.quantization[name]["weight_max_abs_err_rel"] < 1e-6
    assert _agreement(model, after, spikes) >= _agreement(model, before, spikes)
