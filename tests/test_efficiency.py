"""Efficiency metrics (neurodeploy.efficiency) on hand-countable nets, the NeuroBench
cross-check, plan metrics and the chip cost estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.efficiency import (
    activity_ratio,
    cost_estimate,
    count_conv,
    count_dense,
    efficiency_section,
    float_efficiency,
    plan_efficiency,
    plan_footprint_bytes,
    plan_parameter_count,
)
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer


def test_count_dense_by_hand() -> None:
    # W [3 out, 4 in]; column nnz = [2, 0, 3, 1]
    w = torch.tensor([[1., 0, 2, 0], [0, 0, -1, 3], [5, 0, 1, 0]])
    s = torch.zeros(2, 2, 4)  # T = 2, B = 2
    s[0, 0] = torch.tensor([1., 1, 0, 0])   # 2 + 0
    s[1, 0] = torch.tensor([0., 0, 1, 1])   # 3 + 1
    s[0, 1] = torch.tensor([1., 1, 1, 1])   # 6
    eff, dense = count_dense(s, w)
    assert eff == (2 + 4 + 6) / 2
    assert dense == 2 * 3 * 4


def test_count_conv_by_hand() -> None:
    # one 3x3 input channel, one 2x2 kernel with one zero tap, stride 1, no padding → 2x2 out
    w = torch.tensor([[[[1., 0], [2, 3]]]])
    s = torch.zeros(1, 1, 1, 3, 3)
    s[0, 0, 0, 1, 1] = 1  # the centre pixel is seen by all 4 output positions, through taps
    eff, dense = count_conv(s, w, (1, 1), (0, 0), 1)
    # centre pixel (1,1) meets tap (1,1) at out (0,0), (1,0) at out (0,1), (0,1) at (1,0)
    # [zero tap: no op], (0,0) at out (1,1) → 3 effective ops
    assert eff == 3
    assert dense == 4 * 4  # 4 outputs × 4 taps × T = 1
    # padding: dense excludes padded taps (2x2 kernel, pad 1 on 1x1 input → 4 outputs, 1 tap each)
    _, dense_p = count_conv(torch.ones(1, 1, 1, 1, 1), torch.ones(1, 1, 2, 2), (1, 1), (1, 1), 1)
    assert dense_p == 4


def _tiny_model(T: int = 3):
    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC3-FC2", (1, 2, 2), num_steps=T, readout="rate")).eval()
    with torch.no_grad():
        model.synapses[0].weight.copy_(torch.tensor(
            [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.3, 0.3, 0.3, 0.0]]))
        model.synapses[0].bias.zero_()
        model.synapses[1].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
        model.synapses[1].bias.zero_()
    return model


def test_float_metrics_by_hand() -> None:
    model = _tiny_model()
    s = torch.zeros(3, 1, 1, 2, 2)
    s[0, 0, 0, 0, 0] = 1  # pixel 0: fan-out 2 (neurons 0 and 2)
    s[1, 0, 0, 0, 1] = 1  # pixel 1: fan-out 2
    s[2, 0, 0, 1, 1] = 1  # pixel 3: fan-out 0
    rep = float_efficiency(model, s)
    L1, L2 = rep.layers
    assert L1.effective_ops == 4 and L1.input_binary and L1.dense_ops == 3 * 3 * 4
    # α = θ = 0.25: t0 neuron 0 gets 1.0 > θ → spike; neuron 2 gets 0.3 > θ → spike
    with torch.no_grad():
        trace = model.run(s, record=True)
    spikes1 = trace.spikes[0]
    assert L1.spikes == float(spikes1.sum())
    # layer 2 input fan-out: neuron 0 → 1 (row 0 only), neuron 1 → 0, neuron 2 → 1
    expect2 = float((spikes1[:, 0, 0] * 1 + spikes1[:, 0, 2] * 1).sum())
    assert L2.effective_ops == expect2 and L2.dense_ops == 3 * 2 * 3
    assert L1.neuron_updates == 9 and L2.neuron_updates == 6
    tot = rep.totals()
    assert tot["activation_sparsity"] == pytest.approx(1 - (L1.spikes + L2.spikes) / 15)
    assert rep.parameter_count == 3 * 4 + 3 + 2 * 3 + 2 + sum(
        p.numel() for n in model.neurons for p in n.parameters())
    assert rep.footprint_bytes >= 4 * (12 + 3 + 6 + 2)


def test_direct_coding_first_layer_counts_macs() -> None:
    model = _tiny_model()
    x = torch.full((3, 1, 1, 2, 2), 0.5)
    rep = float_efficiency(model, x)
    assert not rep.layers[0].input_binary
    assert rep.layers[0].effective_macs == 3 * (2 + 2 + 2 + 0)
    assert rep.totals()["effective_acs"] == rep.layers[1].effective_ops


def test_matches_neurobench_on_an_snntorch_twin() -> None:
    """Same weights in a plain snntorch net, run by NeuroBench's own metrics."""
    pytest.importorskip("neurobench")
    import snntorch as snn
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel

    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(1)
    T = 5
    model = build_model(ModelConfig("FC12-FC4", (1, 3, 3), num_steps=T, readout="rate")).eval()
    with torch.no_grad():
        model.synapses[0].weight[:, :2] = 0.0  # some zero weights: effective ≠ dense
        model.synapses[0].weight.mul_(4)
        model.synapses[1].weight.mul_(4)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(9, 12),
        snn.Leaky(beta=0.25, threshold=0.25, reset_mechanism="zero", init_hidden=True),
        torch.nn.Linear(12, 4),
        snn.Leaky(beta=0.25, threshold=0.25, reset_mechanism="zero", init_hidden=True,
                  output=True))
    with torch.no_grad():
        net[1].weight.copy_(model.synapses[0].weight)
        net[1].bias.copy_(model.synapses[0].bias)
        net[3].weight.copy_(model.synapses[1].weight)
        net[3].bias.copy_(model.synapses[1].bias)
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(T, 16, 1, 3, 3, generator=g) < 0.5).float()
    ours = float_efficiency(model, s)
    assert ours.layers[-1].spikes > 0  # activity reaches the output
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(s.transpose(0, 1), torch.zeros(16, dtype=torch.long)),
        batch_size=16)
    bench = Benchmark(SNNTorchModel(net), data, [], [],
                      [[ParameterCount, Footprint], [SynapticOperations, ActivationSparsity]])
    nb = bench.run(quiet=True)
    tot = ours.totals(neurobench=True)
    assert nb["SynapticOperations"]["Effective_ACs"] == pytest.approx(tot["effective_acs"])
    assert nb["SynapticOperations"]["Effective_MACs"] == pytest.approx(tot["effective_macs"])
    assert nb["SynapticOperations"]["Dense"] == pytest.approx(tot["dense_ops"])
    assert nb["ActivationSparsity"] == pytest.approx(tot["activation_sparsity"])
    n_syn = sum(p.numel() for p in model.synapses.parameters())
    assert nb["ParameterCount"] == n_syn


