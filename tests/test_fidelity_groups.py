"""Two synapse groups per matrix (plan version 3 ``weights_lo``): ``a = W_eff(hi)·s·2^k +
W_eff(lo)·s``. The split is exact, emulator ≡ plain integers ≡ twin ≡ Lava, the field is
versioned and validated, and ``weight_groups="auto"`` picks it per dense layer within the
headroom checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.plan import DeploymentPlan, PlanError
from neurodeploy.exporters.precision import TWO_GROUP_K_MAX, split_two_groups
from neurodeploy.exporters.profiles import LAVA_0_10, load_profile
from neurodeploy.sims.emulator import Emulator, random_fc_plan
from neurodeploy.sims.kernel import dense_effective_weights
from neurodeploy.sims.lava_env import lava_available, run_lava
from neurodeploy.sims.twin import HardwareTwin

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")
DATA = Path(__file__).parent / "data" / "nir_paper"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 7), st.sampled_from(["mixed", "exc", "inh"]))
def test_split_is_exact_on_lavas_grid(seed, k, mode):
    rng = np.random.default_rng(seed)
    top = 1 << (8 + k)
    if mode == "mixed":
        w = 2 * rng.integers(-top // 2, top // 2, (6, 9))
        w[0, 0], w[0, 1] = 2, -2  # both signs
    elif mode == "exc":
        w = rng.integers(0, top, (6, 9))
    else:
        w = -rng.integers(0, top, (6, 9))
    hi, lo = split_two_groups(w, k, LAVA_0_10)
    back = (dense_effective_weights(hi, LAVA_0_10) * (1 << k)
            + dense_effective_weights(lo, LAVA_0_10))
    assert np.array_equal(back, w)


def _grouped(plan: DeploymentPlan, rng: np.random.Generator) -> DeploymentPlan:
    layers = []
    for L in plan.layers:
        k = int(rng.integers(1, 6))
        lo = rng.integers(0, 1 << k, L.weights.shape).astype(np.int32)
        layers.append(dataclasses.replace(L, weight_exp=k, weights_lo=lo))
    out = dataclasses.replace(plan, layers=tuple(layers))
    out.validate()
    return out


def _plain(plan: DeploymentPlan, spikes: np.ndarray) -> list[np.ndarray]:
    fmt = plan.fixed_point
    T, B = spikes.shape[:2]
    x = spikes.reshape(T, B, -1).astype(np.int64)
    outs = []
    for L in plan.layers:
        hi = dense_effective_weights(L.weights, fmt)
        lo = dense_effective_weights(L.weights_lo, fmt)
        n = hi.shape[0]
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        theta = int(L.vth) << 6
        bias = np.asarray(L.bias_mant, np.int64) << int(L.bias_exp)
        fu = 4096 - int(L.du) - 1
        fv = 4096 - int(L.dv)
        s_all = np.zeros((T, B, n), np.uint8)
        for t in range(T):
            a = ((x[t] @ hi.T) << int(L.weight_exp)) + x[t] @ lo.T  # two Dense, one port
            u = np.sign(u * fu) * (np.abs(u * fu) >> 12) + (a << 6)
            u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
            v = np.clip(np.sign(v * fv) * (np.abs(v * fv) >> 12) + u + bias,
                        -(2**23 - 1), 2**23 - 1)
            s = v > theta
            v = np.where(s, 0, v)
            s_all[t] = s
        outs.append(s_all)
        x = s_all.astype(np.int64)
    return outs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_emulator_two_groups_equal_plain_integers(seed, n_layers):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 16, n_layers + 1))
    plan = _grouped(random_fc_plan(rng, sizes, num_steps=8, weight_mode="mixed_even",
                                   weight_scale=40.0, vth=int(rng.integers(50, 400))), rng)
    spikes = (rng.random((8, 3, sizes[0])) < 0.5).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    tw = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(spikes))
    for k, (e, t, r) in enumerate(zip(emu.layer_spikes, tw.layer_spikes, _plain(plan, spikes),
                                      strict=True)):
        assert np.array_equal(e.numpy().reshape(r.shape), r), f"layer {k}"
        assert torch.equal(t.to(torch.uint8), e.to(torch.uint8)), f"twin layer {k}"


def test_the_low_group_matters():
    rng = np.random.default_rng(3)
    plan = _grouped(random_fc_plan(rng, (12, 10, 6), num_steps=10, weight_mode="mixed_even",
                                   weight_scale=60.0, vth=300), rng)
    spikes = torch.as_tensor((rng.random((10, 4, 12)) < 0.5).astype(np.uint8))
    a = Emulator(plan).run(spikes).layer_spikes
    no_lo = dataclasses.replace(plan, layers=tuple(dataclasses.replace(
        L, weights_lo=np.zeros_like(L.weights_lo)) for L in plan.layers))
    b = Emulator(no_lo).run(spikes).layer_spikes
    assert all(int(x.sum()) > 0 for x in a)
    assert any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_plan_weights_lo_versioned_and_validated(tmp_path):
    rng = np.random.default_rng(1)
    base = random_fc_plan(rng, (6, 5, 4), num_steps=4, weight_mode="mixed_even")
    plan = _grouped(base, rng)
    plan.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    assert all(np.array_equal(a.weights_lo, b.weights_lo)
               for a, b in zip(plan.layers, back.layers, strict=True))
    assert plan.min_version() == 3 and base.min_version() == 2
    L0 = plan.layers[0]
    for bad, msg in ((dataclasses.replace(L0, weights_lo=L0.weights_lo[:, :2]), "shape"),
                     (dataclasses.replace(L0, weight_exp=-1), "weight_exp -1 < 0"),
                     (dataclasses.replace(L0, weights_lo=L0.weights_lo * 0 + 300), "outside")):
        with pytest.raises(PlanError, match=msg):
            dataclasses.replace(plan, layers=(bad,) + plan.layers[1:]).validate()


def test_auto_picks_two_groups_within_headroom():
    """The braille RNN: the output layer (dense, current bias) takes k = 5, scale ×32, static
    headroom ≥ 1; the recurrent hidden layer takes two groups for W and W_rec (u headroom
    ≥ 1 static, v range ≥ 64 θ); both currents' biases move to the fine 13-bit u grid."""
    from neurodeploy.exporters.precision import IF_V_RANGE_THETAS

    prof = load_profile("loihi2")
    one = compile_nir(DATA / "braille_noDelay_bias_zero.nir", prof, 100, producer="snntorch",
                      reset="zero", weight_groups="one")
    auto = compile_nir(DATA / "braille_noDelay_bias_zero.nir", prof, 100, producer="snntorch",
                       reset="zero", weight_groups="auto")
    assert [L.weights_lo is None for L in one.plan.layers] == [True, True]
    assert all("a_bias" in L.neuron_arrays for L in one.plan.layers)
    assert [L.weights_lo is None for L in auto.plan.layers] == [False, False]
    hid, out = auto.plan.layers
    q = auto.plan.quantization[out.name]
    assert out.weight_exp == q["weight_group_exp"] == TWO_GROUP_K_MAX
    assert q["scale_gain_two_groups"] >= 2**TWO_GROUP_K_MAX * 0.9
    assert min(q["u_headroom"], q["v_state_headroom"]) >= 1
    qh = auto.plan.quantization[hid.name]
    assert hid.neuron == "lif_delayed_rec" and hid.weight_exp == TWO_GROUP_K_MAX
    assert hid.neuron_params["w_rec_exp"] == TWO_GROUP_K_MAX and "w_rec_lo" in hid.neuron_arrays
    assert qh["u_headroom"] >= 1
    fmt = auto.plan.fixed_point
    assert fmt.state_max / fmt.vth_scaled(hid.vth) >= IF_V_RANGE_THETAS
    for L, L1 in zip(auto.plan.layers, one.plan.layers, strict=True):
        assert "a_bias" not in L.neuron_arrays and "a_bias_mant" in L.neuron_arrays
        # the fine bias reproduces the one-group a_bias (weight units at the one-group scale)
        fine = (L.neuron_arrays["a_bias_mant"] * 2.0 ** (L.neuron_params["a_bias_exp"] - 6)
                / L.scale)
        assert np.allclose(fine, L1.neuron_arrays["a_bias"] / L1.scale, atol=1.0 / L1.scale)


