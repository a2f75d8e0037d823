"""Hardware twin (sims/twin.py): its forward pass equals the bit-exact emulator spike for spike
on every layer (random FC / conv / pool plans incl. the int32-overflow regime, and a compiled
trained digits model), and its gradient with respect to the input is finite and non-zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import PlanError
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan
from neurodeploy.sims.twin import HardwareTwin

WEIGHT_MODES = ("mixed_even", "mixed_any", "excitatory", "inhibitory")


def assert_twin_equals_emulator(plan, spikes: np.ndarray) -> int:
    """Every layer's spikes equal (torch.equal) and v after reset equal; returns spike count."""
    emu = Emulator(plan).run(spikes, record=True, record_v=True)
    tw = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(spikes))
    total = 0
    for k, (e, s, v) in enumerate(zip(emu.layer_spikes, tw.spikes, tw.v, strict=True)):
        assert torch.equal(e.to(torch.float64), s), f"layer {k}: spikes differ"
        v_after = (v * (1 - s)).to(torch.int64)
        assert torch.equal(emu.layer_v[k], v_after), f"layer {k}: v differs"
        total += int(e.sum())
    return total


@st.composite
def fc_cases(draw):
    n_layers = draw(st.integers(1, 3))
    sizes = tuple(draw(st.integers(1, 30)) for _ in range(n_layers + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    plan = random_fc_plan(rng, sizes, num_steps=draw(st.integers(1, 10)),
                          weight_mode=draw(st.sampled_from(WEIGHT_MODES)),
                          weight_scale=draw(st.sampled_from([20.0, 128.0])),
                          weight_exp=draw(st.integers(-2, 7)),  # ≥ 5: int32 / u wraps
                          du=draw(st.sampled_from([None, 4095, 100])))
    B = draw(st.integers(1, 4))
    spikes = (rng.random((plan.num_steps, B, sizes[0])) < draw(st.floats(0.1, 0.9))).astype(
        np.uint8)
    return plan, spikes


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fc_cases())
def test_twin_equals_emulator_random_fc(case) -> None:
    assert_twin_equals_emulator(*case)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(3, 7), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.sampled_from([1, 2]))
def test_twin_equals_emulator_random_conv_pool(seed, C, H, kh, kw, s, p, pool) -> None:
    rng = np.random.default_rng(seed)
    plan = random_conv_plan(rng, (C, H, H + 1), channels=int(rng.integers(1, 4)),
                            kernel=(kh, kw), stride=(s, 1), padding=(p, 0), pool=pool,
                            classes=int(rng.integers(1, 6)), num_steps=int(rng.integers(1, 6)),
                            vth=int(rng.integers(0, 200)))
    spikes = (rng.random((plan.num_steps, 3, C, H, H + 1)) < 0.5).astype(np.uint8)
    assert_twin_equals_emulator(plan, spikes)


def test_twin_equals_emulator_in_overflow_regime() -> None:
    """weight_exp = 7, du < 4095: u wraps at 24 bits, int32 sums overflow, Lava clips weights."""
    rng = np.random.default_rng(7)
    plan = random_fc_plan(rng, (30, 20, 6), num_steps=8, weight_mode="mixed_any",
                          weight_exp=7, du=100, vth=2000)
    assert not any(K.small for K in Emulator(plan).kernels)
    spikes = (rng.random((8, 4, 30)) < 0.6).astype(np.uint8)
    assert assert_twin_equals_emulator(plan, spikes) > 0


def test_random_plans_really_spike() -> None:
    """Guard against a vacuous comparison: the random plans above do produce spikes."""
    rng = np.random.default_rng(3)
    n = 0
    for _ in range(5):
        plan = random_conv_plan(rng, (2, 6, 7), 3, (3, 3), (1, 1), (1, 1), 2, 4,
                                vth=int(rng.integers(0, 200)))
        n += assert_twin_equals_emulator(plan, (rng.random((6, 3, 2, 6, 7)) < 0.5)
                                         .astype(np.uint8))
    assert n > 0


# ----------------------------------------------------------------------------- trained model


@pytest.fixture(scope="module")
def digits_plan():
    from test_emulator import _train_digits_fc  # the emulator tests' recipe (tests/ on path)

    from neurodeploy.exporters.compiler import compile_model

    model, split = _train_digits_fc(epochs=2)  # 2 epochs: ~95 % on digits, half the time
    return model, split, compile_model(model, profile="loihi2")


def test_twin_equals_emulator_on_trained_digits(digits_plan, capsys) -> None:
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.encoding import BernoulliEncoder

    model, split, plan = digits_plan
    x, y = split.test.x[:120], split.test.y[:120]
    spikes = BernoulliEncoder(10)(x, torch.Generator().manual_seed(0)).to(torch.uint8)
    n = assert_twin_equals_emulator(plan, spikes.numpy())
    assert n > 0
    # forward(x): same seed ⇒ same Bernoulli spikes as the float classifier ⇒ emulator counts
    twin = HardwareTwin(plan, encoding="bernoulli", seed=5)
    clf = SNNClassifier(model, seed=5)
    counts = twin(x)
    spikes2 = clf.encode(x)
    emu = Emulator(plan).run(spikes2.to(torch.uint8))
    assert torch.equal(counts.to(torch.int64), emu.counts)
    acc = float((counts.argmax(1) == y).float().mean())
    with capsys.disabled():
        print(f"\n[twin, digits 120 test images] twin == emulator on all layers "
              f"({n} spikes); twin accuracy {acc:.3f}")
    assert acc > 0.7


def test_twin_gradient_wrt_input_is_finite_and_nonzero(digits_plan) -> None:
    model, split, plan = digits_plan
    twin = HardwareTwin(plan, encoding="bernoulli", seed=0)
    x = split.test.x[:16].clone().requires_grad_(True)
    y = split.test.y[:16]
    loss = torch.nn.functional.cross_entropy(twin(x), y)
    loss.backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all()
    assert float(g.abs().sum()) > 0
    # the gradient is informative: a signed step along it raises the loss of the twin
    twin.reseed(0)
    with torch.no_grad():
        base = torch.nn.functional.cross_entropy(twin(x), y)
        twin.reseed(0)
        adv = torch.nn.functional.cross_entropy(twin((x + 0.2 * g.sign()).clamp(0, 1)), y)
    assert float(adv) > float(base)


def test_twin_refuses_direct_encoding_and_unknown_neurons() -> None:
    import dataclasses

    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (4, 3), num_steps=3)
    with pytest.raises(ConfigError, match="direct"):
        HardwareTwin(plan, encoding="direct")
    bad = dataclasses.replace(plan, layers=(dataclasses.replace(plan.layers[0],
                                                                neuron="talif"),))
    with pytest.raises(PlanError, match="theta_v_shift"):
        HardwareTwin(bad, encoding="spikes")