def _plan_two_layers() -> DeploymentPlan:
    w1 = np.array([[100, 100, 0, 0], [0, 100, 100, 0], [1, 0, 0, 0]], np.int32)  # 1 → 0 (mixed? no)
    w2 = np.array([[100, 0, 100], [0, 0, 0]], np.int32)
    L1 = PlanLayer(name="fc1", kind="dense", in_shape=(4,), out_shape=(3,), weights=w1,
                   weight_exp=0, du=4095, dv=4095, vth=90, bias_mant=np.zeros(3, np.int32),
                   bias_exp=0, scale=1.0)
    L2 = PlanLayer(name="fc2", kind="dense", in_shape=(3,), out_shape=(2,), weights=w2,
                   weight_exp=0, du=4095, dv=4095, vth=90, bias_mant=np.zeros(2, np.int32),
                   bias_exp=0, scale=1.0)
    return DeploymentPlan("loihi2", 2, (4,), (L1, L2))


def test_plan_metrics_by_hand() -> None:
    plan = _plan_two_layers()
    s = torch.zeros(2, 1, 4, dtype=torch.uint8)
    s[0, 0, 1] = 1   # fan-out 2 → neurons 0, 1 get 100·64 > 90·64: spike
    s[1, 0, 3] = 1   # fan-out 0
    rep = plan_efficiency(plan, s)
    L1, L2 = rep.layers
    assert L1.effective_ops == 2 and L1.spikes == 2 and L1.dense_ops == 2 * 12
    # neurons 0 and 1 spiked at t0 → fan-out in layer 2: neuron 0 → 1, neuron 1 → 0
    assert L2.effective_ops == 1 and L2.spikes == 1
    assert rep.parameter_count == plan_parameter_count(plan) == 12 + 3 + 6 + 2
    # no resource map: 18 weights at 8 bits + 5 neurons × (24 + 24 + 13) bits
    assert plan_footprint_bytes(plan) == 18 + (5 * 61 + 7) // 8
    cost = cost_estimate(rep, "loihi2")
    # E = 23.6·3 synops + 81·3 spiking + 52·(10 − 3) silent + 1.7·3 spikes  (pJ)
    want = 23.6 * 3 + 81 * 3 + 52 * 7 + 1.7 * 3
    assert cost["energy_per_inference_nj"] == pytest.approx(want / 1e3)
    assert cost["approximate"] and "Davies" in cost["source"]
    assert cost["latency_per_inference_us"] > 0


