"""Plan-version-3 precision fields of the neuron-side inputs (``*_rec`` / ``*_cb`` kinds): a
second recurrent synapse group (``neuron_arrays["w_rec_lo"]`` under ``neuron_params
["w_rec_exp"]``) and a fine current bias (``neuron_arrays["a_bias_mant"]`` <<
``neuron_params["a_bias_exp"]``, u units)::

    rec = wrap_port((W_rec · s[t−1]) · 2^k + W_rec_lo · s[t−1] + a_bias)
    act = wrap_port((a_forward + rec) << 6 + (a_bias_mant << e))

Emulator ≡ plain integers ≡ twin (fast, hypothesis), ≡ Lava (``.venv-lava``, real Lava,
marked long); saved/loaded/validated as version-3 fields; chosen by ``weight_groups="auto"``
for the NIR paper's braille RNN within the headroom checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_nir_chip import KINDS, _plain_integer_sublif, _with_neurons

from neurodeploy.exporters.plan import DeploymentPlan, PlanError
from neurodeploy.sims.emulator import Emulator, random_fc_plan
from neurodeploy.sims.lava_env import lava_available, run_lava
from neurodeploy.sims.twin import HardwareTwin

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")
DATA = Path(__file__).parent / "data" / "nir_paper"
REC_CB = [k for k in KINDS if k.endswith(("_rec", "_cb"))]


def _with_precision(plan: DeploymentPlan, rng: np.random.Generator, lo: bool, fine: bool
                    ) -> DeploymentPlan:
    """Every ``*_rec`` layer gets a second recurrent group (``lo``) and every ``*_rec``/``*_cb``
    layer its current bias as a fine mantissa + exponent (``fine``), replacing ``a_bias``."""
    layers = []
    for L in plan.layers:
        arrays, params = dict(L.neuron_arrays), dict(L.neuron_params)
        n = L.out_size
        if lo and L.neuron.endswith("_rec"):
            k = int(rng.integers(1, 6))
            arrays["w_rec_lo"] = rng.integers(0, 1 << k, (n, n)).astype(np.int32)
            params["w_rec_exp"] = k
        if fine and L.neuron.endswith(("_rec", "_cb")):
            arrays.pop("a_bias", None)
            arrays["a_bias_mant"] = rng.integers(-4095, 4096, n).astype(np.int32)
            params["a_bias_exp"] = int(rng.integers(0, 8))
        layers.append(dataclasses.replace(L, neuron_arrays=arrays, neuron_params=params))
    out = dataclasses.replace(plan, layers=tuple(layers))
    out.validate()
    return out


def _plan(seed: int, n_layers: int, first: str, lo: bool, fine: bool, cuba: bool
          ) -> tuple[DeploymentPlan, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = tuple(int(v) for v in rng.integers(2, 16, n_layers + 1))
    plan = random_fc_plan(rng, sizes, num_steps=8, weight_mode="mixed_even", weight_scale=40.0,
                          vth=int(rng.integers(50, 400)))
    du = [int(v) for v in rng.integers(0, 4096, n_layers)] if cuba else None
    i = REC_CB.index(first)
    plan = _with_precision(_with_neurons(plan, REC_CB[i:] + REC_CB[:i], du, rng), rng, lo, fine)
    spikes = (rng.random((8, 3, sizes[0])) < 0.5).astype(np.uint8)
    return plan, spikes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from(REC_CB), st.booleans(),
       st.booleans(), st.booleans())
def test_emulator_equals_plain_integers_and_twin(seed, n_layers, first, lo, fine, cuba):
    plan, spikes = _plan(seed, n_layers, first, lo, fine, cuba)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    tw = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(spikes))
    ref = _plain_integer_sublif(plan, spikes)[:-1]
    for k, (e, t, r) in enumerate(zip(emu.layer_spikes, tw.layer_spikes, ref, strict=True)):
        assert np.array_equal(e.numpy().reshape(r.shape), r), f"layer {k}"
        assert torch.equal(t.to(torch.uint8), e.to(torch.uint8)), f"twin layer {k}"


def test_each_field_changes_the_spikes():
    """The second group and the fine bias reach the spikes (a kernel that dropped either
    would fail here): zeroing the field changes some layer's spikes."""
    plan, spikes = _plan(11, 2, "lif_rec", True, True, False)
    x = torch.as_tensor(spikes)
    base = Emulator(plan).run(x).layer_spikes
    assert all(int(s.sum()) > 0 for s in base)
    for key in ("w_rec_lo", "a_bias_mant"):
        zeroed = dataclasses.replace(plan, layers=tuple(dataclasses.replace(
            L, neuron_arrays={k: (np.zeros_like(v) if k == key else v)
                              for k, v in L.neuron_arrays.items()}) for L in plan.layers))
        got = Emulator(zeroed).run(x).layer_spikes
        assert any(not torch.equal(a, b) for a, b in zip(base, got, strict=True)), key


