"""Graded spikes (plan version 3 ``neuron_params["graded_bits"]``): a sublif layer sends
``n = clip(⌊v/θ⌋, 0, 2^b − 1)`` and the next synapse multiplies. Emulator ≡ plain integers ≡
twin ≡ Lava; the compiler sends sinabs/rockpool multi-spikes graded where the profile has graded
spikes (Loihi 2) and as one binary spike elsewhere (Loihi 1, a profile without them)."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.nir_fidelity import fidelity_report, random_inputs
from neurodeploy.exporters.plan import DeploymentPlan, PlanError
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan
from neurodeploy.sims.lava_env import lava_available, run_lava
from neurodeploy.sims.twin import HardwareTwin

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")


def _graded(plan: DeploymentPlan, rng: np.random.Generator, floor: bool = False,
            bits: int | None = None) -> DeploymentPlan:
    """Every layer ``sublif`` with random payload bits (and optionally a v floor)."""
    layers = []
    for L in plan.layers:
        params = {"graded_bits": int(rng.integers(1, 9)) if bits is None else bits}
        if floor:
            params["v_min"] = -int(rng.integers(0, 2 * (int(L.vth) << 6) + 1))
        layers.append(dataclasses.replace(L, neuron="sublif", neuron_arrays={},
                                          neuron_params=params))
    out = dataclasses.replace(plan, layers=tuple(layers))
    out.validate()
    return out


def _plain_integers(plan: DeploymentPlan, spikes: np.ndarray) -> list[np.ndarray]:
    """The docstring equations as a literal loop in Python ints (dense layers)."""
    fmt = plan.fixed_point
    T, B = spikes.shape[:2]
    x = spikes.reshape(T, B, -1).astype(np.int64)
    outs = []
    for L in plan.layers:
        W = np.asarray(L.weights, np.int64)
        n = W.shape[0]
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        theta = int(L.vth) << fmt.threshold_shift
        bias = np.asarray(L.bias_mant, np.int64) << int(L.bias_exp)
        fu = fmt.decay_unity - int(L.du) - fmt.current_decay_offset
        fv = fmt.decay_unity - int(L.dv) - fmt.voltage_decay_offset
        n_max = (1 << int(L.neuron_params["graded_bits"])) - 1
        v_min = L.neuron_params.get("v_min")
        s_all = np.zeros((T, B, n), np.int64)
        for t in range(T):
            a = x[t] @ W.T  # graded inputs multiply
            u = np.sign(u * fu) * (np.abs(u * fu) >> fmt.decay_bits) + (a << 6)
            v = np.sign(v * fv) * (np.abs(v * fv) >> fmt.decay_bits) + u + bias
            v = np.clip(v, -(2**23 - 1), 2**23 - 1)
            cnt = np.clip(v // theta, 0, n_max)
            v = v - cnt * theta
            if v_min is not None:
                v = np.maximum(v, v_min)
            s_all[t] = cnt
        outs.append(s_all)
        x = s_all
    return outs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.booleans())
def test_emulator_graded_equals_plain_integers(seed, n_layers, floor):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 20, n_layers + 1))
    plan = _graded(random_fc_plan(rng, sizes, num_steps=8, weight_mode="mixed_even",
                                  weight_scale=40.0, vth=int(rng.integers(5, 60))), rng, floor)
    spikes = (rng.random((8, 3, sizes[0])) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    ref = _plain_integers(plan, spikes)
    for k, (e, r) in enumerate(zip(emu.layer_spikes, ref, strict=True)):
        assert np.array_equal(e.numpy().reshape(r.shape).astype(np.int64), r), f"layer {k}"


def test_counts_above_one_happen_and_matter():
    rng = np.random.default_rng(11)
    plan = _graded(random_fc_plan(rng, (16, 12, 6), num_steps=10, weight_mode="mixed_even",
                                  weight_scale=60.0, vth=10), rng)
    spikes = (rng.random((10, 4, 16)) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(spikes)).layer_spikes
    assert int(emu[0].max()) > 1
    binary = dataclasses.replace(plan, layers=tuple(dataclasses.replace(
        L, neuron_params={}) for L in plan.layers))
    other = Emulator(binary).run(torch.as_tensor(spikes)).layer_spikes
    assert not torch.equal(emu[-1], other[-1])


def test_twin_graded_equals_emulator():
    rng = np.random.default_rng(5)
    plan = _graded(random_fc_plan(rng, (10, 9, 6), num_steps=10, weight_mode="mixed_even",
                                  weight_scale=60.0, vth=12), rng, floor=True)
    spikes = torch.as_tensor((rng.random((10, 5, 10)) < 0.5).astype(np.uint8))
    tw = HardwareTwin(plan, encoding="spikes").run(spikes)
    emu = Emulator(plan).run(spikes)
    for a, b in zip(tw.layer_spikes, emu.layer_spikes, strict=True):
        assert torch.equal(a.to(torch.float64), b.to(torch.float64))
    assert int(emu.layer_spikes[0].max()) > 1


def test_plan_graded_bits_validated(tmp_path):
    rng = np.random.default_rng(2)
    base = random_fc_plan(rng, (6, 5, 4), num_steps=4, weight_mode="mixed_even")
    plan = _graded(base, rng)
    plan.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    assert [L.neuron_params for L in back.layers] == [L.neuron_params for L in plan.layers]
    assert plan.min_version() == 3 and plan.in_max(1) == (1 << plan.layers[0].neuron_params[
        "graded_bits"]) - 1 and plan.in_max(0) == 1
    bad = dataclasses.replace(base, layers=(dataclasses.replace(
        base.layers[0], neuron_params={"graded_bits": 4}),) + base.layers[1:])
    with pytest.raises(PlanError, match="only .* send graded spikes"):
        bad.validate()
    with pytest.raises(PlanError, match="graded_bits = 9 outside"):
        dataclasses.replace(plan, layers=(dataclasses.replace(
            plan.layers[0], neuron_params={"graded_bits": 9}),) + plan.layers[1:]).validate()


def _multi_spike_graph(path, seed=0):
    rng = np.random.default_rng(seed)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([16])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.9, (20, 16)), bias=np.zeros(20)),
        "if1": nir.IF(r=np.ones(20), v_threshold=np.full(20, 0.5)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (8, 20)), bias=np.zeros(8)),
        "if2": nir.IF(r=np.ones(8), v_threshold=np.full(8, 0.7)),
        "output": nir.Output(output_type={"output": np.array([8])}),
    }, edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"),
              ("if2", "output")])
    nir.write(str(path), g)
    return path


def test_compiler_sends_multi_spikes_graded_where_the_profile_allows(tmp_path):
    path = _multi_spike_graph(tmp_path / "ms.nir")
    loihi2 = load_profile("loihi2")
    dep = compile_nir(path, loihi2, 20, producer="sinabs")
    assert [L.neuron_params.get("graded_bits") for L in dep.plan.layers] == [8, 8]
    assert any("graded spike payloads" in n for n in dep.chip_notes)
    binary = compile_nir(path, dataclasses.replace(loihi2, graded_spike_bits=0), 20,
                         producer="sinabs")
    assert all("graded_bits" not in L.neuron_params for L in binary.plan.layers)
    assert any("one binary spike" in n for n in binary.chip_notes)
    old = compile_nir(path, load_profile("loihi1"), 20, producer="sinabs", reset="zero")
    assert all("graded_bits" not in L.neuron_params for L in old.plan.layers)
    assert any("one binary spike" in n for n in old.chip_notes)
    x = random_inputs(dep.plan, 16, 0.3, seed=3)
    g_rows = fidelity_report(dep.dgraph, dep.plan, x)
    b_rows = fidelity_report(binary.dgraph, binary.plan, x)
    assert g_rows[-1].agreement > b_rows[-1].agreement  # graded recovers agreement
    assert all(r.effects["multi_spike"] is None for r in g_rows)


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_graded_fc_and_conv():
    rng = np.random.default_rng(8)
    fc = _graded(random_fc_plan(rng, (14, 12, 6), num_steps=8, weight_mode="mixed_even",
                                weight_scale=60.0, vth=12), rng, floor=True)
    conv = random_conv_plan(rng, (2, 7, 7), channels=3, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=4, num_steps=10, weight_scale=80.0,
                            vth=8)
    conv = _graded(conv, rng, bits=8)
    for plan, shape in ((fc, (14,)), (conv, (2, 7, 7))):
        spikes = (rng.random((plan.num_steps, 3, *shape)) < 0.6).astype(np.uint8)
        lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
        emu = Emulator(plan).run(torch.as_tensor(spikes))
        for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
            assert np.array_equal(e.numpy(), l_), f"layer {k}"
        assert int(emu.layer_spikes[0].max()) > 1
