"""NIR graph features on the chip: skip edges (layer k fed from the input or any layer before
k − 1), conv groups regrouped for Lava, pools over 128+ channels, recurrent conv populations —
emulator ≡ Lava spike for spike on random plans (hypothesis), the emulator against plain
integer loops, NIR graphs that compile and track their float reference, and the CLI, the twin
and the efficiency counts on these plans. The neuron kinds, per-neuron decays and membrane
read-outs are in ``test_nir_chip.py``. Lava tests skip without ``.venv-lava``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_nir_chip import (
    KINDS,
    _assert_lava_equals_emulator,
    _nir_readout_graph,
    _plain_integer_sublif,
    _with_neurons,
    _with_readout,
    needs_lava,
)

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan

# ----------------------------------------------------------------------------- skip edges


def _with_skips(plan: DeploymentPlan, rng: np.random.Generator) -> DeploymentPlan:
    """Random skip edges (even mixed-sign weights, as the compiler writes) into every layer
    k ≥ 2 from the input or any layer before k − 1; at least one edge."""
    layers = list(plan.layers)
    for k in range(1, len(layers)):
        L = layers[k]
        cands = list(range(-1, k - 1))
        pick = sorted(j for j in cands if rng.random() < 0.6) or [cands[0]]
        ws = []
        for j in pick:
            n_src = int(np.prod(plan.input_shape if j < 0 else layers[j].out_shape))
            ws.append((2 * rng.integers(-25, 26, (L.out_size, n_src))).astype(np.int32))
        layers[k] = dataclasses.replace(L, skip_from=tuple(pick), skip_weights=tuple(ws))
    out = dataclasses.replace(plan, layers=tuple(layers))
    out.validate()
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.booleans())
def test_emulator_skip_edges_equal_plain_integers(seed, n_layers, readout):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 20, n_layers + 1))
    plan = random_fc_plan(rng, sizes, num_steps=8, weight_mode="mixed_even", weight_scale=40.0)
    plan = _with_neurons(plan, list(rng.permutation(KINDS)), None, rng)
    if readout:
        plan = _with_readout(plan, "li", rng)
    plan = _with_skips(plan, rng)
    spikes = (rng.random((8, 3, sizes[0])) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(spikes), record_v=True)
    ref = _plain_integer_sublif(plan, spikes)
    for k, (e, r) in enumerate(zip(emu.layer_spikes, ref[:-1], strict=True)):
        assert np.array_equal(e.numpy().reshape(r.shape), r), f"layer {k}"
    assert np.array_equal(emu.v[-1].numpy().reshape(ref[-1].shape), ref[-1])


def test_skip_edges_change_the_result_and_roundtrip(tmp_path):
    rng = np.random.default_rng(4)
    plan = random_fc_plan(rng, (10, 12, 8, 6), num_steps=10, weight_mode="mixed_even",
                          weight_scale=60.0)
    skipped = _with_skips(plan, rng)
    spikes = (rng.random((10, 4, 10)) < 0.5).astype(np.uint8)
    a = Emulator(plan).run(torch.as_tensor(spikes)).layer_spikes[-1]
    b = Emulator(skipped).run(torch.as_tensor(spikes)).layer_spikes[-1]
    assert not torch.equal(a, b)
    skipped.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    assert [L.skip_from for L in back.layers] == [L.skip_from for L in skipped.layers]
    assert all(np.array_equal(x, y) for L, M in zip(back.layers, skipped.layers, strict=True)
               for x, y in zip(L.skip_weights, M.skip_weights, strict=True))
    c = Emulator(back).run(torch.as_tensor(spikes)).layer_spikes[-1]
    assert torch.equal(b, c)


@needs_lava
@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(2, 4))
def test_lava_equals_emulator_skip_edges(seed, n_layers):
    """Skip edges as DelayDense (delay = the main path's extra latency) into the same a_in."""
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 30, n_layers + 1))
    plan = random_fc_plan(rng, sizes, num_steps=int(rng.integers(2, 9)),
                          weight_mode="mixed_even", weight_scale=60.0)
    plan = _with_neurons(plan, list(rng.permutation(KINDS)), None, rng)
    plan = _with_skips(plan, rng)
    spikes = (rng.random((plan.num_steps, 3, sizes[0])) < 0.5).astype(np.uint8)
    _assert_lava_equals_emulator(plan, spikes)