def test_plan_counts_truncated_mixed_weights_as_no_ops() -> None:
    """Lava truncates mixed-sign mantissas to even values by an arithmetic shift (floor): 1 → 0
    (no synaptic operation on the chip), −1 → −2 (still one)."""
    w = np.array([[1, -2], [-1, 4]], np.int32)
    L = PlanLayer(name="fc1", kind="dense", in_shape=(2,), out_shape=(2,), weights=w,
                  weight_exp=0, du=4095, dv=0, vth=1000, bias_mant=np.zeros(2, np.int32),
                  bias_exp=0, scale=1.0)
    import dataclasses

    plan = DeploymentPlan("loihi2", 1, (2,), (L,))
    if any(f.name == "raw_weights" for f in dataclasses.fields(DeploymentPlan)):
        plan = dataclasses.replace(plan, raw_weights=True)  # what Lava is handed, unrounded
    rep = plan_efficiency(plan, torch.ones(1, 1, 2, dtype=torch.uint8))
    assert rep.layers[0].effective_ops == 3  # 1 → 0 drops out; −2, −1 → −2 and 4 remain
    assert rep.layers[0].synapses == 3


def test_adversarial_ratio_and_section() -> None:
    from neurodeploy.exporters.compiler import compile_model

    model = _tiny_model(T=4)
    plan = compile_model(model, profile="loihi2")
    g = torch.Generator().manual_seed(0)
    u = torch.rand(4, 1, 1, 2, 2, generator=g)

    def enc(x):
        return (x.unsqueeze(0) > u).float()

    x = torch.full((6, 1, 2, 2), 0.2)
    sec = efficiency_section(model, plan, x, x.clamp(min=0.9), enc)
    r = sec["ratio_adversarial_over_clean"]
    assert r["float"]["synaptic_operations"] > 1 and r["deployed"]["spikes"] >= 1
    assert sec["cost_clean"]["energy_per_inference_nj"] < sec["cost_adversarial"][
        "energy_per_inference_nj"]
    assert set(sec["clean"]) == {"float", "deployed"}
    clean = float_efficiency(model, enc(x))
    assert activity_ratio(clean, clean)["spikes"] in (1.0,) or np.isnan(
        activity_ratio(clean, clean)["spikes"])


def test_section_renders_markdown_and_html() -> None:
    from neurodeploy.efficiency import efficiency_html, efficiency_markdown
    from neurodeploy.exporters.compiler import compile_model

    model = _tiny_model(T=4)
    plan = compile_model(model, profile="loihi2")
    u = torch.rand(4, 1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x = torch.full((6, 1, 2, 2), 0.2)
    sec = efficiency_section(model, plan, x, x.clamp(min=0.9), lambda v: (v.unsqueeze(0) > u).float())
    cert = {"eps": 0.1, "deployed_verdict": "verified error at ε=0.1: 0.50 (float) → 0.52 (Loihi 2)",
            "deployed": {"verified_error": 0.52, "clean_accuracy": 0.9},
            "float_known_draw": {"ibp": {"verified_error": 0.5, "clean_accuracy": 0.91}}}
    md = "\n".join(efficiency_markdown(sec, cert))
    assert "## Efficiency and chip cost" in md and "(Loihi 2)" in md and "APPROXIMATE" in md
    assert "| float | S-IBP | 0.5000 | 91.00 % |" in md
    assert "| deployed | integer S-IBP (plan) | 0.5200 | 90.00 % |" in md
    assert md.count("| float | clean |") == 1 and md.count("| deployed | adversarial |") == 1
    html = "\n".join(efficiency_html(sec, cert))
    assert "id='efficiency'" in html and "id='plot-efficiency'" in html
    assert "id='certified'" in html and "0.52 (Loihi 2)" in html
    assert efficiency_markdown({}) == [] and efficiency_html({}) == []


def test_audit_blocks_on_host_maps() -> None:
    from neurodeploy.efficiency import audit_blocks
    from neurodeploy.exporters.compiler import compile_model

    model = _tiny_model(T=4)
    plan = compile_model(model, profile="loihi2")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 2, 2, generator=g)
    y = torch.randint(0, 2, (12,), generator=g)
    cert, eff = audit_blocks(model, plan, x, y, torch.arange(12), 3, 0.05,
                             adversarial=(x + 0.05).clamp(0, 1))
    assert cert["deployed"]["method"] == "plan-ibp" and set(cert["float"]) == {"ibp", "crown"}
    assert "(Loihi 2)" in cert["verdict"]
    assert eff["cost_clean"]["energy_per_inference_nj"] > 0
    assert "ratio_adversarial_over_clean" in eff
    cert, eff = audit_blocks(model, plan, x, y, torch.arange(12), 3, None)
    assert cert == {} and "adversarial" not in eff