def test_braille_reaches_the_goal_in_every_layer():
    """Issue 25's goal on the NIR paper's braille RNN (Bernoulli(0.1) input, 16 samples,
    T = 100): float ↔ chip agreement ≥ 0.95 in both layers with the auto scheme, where one
    group per matrix leaves the output near 0.7."""
    from neurodeploy.exporters.nir_fidelity import fidelity_report

    prof = load_profile("loihi2")
    got = {}
    for groups in ("one", "auto"):
        dep = compile_nir(DATA / "braille_noDelay_bias_zero.nir", prof, 100,
                          producer="snntorch", reset="zero", weight_groups=groups)
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand((100, 16, *dep.plan.input_shape), generator=gen) < 0.1).to(torch.uint8)
        got[groups] = [r.agreement for r in fidelity_report(dep.dgraph, dep.plan, x)]
    assert min(got["auto"]) >= 0.95, got
    assert got["one"][1] < 0.8, got


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_two_groups():
    rng = np.random.default_rng(6)
    plan = _grouped(random_fc_plan(rng, (14, 12, 6), num_steps=8, weight_mode="mixed_even",
                                   weight_scale=60.0, vth=300), rng)
    spikes = (rng.random((8, 3, 14)) < 0.6).astype(np.uint8)
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert np.array_equal(e.numpy(), l_), f"layer {k}"
        assert e.sum() > 0


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_two_groups_conv():
    """Conv layers with a second group: Lava's Conv gets the first kernel with its exponent
    applied (it ignores weight_exp), the second as it is; both add into one a_in."""
    from neurodeploy.sims.emulator import random_conv_plan

    rng = np.random.default_rng(9)
    plan = random_conv_plan(rng, (2, 7, 7), channels=3, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=4, num_steps=10, weight_scale=80.0,
                            vth=600)
    conv = plan.layers[0]
    plan = dataclasses.replace(plan, layers=(dataclasses.replace(
        conv, weight_exp=3, weights_lo=rng.integers(0, 8, conv.weights.shape).astype(np.int32)),
    ) + plan.layers[1:])
    plan.validate()
    spikes = (rng.random((10, 3, 2, 7, 7)) < 0.6).astype(np.uint8)
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert np.array_equal(e.numpy(), l_), f"layer {k}"
    assert emu.layer_spikes[0].sum() > 0


def test_auto_gives_conv_layers_two_groups():
    cnn = compile_nir(DATA / "cnn_sinabs.nir", load_profile("loihi2"), 20, producer="sinabs",
                      weight_groups="auto")
    convs = [L for L in cnn.plan.layers if L.kind == "conv"]
    assert any(L.weights_lo is not None and L.weight_exp > 0 for L in convs)