def _nir_skip_graph(rng: np.random.Generator, n_in: int, sizes: tuple[int, int, int],
                    reset_kind: str = "lif"):
    """Input → fc0 → lif0 → fc1 → lif1 → fc2 → lif2 → Output with skip edges Input → s0 →
    lif1, lif0 → s1 → lif2, Input → s2 → lif2 (waits 2 steps) and lif0 → m1 → lif1 (the
    main synapse's own source: the matrices add)."""
    import nir

    dt = 1e-4
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    prev, fan_in, edges = "input", n_in, []
    for k, n in enumerate(sizes):
        nodes[f"fc{k}"] = nir.Affine(weight=rng.normal(0, 1.2, (n, fan_in)),
                                     bias=rng.normal(0, 0.05, n))
        tau = np.full(n, 2e-4)
        nodes[f"lif{k}"] = nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n),
                                   v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        prev, fan_in = f"lif{k}", n
    n0, n1, n2 = sizes
    for name, src, dst, shape in (("s0", "input", "lif1", (n1, n_in)),
                                  ("s1", "lif0", "lif2", (n2, n0)),
                                  ("s2", "input", "lif2", (n2, n_in)),
                                  ("m1", "lif0", "lif1", (n1, n0))):
        nodes[name] = nir.Affine(weight=rng.normal(0, 0.8, shape),
                                 bias=rng.normal(0, 0.05, shape[0]))
        edges += [(src, name), (name, dst)]
    nodes["output"] = nir.Output(output_type={"output": np.array([n2])})
    edges.append(("lif2", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def test_nir_skip_edges_compile_and_match_the_float_reference():
    from neurodeploy.errors import ConfigError, HardwareFitError
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference
    from neurodeploy.exporters.profiles import load_profile

    rng = np.random.default_rng(21)
    g = _nir_skip_graph(rng, 8, (10, 8, 6))
    plan = compile_nir(g, "loihi2", 12, producer="neurodeploy").plan
    assert [L.skip_from for L in plan.layers] == [(), (-1,), (-1, 0)]
    assert plan.skip_delay(2, -1) == 2 and plan.skip_delay(2, 0) == 1
    x = (rng.random((12, 32, 8)) < 0.4).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(x))
    ref = float_reference(g, producer="neurodeploy").run(torch.as_tensor(x, dtype=torch.float64))
    for k in range(3):  # measured 0.998 / 0.998 / 0.994: 8-bit weights, not equal
        agree = float((emu.layer_spikes[k].double() == ref.spikes[k]).double().mean())
        assert agree > 0.97, (k, agree)
        assert emu.layer_spikes[k].sum() > 0
    # the delays cannot be aligned: a profile whose dendritic delay is shorter than the wait
    short = dataclasses.replace(load_profile("loihi2"), max_synaptic_delay=1)
    with pytest.raises(HardwareFitError, match=r"skip edge 'input' → 's2' → 'lif2'.*cannot be"
                                               r" aligned"):
        compile_nir(g, short, 12, producer="neurodeploy")
    # a skip edge into a conv population is refused naming the edge
    import nir

    conv = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
               "c0": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1,
                                padding=1, dilation=1, groups=1, bias=np.zeros(2)),
               "l0": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4)),
                            v_reset=np.zeros((2, 4, 4))),
               "c1": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 2, 3, 3)), stride=1,
                                padding=1, dilation=1, groups=1, bias=np.zeros(2)),
               "l1": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4)),
                            v_reset=np.zeros((2, 4, 4))),
               "s": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 1, 1)), stride=1,
                               padding=0, dilation=1, groups=1, bias=np.zeros(2)),
               "output": nir.Output(output_type={"output": np.array([2, 4, 4])})},
        edges=[("input", "c0"), ("c0", "l0"), ("l0", "c1"), ("c1", "l1"), ("l1", "output"),
               ("input", "s"), ("s", "l1")], type_check=False)
    with pytest.raises(ConfigError, match=r"skip edge 'input' → 's' → 'l1'.*convolutional"):
        compile_nir(conv, "loihi2", 5, producer="neurodeploy")