def test_fields_versioned_saved_and_validated(tmp_path):
    plan, _ = _plan(5, 2, "lif_rec", True, True, False)
    assert plan.min_version() == 3
    plan.save(tmp_path / "p.npz")
    back = DeploymentPlan.load(tmp_path / "p.npz")
    for a, b in zip(plan.layers, back.layers, strict=True):
        assert a.neuron_params == b.neuron_params
        assert sorted(a.neuron_arrays) == sorted(b.neuron_arrays)
        assert all(np.array_equal(a.neuron_arrays[k], b.neuron_arrays[k])
                   for k in a.neuron_arrays)
    L0 = plan.layers[0]
    arrays, params = dict(L0.neuron_arrays), dict(L0.neuron_params)
    bad = (
        ({**arrays, "w_rec_lo": arrays["w_rec_lo"] + 300}, params, "outside"),
        (arrays, {k: v for k, v in params.items() if k != "w_rec_exp"}, "go together"),
        (arrays, {**params, "w_rec_exp": 99}, "outside"),
        ({**arrays, "a_bias_mant": arrays["a_bias_mant"] * 0 + 5000}, params, "outside"),
        (arrays, {**params, "a_bias_exp": 8}, "outside"),
        ({**arrays, "a_bias": np.zeros(L0.out_size, np.int32)}, params, "both given"),
    )
    for a, p, msg in bad:
        with pytest.raises(PlanError, match=msg):
            dataclasses.replace(plan, layers=(dataclasses.replace(
                L0, neuron_arrays=a, neuron_params=p),) + plan.layers[1:]).validate()
    with pytest.raises(PlanError, match="only \\*_rec"):
        dataclasses.replace(plan, layers=(dataclasses.replace(
            L0, neuron="lif", neuron_arrays={}, neuron_params={"a_bias_exp": 1}),)
            + plan.layers[1:]).validate()


def test_older_version_carrying_the_fields_is_refused(tmp_path):
    import json
    import zipfile

    plan, _ = _plan(5, 1, "lif_cb", False, True, False)
    plan.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as f:
        files = {k: f[k] for k in f.files}
    h = json.loads(str(files["header"]))
    h["version"] = 2
    files["header"] = np.array(json.dumps(h))
    np.savez(tmp_path / "old.npz", **files)
    assert zipfile.is_zipfile(tmp_path / "old.npz")
    with pytest.raises(PlanError, match="version-3 fields"):
        DeploymentPlan.load(tmp_path / "old.npz")


@needs_lava
@pytest.mark.lava
@pytest.mark.long  # one Lava network per example (~20 s each on 2 loaded cores)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 2), st.sampled_from(REC_CB), st.booleans(),
       st.booleans())
def test_lava_equals_emulator(seed, n_layers, first, lo, cuba):
    plan, spikes = _plan(seed, n_layers, first, lo, True, cuba)
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert np.array_equal(e.numpy(), l_), f"layer {k}"


@needs_lava
@pytest.mark.lava
def test_lava_equals_emulator_both_fields():
    """One fixed plan with both fields on a recurrent layer (the fast Lava check)."""
    plan, spikes = _plan(11, 2, "lif_rec", True, True, True)
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True)
    emu = Emulator(plan).run(torch.as_tensor(spikes))
    assert int(emu.layer_spikes[0].sum()) > 0
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert np.array_equal(e.numpy(), l_), f"layer {k}"


@needs_lava
@pytest.mark.lava
@pytest.mark.long  # the compiled braille RNN on Lava, T = 100 (~30 s on 2 loaded cores)
def test_lava_equals_emulator_on_the_compiled_braille_rnn():
    """The auto scheme's braille plan (two recurrent groups, fine current biases) on real
    Lava: spike for spike the emulator's."""
    from neurodeploy.exporters.nir_deploy import compile_nir

    dep = compile_nir(DATA / "braille_noDelay_bias_zero.nir", "loihi2", 100,
                      producer="snntorch", reset="zero")
    hid = dep.plan.layers[0]
    assert "w_rec_lo" in hid.neuron_arrays and "a_bias_mant" in hid.neuron_arrays
    rng = np.random.default_rng(0)
    spikes = (rng.random((100, 2, *dep.plan.input_shape)) < 0.1).astype(np.uint8)
    lava = run_lava(dep.plan, spikes, timeout_s=300, record_layers=True)
    emu = Emulator(dep.plan).run(torch.as_tensor(spikes))
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert int(e.sum()) > 0
        assert np.array_equal(e.numpy(), l_), f"layer {k}"


