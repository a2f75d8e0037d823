"""A lower bound on v (sinabs ``min_v_mem``; plan version 3 ``neuron_params["v_min"]``):
float interpreter ≡ sinabs's own reading of the file, emulator ≡ plain integers ≡ Lava, twin ≡
emulator; the plan field is versioned and validated; chips without programmable neurons refuse
it naming the node."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import HardwareFitError
from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.nir_import import read_graph
from neurodeploy.exporters.nir_interp import NIRModel
from neurodeploy.exporters.plan import DeploymentPlan, PlanError
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan
from neurodeploy.sims.lava_env import lava_available, run_lava
from neurodeploy.sims.twin import HardwareTwin

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")


def _floored(plan: DeploymentPlan, rng: np.random.Generator, kinds=("sublif", "sublif_cb"),
             ) -> DeploymentPlan:
    """Every layer a sublif kind with a random floor in [−3θ, 0] (v units)."""
    layers = []
    for k, L in enumerate(plan.layers):
        theta = int(L.vth) << plan.fixed_point.threshold_shift
        kind = kinds[k % len(kinds)]
        arrays = ({"a_bias": rng.integers(-30, 31, L.out_size).astype(np.int32)}
                  if kind.endswith("_cb") else {})
        layers.append(dataclasses.replace(
            L, neuron=kind, neuron_arrays=arrays,
            neuron_params={"v_min": -int(rng.integers(0, 3 * theta + 1))}))
    out = dataclasses.replace(plan, layers=tuple(layers))
    out.validate()
    return out


def _plain_integers(plan: DeploymentPlan, spikes: np.ndarray) -> tuple[list[np.ndarray], int]:
    """The docstring equations as a literal loop in Python ints (dense sublif/_cb layers);
    also counts how often the floor bound v (so a test can show it mattered)."""
    fmt = plan.fixed_point
    T, B = spikes.shape[:2]
    x = spikes.reshape(T, B, -1).astype(np.int64)
    outs, bound = [], 0
    for L in plan.layers:
        W = np.asarray(L.weights, dtype=np.int64)
        n = W.shape[0]
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        theta = int(L.vth) << fmt.threshold_shift
        bias = np.asarray(L.bias_mant, np.int64) << int(L.bias_exp)
        a_bias = np.asarray(L.neuron_arrays.get("a_bias", np.zeros(n)), np.int64)
        fu = fmt.decay_unity - int(L.du) - fmt.current_decay_offset
        fv = fmt.decay_unity - int(L.dv) - fmt.voltage_decay_offset
        v_min = int(L.neuron_params["v_min"])
        s_all = np.zeros((T, B, n), np.uint8)
        for t in range(T):
            a = x[t] @ W.T + a_bias
            u = np.sign(u * fu) * (np.abs(u * fu) >> fmt.decay_bits) + (a << 6)
            v = np.sign(v * fv) * (np.abs(v * fv) >> fmt.decay_bits) + u + bias
            v = np.clip(v, -(2**23 - 1), 2**23 - 1)
            s = v > theta
            v = v - s * theta
            bound += int((v < v_min).sum())
            v = np.maximum(v, v_min)
            s_all[t] = s
        outs.append(s_all)
        x = s_all.astype(np.int64)
    return outs, bound


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_emulator_v_floor_equals_plain_integers(seed, n_layers):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 20, n_layers + 1))
    plan = _floored(random_fc_plan(rng, sizes, num_steps=8, weight_mode="mixed_even",
                                   weight_scale=40.0), rng)
    spikes = (rng.random((8, 3, sizes[0])) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    ref, _ = _plain_integers(plan, spikes)
    for k, (e, r) in enumerate(zip(emu.layer_spikes, ref, strict=True)):
        assert np.array_equal(e.numpy().reshape(r.shape), r), f"layer {k}"


def test_the_floor_changes_spikes():
    """Without the floor the same plan spikes differently (the test above can fail)."""
    rng = np.random.default_rng(4)
    plan = _floored(random_fc_plan(rng, (12, 10, 8), num_steps=12, weight_mode="mixed_even",
                                   weight_scale=60.0, vth=40, dv=64), rng)
    plan = dataclasses.replace(plan, layers=tuple(dataclasses.replace(
        L, neuron_params={"v_min": 0}) for L in plan.layers))
    spikes = (rng.random((12, 4, 12)) < 0.5).astype(np.uint8)
    ref, bound = _plain_integers(plan, spikes)
    assert bound > 0
    free = dataclasses.replace(plan, layers=tuple(dataclasses.replace(
        L, neuron_params={}) for L in plan.layers))
    a = Emulator(plan).run(torch.as_tensor(spikes)).layer_spikes
    b = Emulator(free).run(torch.as_tensor(spikes)).layer_spikes
    assert all(np.array_equal(x.numpy(), r) for x, r in zip(a, ref, strict=True))
    assert all(x.sum() > 0 for x in a)
    assert any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_twin_v_floor_equals_emulator():
    rng = np.random.default_rng(7)
    plan = _floored(random_fc_plan(rng, (10, 9, 6), num_steps=10, weight_mode="mixed_even",
                                   weight_scale=60.0), rng)
    spikes = torch.as_tensor((rng.random((10, 5, 10)) < 0.5).astype(np.uint8))
    tw = HardwareTwin(plan, encoding="spikes").run(spikes)
    emu = Emulator(plan).run(spikes)
    for a, b in zip(tw.layer_spikes, emu.layer_spikes, strict=True):
        assert torch.equal(a.to(torch.uint8), b.to(torch.uint8))


def test_plan_v_min_is_versioned_and_validated(tmp_path):
    rng = np.random.default_rng(1)
    base = random_fc_plan(rng, (6, 5, 4), num_steps=4, weight_mode="mixed_even")
    plan = _floored(base, rng)
    plan.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    assert [L.neuron_params for L in back.layers] == [L.neuron_params for L in plan.layers]
    assert plan.min_version() == 3 and base.min_version() == 2
    with pytest.raises(PlanError, match="only .*sublif.* hold a v floor"):
        dataclasses.replace(base, layers=(dataclasses.replace(
            base.layers[0], neuron_params={"v_min": -5}),) + base.layers[1:]).validate()
    with pytest.raises(PlanError, match="v_min = 3 outside"):
        dataclasses.replace(plan, layers=(dataclasses.replace(
            plan.layers[0], neuron_params={"v_min": 3}),) + plan.layers[1:]).validate()


def _sinabs_if_graph(path, seed=0, floor=True):
    rng = np.random.default_rng(seed)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([12])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.6, (10, 12)), bias=np.zeros(10)),
        "if1": nir.IF(r=np.ones(10), v_threshold=np.full(10, 1.0)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.8, (6, 10)), bias=np.zeros(6)),
        "if2": nir.IF(r=np.ones(6), v_threshold=np.full(6, 0.7)),
        "output": nir.Output(output_type={"output": np.array([6])}),
    }, edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"),
              ("if2", "output")], metadata={"min_v_mem": "-v_threshold"} if floor else {})
    nir.write(str(path), g)
    return path


def test_sinabs_if_floor_matches_sinabs_from_nir(tmp_path):
    """sinabs's own reading of an IF (IAFSqueeze, min_v_mem = −θ) gives the same spikes as the
    interpreter — and without the floor they differ."""
    sinabs = pytest.importorskip("sinabs")
    path = _sinabs_if_graph(tmp_path / "if.nir", floor=False)
    T, B = 30, 4
    x = (torch.rand(T, B, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    net = sinabs.from_nir(nir.read(str(path)), batch_size=B)
    named = dict(net.named_modules())
    mods = [named[k] for k in ("fc1", "if1", "fc2", "if2")]
    h = x.transpose(0, 1).reshape(B * T, 12)  # sinabs' Squeeze layers: [B·T, …], batch major
    outs = []
    for m in mods:
        h = m(h)
        if isinstance(m, sinabs.layers.IAF):
            outs.append(h.reshape(B, T, -1).transpose(0, 1))
    assert all(bool((m.min_v_mem < 0).all()) for m in mods if isinstance(m, sinabs.layers.IAF))
    g = read_graph(path, producer="sinabs", v_floor="if_minus_theta")
    assert any("min_v_mem = −v_threshold" in n for n in g.notes)
    ours = NIRModel(g, dtype=torch.float64).run(x.double()).spikes
    for a, b in zip(outs, ours, strict=True):
        assert torch.equal(a.double(), b)
    g.nodes[g.neurons()[0]].v_floor = None
    g.nodes[g.neurons()[1]].v_floor = None
    free = NIRModel(g, dtype=torch.float64).run(x.double()).spikes
    assert any(not torch.equal(a.double(), b) for a, b in zip(outs, free, strict=True))


def test_sinabs_if_floor_compiles_to_v_min_and_loihi1_refuses(tmp_path):
    """The floor stated in the graph metadata (min_v_mem = -v_threshold) reaches the plan."""
    path = _sinabs_if_graph(tmp_path / "if.nir")
    assert all("v_min" not in L.neuron_params for L in compile_nir(
        _sinabs_if_graph(tmp_path / "free.nir", floor=False), load_profile("loihi2"), 20,
        producer="sinabs").plan.layers)
    dep = compile_nir(path, load_profile("loihi2"), 20, producer="sinabs")
    for L in dep.plan.layers:
        assert L.neuron == "sublif"
        assert L.neuron_params["v_min"] == -(int(L.vth) << 6)
    with pytest.raises(HardwareFitError, match="node 'if1'.*min_v_mem"):
        compile_nir(path, load_profile("loihi1"), 20, producer="sinabs", reset="zero")


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_v_floor_fc_and_conv():
    rng = np.random.default_rng(3)
    fc = _floored(random_fc_plan(rng, (14, 12, 6), num_steps=8, weight_mode="mixed_even",
                                 weight_scale=60.0), rng)
    conv = random_conv_plan(rng, (2, 7, 7), channels=3, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=4, num_steps=10, weight_scale=80.0)
    conv = _floored(conv, rng, kinds=("sublif",))
    for plan, shape in ((fc, (14,)), (conv, (2, 7, 7))):
        spikes = (rng.random((plan.num_steps, 3, *shape)) < 0.6).astype(np.uint8)
        lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
        emu = Emulator(plan).run(torch.as_tensor(spikes))
        for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
            assert np.array_equal(e.numpy(), l_), f"layer {k}"