@needs_lava
@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["zero", "subtract"]))
def test_lava_equals_emulator_nir_skip_edges(seed, reset):
    """NIR residual graph → compile → emulator ≡ Lava (DelayDense skips) spike for spike."""
    from neurodeploy.exporters.nir_deploy import compile_nir

    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(3, 12, 3))
    g = _nir_skip_graph(rng, 8, sizes)
    plan = compile_nir(g, "loihi2", 10, producer="neurodeploy", reset=reset).plan
    assert plan.layers[2].skip_from == (-1, 0)
    spikes = (rng.random((10, 3, 8)) < 0.5).astype(np.uint8)
    _assert_lava_equals_emulator(plan, spikes)


# ----------------------------------------------------------------------------- Lava's int8 groups


@pytest.mark.parametrize("groups,cin_g,cout_g", [(130, 1, 1), (256, 1, 1), (131, 2, 1),
                                                 (254, 1, 2), (12, 1, 1)])
def test_lava_conv_groups_regrouping_is_the_same_conv(groups, cin_g, cout_g):
    """Merging groups (block-diagonal kernels) gives the same grouped convolution."""
    import torch.nn.functional as F

    from neurodeploy.sims.lava_runner import LAVA_MAX_CONV_GROUPS, lava_conv_groups

    rng = np.random.default_rng(groups)
    w = rng.integers(-50, 51, (groups * cout_g, cin_g, 2, 2))
    x = torch.as_tensor(rng.random((2, groups * cin_g, 5, 5)) < 0.5, dtype=torch.float64)
    w2, g2 = lava_conv_groups(w, groups)
    assert g2 <= LAVA_MAX_CONV_GROUPS and (g2 == groups) == (groups <= LAVA_MAX_CONV_GROUPS)
    a = F.conv2d(x, torch.as_tensor(w, dtype=torch.float64), groups=groups)
    b = F.conv2d(x, torch.as_tensor(w2, dtype=torch.float64), groups=g2)
    assert torch.equal(a, b)


@needs_lava
@pytest.mark.lava
@pytest.mark.parametrize("channels", [130, 256])
def test_lava_equals_emulator_pool_over_128_channels_or_more(channels):
    """A pool (depthwise conv) over ≥ 128 channels: Lava's int8 ``groups`` would wrap and the
    Conv emit nothing; the runner merges groups (exact) and Lava ≡ emulator."""
    rng = np.random.default_rng(channels)
    plan = random_conv_plan(rng, (1, 4, 4), channels=channels, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=3, num_steps=6,
                            weight_scale=80.0, du=4095, dv=0, vth=60, bias_max=0)
    assert plan.layers[1].kind == "pool" and plan.layers[1].groups == channels
    spikes = (rng.random((6, 2, 1, 4, 4)) < 0.6).astype(np.uint8)
    _assert_lava_equals_emulator(plan, spikes, fires=True)


# ----------------------------------------------------------------------------- recurrent conv


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_recurrent_conv_populations():
    """``*_rec`` on conv and pool populations: W_rec [N, N] in flat (C, H, W) order (an
    unrolled recurrent convolution) runs inside the neuron process; its Lava layout follows
    each neuron."""
    rng = np.random.default_rng(2)
    plan = random_conv_plan(rng, (2, 7, 7), channels=3, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=4, num_steps=10,
                            weight_scale=80.0)
    plan = _with_neurons(plan, ["sublif_rec", "lif_rec", "lif"], None, np.random.default_rng(8))
    assert plan.layers[0].neuron_arrays["w_rec"].shape == (147, 147)
    spikes = (rng.random((10, 3, 2, 7, 7)) < 0.6).astype(np.uint8)
    _assert_lava_equals_emulator(plan, spikes, fires=True)