def test_netx_bounds_and_verifier_refuse_the_fields_naming_the_layer():
    """No netx block, no integer plan bounds, no exact encoding holds a second recurrent
    group or a fine current bias: each refuses naming the layer and the field."""
    from neurodeploy.bounds.plan_ibp import _layers, plan_format
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.netx import check_expressible
    from neurodeploy.verify.support import UnsupportedPlan, check_supported

    for first, lo, fine, key in (("lif_rec", True, False, "w_rec_lo"),
                                 ("lif_cb", False, True, "a_bias_mant")):
        plan, _ = _plan(3, 1, first, lo, fine, False)
        with pytest.raises(ConfigError, match=rf"plan layer 0 \(fc1, dense\): .*{key}"):
            check_expressible(plan)
        with pytest.raises(ConfigError, match=rf"plan layer fc1: .*{key}"):
            _layers(plan, plan_format(plan))
        with pytest.raises(UnsupportedPlan, match=rf"plan layer fc1: .*{key}"):
            check_supported(plan)


def test_efficiency_counts_both_groups_and_the_recurrent_matrix():
    """Synaptic operations by hand: a second group (``weights_lo``) and the recurrent matrix
    (on the previous step's spikes) are operations of their own; parameters count them."""
    from neurodeploy.efficiency import count_dense, plan_efficiency, plan_parameter_count
    from neurodeploy.sims.kernel import dense_effective_weights

    plan, spikes = _plan(7, 1, "lif_rec", True, True, False)
    L = plan.layers[0]
    lo = np.ones_like(L.weights)
    lo[0, 0] = 0
    plan = dataclasses.replace(plan, layers=(dataclasses.replace(
        L, weight_exp=2, weights_lo=lo),))
    L = plan.layers[0]
    x = torch.as_tensor(spikes)
    rep = plan_efficiency(plan, x)
    out = Emulator(plan).run(x).layer_spikes[0].to(torch.float64)
    prev = torch.cat([torch.zeros_like(out[:1]), out[:-1]])
    h = x.to(torch.float64)
    want = 0.0
    for s_in, w in ((h, dense_effective_weights(L.weights, plan.fixed_point)),
                    (h, dense_effective_weights(L.weights_lo, plan.fixed_point)),
                    (prev, L.neuron_arrays["w_rec"]), (prev, L.neuron_arrays["w_rec_lo"])):
        want += count_dense(s_in, torch.as_tensor(np.asarray(w).astype(np.int64)))[0]
    assert rep.layers[0].effective_ops == pytest.approx(want)
    n = L.out_size
    assert sorted(L.neuron_arrays) == ["a_bias_mant", "w_rec", "w_rec_lo"]
    assert plan_parameter_count(plan) == 2 * L.weights.size + n + 2 * n * n + n
    assert rep.layers[0].params == 2 * L.weights.size + n + 2 * n * n


def test_loihi1_refuses_the_recurrent_and_current_bias_layers():
    """The recurrent matrix and the current bias run inside a programmable neuron; loihi1's
    fixed LIF refuses them (whatever the precision scheme), naming the node."""
    from neurodeploy.errors import HardwareFitError
    from neurodeploy.exporters.nir_deploy import compile_nir

    with pytest.raises(HardwareFitError, match="node 'lif1.lif'.*programmable neuron"):
        compile_nir(DATA / "braille_noDelay_bias_zero.nir", "loihi1", 100,
                    producer="snntorch", reset="zero")


def test_footprint_counts_the_second_group():
    """Without a resource map the synaptic memory is weights × 8 bits: a second group adds
    its own 8 bits per synapse."""
    from neurodeploy.efficiency import plan_footprint_bytes

    rng = np.random.default_rng(2)
    plan = random_fc_plan(rng, (12, 10, 4), num_steps=4, weight_mode="mixed_even")
    lo = dataclasses.replace(plan, layers=(dataclasses.replace(
        plan.layers[0], weight_exp=2, weights_lo=np.ones((10, 12), np.int32)),) + plan.layers[1:])
    assert plan_footprint_bytes(lo) - plan_footprint_bytes(plan) == 10 * 12