def _nir_recurrent_conv_graph(rng: np.random.Generator, channels: int, size: int,
                              groups: int = 1):
    """Input (1, s, s) → Conv2d → LIF (C, s, s) ⟲ Conv2d (C → C, 3×3, 'same') → Flatten →
    Affine → LIF → Output."""
    import nir

    dt = 1e-4
    shp = (channels, size, size)
    tau = np.full(shp, 2e-4)
    n = channels * size * size
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, size, size])}),
        "c0": nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 1, (channels, 1, 3, 3)),
                         stride=1, padding=1, dilation=1, groups=1,
                         bias=rng.normal(0, 0.05, channels)),
        "lif0": nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(shp), v_threshold=np.full(shp, .5),
                        v_reset=np.zeros(shp)),
        "rc": nir.Conv2d(input_shape=(size, size),
                         weight=rng.normal(0, 0.4, (channels, channels // groups, 3, 3)),
                         stride=1, padding=1, dilation=1, groups=groups,
                         bias=rng.normal(0, 0.05, channels)),
        "f": nir.Flatten(input_type={"input": np.array(shp)}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, 0.5, (4, n)), bias=np.zeros(4)),
        "lif1": nir.LIF(tau=np.full(4, 2e-4), r=np.full(4, 2.), v_leak=np.zeros(4),
                        v_threshold=np.full(4, .5), v_reset=np.zeros(4)),
        "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "c0"), ("c0", "lif0"), ("lif0", "rc"), ("rc", "lif0"), ("lif0", "f"),
             ("f", "fc"), ("fc", "lif1"), ("lif1", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


@pytest.mark.parametrize("groups", [1, 3])
def test_unrolled_recurrent_conv_is_the_conv(groups):
    import torch.nn.functional as F

    from neurodeploy.exporters.nir_export import _unrolled_conv

    rng = np.random.default_rng(groups)
    g = _nir_recurrent_conv_graph(rng, 3, 5, groups)
    w_rec, b = _unrolled_conv(g.nodes["rc"], (3, 5, 5), "rc")
    s = torch.as_tensor(rng.random((7, 3, 5, 5)) < 0.5, dtype=torch.float64)
    want = F.conv2d(s, torch.as_tensor(g.nodes["rc"].weight, dtype=torch.float64), padding=1,
                    groups=groups).reshape(7, -1)
    assert torch.allclose(s.reshape(7, -1) @ torch.as_tensor(w_rec).T, want, atol=1e-12)
    assert np.array_equal(b, g.nodes["rc"].bias)


def test_nir_recurrent_conv_compiles_and_tracks_the_float_reference():
    from neurodeploy.errors import HardwareFitError
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference

    rng = np.random.default_rng(0)
    g = _nir_recurrent_conv_graph(rng, 3, 5)
    plan = compile_nir(g, "loihi2", 10, producer="neurodeploy").plan
    L = plan.layers[0]
    assert L.kind == "conv" and L.neuron == "lif_rec" and L.weights.shape == (3, 1, 3, 3)
    assert L.neuron_arrays["w_rec"].shape == (75, 75)
    x = (rng.random((10, 16, 1, 5, 5)) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(x))
    ref = float_reference(g, producer="neurodeploy").run(torch.as_tensor(x, dtype=torch.float64))
    for k in range(2):  # measured 0.973 / 0.945 (recurrence carries the rounding on)
        agree = float((emu.layer_spikes[k].double() == ref.spikes[k]).double().mean())
        assert agree > 0.9, (k, agree)
    with pytest.raises(HardwareFitError, match="recurrent connection.*programmable"):
        compile_nir(g, "loihi1", 10, producer="neurodeploy")


@needs_lava
@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2]), st.sampled_from(["zero", "subtract"]))
def test_lava_equals_emulator_nir_recurrent_conv(seed, groups, reset):
    """NIR Conv2d feedback on a conv population → compile (W_rec unrolled) → Lava ≡ emulator."""
    from neurodeploy.exporters.nir_deploy import compile_nir

    rng = np.random.default_rng(seed)
    g = _nir_recurrent_conv_graph(rng, 2 * int(rng.integers(1, 3)), int(rng.integers(3, 6)),
                                  groups)
    plan = compile_nir(g, "loihi2", 8, producer="neurodeploy", reset=reset).plan
    assert plan.layers[0].neuron.endswith("_rec")
    spikes = (rng.random((8, 3, *plan.input_shape)) < 0.5).astype(np.uint8)
    _assert_lava_equals_emulator(plan, spikes)


def test_simulate_predicts_a_membrane_readout_from_its_membrane():
    """simulate: a membrane read-out plan predicts from Σ_t v (its logits), not from the
    (absent) output spikes; the float NIR model's spiking layers are compared."""
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference
    from neurodeploy.simulation import simulate

    rng = np.random.default_rng(2)  # a seed whose predictions vary (3 classes, 0 rarely)
    g = _nir_readout_graph(rng, 8, 16, 4, "li")
    plan = compile_nir(g, "loihi2", 12, producer="neurodeploy").plan
    x = torch.as_tensor((rng.random((12, 40, 8)) < 0.4).astype(np.uint8))
    emu = Emulator(plan).run(x)
    labels = emu.logits.argmax(1)
    assert len(set(labels.tolist())) > 2 and (labels != 0).sum() > 30  # counts would say 0
    model = float_reference(g, producer="neurodeploy")
    rep = simulate(plan, x, labels, "emulator", model=model)
    assert rep.accuracy_backend == 1.0
    assert rep.accuracy_float is not None and rep.accuracy_float > 0.8
    assert rep.layers[0].spike_agreement is not None and rep.layers[0].spike_agreement > 0.97


def test_cli_exports_and_simulates_a_graph_with_every_new_feature(tmp_path, capsys):
    """export --nir → simulate on the digits: per-neuron τ, skip edges (one through its own
    Flatten), an LI read-out; the plan says what it runs, the float NIR model is compared."""
    import json

    import nir

    from neurodeploy.cli import main

    rng = np.random.default_rng(3)
    dt = 1e-4

    def lif(n):
        tau = dt / rng.choice([0.1, 0.3, 0.6], n)
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                       v_reset=np.zeros(n))

    tau_o = dt / rng.choice([0.1, 0.2], 10)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0),
             "fc1": nir.Affine(weight=rng.normal(0, 0.3, (24, 64)), bias=np.zeros(24)),
             "lif1": lif(24),
             "fc2": nir.Affine(weight=rng.normal(0, 0.5, (16, 24)), bias=np.zeros(16)),
             "lif2": lif(16),
             "fc3": nir.Affine(weight=rng.normal(0, 0.5, (10, 16)), bias=np.zeros(10)),
             "out": nir.LI(tau=tau_o, r=tau_o / dt, v_leak=np.zeros(10)),
             "flat_s": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0),
             "s_in": nir.Affine(weight=rng.normal(0, 0.2, (16, 64)), bias=np.zeros(16)),
             "s_1": nir.Affine(weight=rng.normal(0, 0.3, (10, 24)), bias=np.zeros(10)),
             "output": nir.Output(output_type={"output": np.array([10])})}
    edges = [("input", "flat"), ("flat", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "fc3"), ("fc3", "out"), ("out", "output"),
             ("input", "flat_s"), ("flat_s", "s_in"), ("s_in", "lif2"),
             ("lif1", "s_1"), ("s_1", "out")]
    f = tmp_path / "net.nir"
    nir.write(str(f), nir.NIRGraph(nodes=nodes, edges=edges, metadata={}))
    d = tmp_path / "dep"
    assert main(["export", "--nir", str(f), "--producer", "neurodeploy", "--steps", "8",
                 "--out", str(d), "-q"]) == 0
    out = capsys.readouterr().out
    assert "non-spiking read-out" in out
    plan = DeploymentPlan.load(d / "plan.npz")
    assert [L.neuron for L in plan.layers] == ["lif", "lif", "li"]
    assert [L.skip_from for L in plan.layers] == [(), (-1,), (0,)]
    assert all("dv" in L.neuron_arrays for L in plan.layers)
    assert plan.readout == "membrane" and plan.source["readout"] == "membrane"
    js = tmp_path / "sim.json"
    assert main(["simulate", "--plan", str(d / "plan.npz"), "--model", str(f),
                 "--samples", "40", "--out", str(js), "-q"]) == 0
    rep = json.loads(js.read_text())
    assert [L["spike_agreement"] is not None for L in rep["layers"]] == [True, True, False]
    assert all(L["spike_agreement"] > 0.95 for L in rep["layers"][:2])
    assert rep["prediction_agreement"] > 0.8


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.booleans(), st.booleans())
def test_twin_forward_equals_emulator_on_the_new_plans(seed, n_layers, readout, per_neuron):
    """The hardware twin (attacks' gradient model) runs skip edges, per-neuron decays and the
    membrane read-out with the emulator's values: spikes equal, logits Σ_t v / unit."""
    from neurodeploy.sims.twin import HardwareTwin

    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 16, n_layers + 1))
    plan = random_fc_plan(rng, sizes, num_steps=6, weight_mode="mixed_even", weight_scale=40.0)
    plan = _with_neurons(plan, list(rng.permutation(KINDS)), None, rng, per_neuron=per_neuron)
    if readout:
        plan = _with_readout(plan, "li", rng)
    plan = _with_skips(plan, rng)
    spikes = torch.as_tensor((rng.random((6, 3, sizes[0])) < 0.5).astype(np.uint8))
    emu = Emulator(plan).run(spikes)
    tw = HardwareTwin(plan, encoding="spikes").run(spikes.double())
    for k, (e, t) in enumerate(zip(emu.layer_spikes, tw.spikes, strict=True)):
        assert torch.equal(e.double().reshape(t.shape), t.detach()), f"layer {k}"
    if readout:
        unit = plan.fixed_point.v_per_float(plan.layers[-1].scale)
        assert torch.allclose(tw.logits.detach(), emu.logits.double() / unit, rtol=0,
                              atol=1e-9)


def test_efficiency_counts_skip_edge_synapses():
    from neurodeploy.efficiency import plan_efficiency, plan_parameter_count
    from neurodeploy.sims.kernel import dense_effective_weights

    rng = np.random.default_rng(6)
    plan = random_fc_plan(rng, (10, 12, 8, 6), num_steps=6, weight_mode="mixed_even",
                          weight_scale=60.0)
    skipped = _with_skips(plan, rng)
    spikes = torch.as_tensor((rng.random((6, 4, 10)) < 0.5).astype(np.uint8))
    a, b = plan_efficiency(plan, spikes), plan_efficiency(skipped, spikes)
    extra = sum(int(w.size) for L in skipped.layers for w in L.skip_weights)
    assert plan_parameter_count(skipped) == plan_parameter_count(plan) + extra
    # layer 1 (its input, layer 0, has no skips: the same spikes in both plans): its ops grow
    # by the skip edges' Σ_t Σ_b (source spikes · fan-out) / B
    L = skipped.layers[1]
    sources = [spikes] + list(Emulator(skipped).run(spikes).layer_spikes)
    skip_ops = sum(float((sources[j + 1].reshape(24, -1).double().numpy()
                          @ (dense_effective_weights(ws, skipped.fixed_point) != 0).sum(0)
                          ).sum()) / 4
                   for j, ws in zip(L.skip_from, L.skip_weights, strict=True))
    assert skip_ops > 0
    assert b.layers[1].effective_ops == pytest.approx(a.layers[1].effective_ops + skip_ops)
    assert b.layers[1].dense_ops > a.layers[1].dense_ops
