"""Emulator vs real Lava processes (``Loihi2SimCfg(select_tag="fixed_pt")``): zero mismatched
spikes, on every layer at every step, for random FC / CONV / pool plans, the int32-overflow
regime, many samples per run, and a trained digits model. Skipped without the Lava env."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import EnvironmentMissingError
from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.sims import lava_env
from neurodeploy.sims.emulator import (
    Emulator,
    random_conv_plan,
    random_fc_plan,
    reference_lava_network,
)
from neurodeploy.sims.lava_env import LavaRunError, lava_available, run_lava

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")
pytestmark = [pytest.mark.lava]

WEIGHT_MODES = ("mixed_even", "mixed_any", "excitatory", "inhibitory")


def assert_all_equal(plan: DeploymentPlan, spikes: np.ndarray, raw: bool = True) -> int:
    """Emulator == Lava on every layer and step; the numpy transcription == Lava's raw global
    trains (pre-reset transients included). Returns the number of spikes compared."""
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True, raw=raw)
    emu = Emulator(plan).run(spikes)
    n = 0
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        e = e.numpy()
        assert e.shape == l_.shape, f"layer {k}: {e.shape} vs {l_.shape}"
        mism = int((e != l_).sum())
        assert mism == 0, f"layer {k}: {mism} mismatched spikes of {e.size}"
        n += e.size
    assert np.array_equal(emu.out_spikes.numpy(), lava.out_spikes)
    if raw:
        trains, _ = reference_lava_network(plan, spikes)
        for k, (r, l_) in enumerate(zip(trains, lava.raw, strict=True)):
            assert np.array_equal(r, l_), f"layer {k}: transcription differs from Lava"
    return n


@st.composite
def fc_cases(draw):
    n_layers = draw(st.integers(1, 3))
    sizes = tuple(draw(st.integers(1, 40)) for _ in range(n_layers + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    plan = random_fc_plan(rng, sizes, num_steps=draw(st.integers(1, 10)),
                          weight_mode=draw(st.sampled_from(WEIGHT_MODES)),
                          weight_scale=draw(st.sampled_from([20.0, 128.0])))
    B = draw(st.integers(2, 5))
    spikes = (rng.random((plan.num_steps, B, sizes[0])) < draw(st.floats(0.1, 0.9))).astype(
        np.uint8)
    return plan, spikes


@needs_lava
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fc_cases())
def test_lava_equals_emulator_random_fc(case) -> None:
    assert_all_equal(*case)


@needs_lava
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(3, 7), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.sampled_from([1, 2]))
def test_lava_equals_emulator_random_conv_pool(seed, C, H, kh, kw, s, p, pool) -> None:
    rng = np.random.default_rng(seed)
    plan = random_conv_plan(rng, (C, H, H + 1), channels=int(rng.integers(1, 4)),
                            kernel=(kh, kw), stride=(s, 1), padding=(p, 0), pool=pool,
                            classes=int(rng.integers(1, 6)), num_steps=int(rng.integers(1, 6)))
    spikes = (rng.random((plan.num_steps, 3, C, H, H + 1)) < 0.5).astype(np.uint8)
    assert_all_equal(plan, spikes)


@needs_lava
def test_lava_equals_emulator_in_overflow_regime() -> None:
    """weight_exp = 7 and du < 4095: u wraps at 24 bits, a << 6 and the sums overflow int32,
    and mixed-sign odd / > 8-bit weights are clipped and truncated by Lava."""
    rng = np.random.default_rng(7)
    plan = random_fc_plan(rng, (30, 20, 6), num_steps=8, weight_mode="mixed_any",
                          weight_exp=7, du=100, vth=2000)
    emu = Emulator(plan)
    assert not any(K.small for K in emu.kernels)  # the int32 wraps are really exercised
    spikes = (rng.random((8, 4, 30)) < 0.6).astype(np.uint8)
    assert assert_all_equal(plan, spikes) > 0


@needs_lava
def test_one_long_lava_run_equals_one_run_per_sample() -> None:
    """No cross-sample leakage with period = T (and the same windows with period T + 3)."""
    rng = np.random.default_rng(1)
    plan = random_fc_plan(rng, (16, 12, 8, 5), num_steps=6, du=None, bias_max=400, vth=400)
    spikes = (rng.random((6, 3, 16)) < 0.5).astype(np.uint8)
    together = run_lava(plan, spikes, record_layers=True)
    padded = run_lava(plan, spikes, record_layers=True, period=9)
    assert padded.meta["period"] == 9 and together.meta["period"] == 6
    for i in (1, 2):  # the middle sample (neighbours on both sides) and the last one
        alone = run_lava(plan, spikes[:, i:i + 1], record_layers=True)
        for k in range(3):
            assert np.array_equal(together.layer_spikes[k][:, i], alone.layer_spikes[k][:, 0])
            assert np.array_equal(padded.layer_spikes[k][:, i], alone.layer_spikes[k][:, 0])
    assert sum(int(x.sum()) for x in together.layer_spikes) > 0


@needs_lava
def test_trained_digits_model_zero_mismatches(capsys) -> None:
    pytest.importorskip("neurodeploy.exporters.compiler")
    from test_emulator import _train_digits_fc  # the same training recipe (tests/ on sys.path)

    from neurodeploy.encoding import BernoulliEncoder
    from neurodeploy.exporters.compiler import compile_model

    model, split = _train_digits_fc()
    plan = compile_model(model, profile="loihi2")
    x, y = split.test.x[:60], split.test.y[:60]
    spikes = BernoulliEncoder(10)(x, torch.Generator().manual_seed(0)).to(torch.uint8).numpy()
    lava = run_lava(plan, spikes, record_layers=True)
    emu = Emulator(plan).run(spikes)
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        assert int((e.numpy() != l_).sum()) == 0, f"layer {k}"
    acc = float((torch.as_tensor(lava.counts).argmax(1) == y).float().mean())
    with capsys.disabled():
        print(f"\n[digits, 60 test samples] Lava == emulator on all layers; Lava accuracy "
              f"{acc:.3f}; runner timings {lava.meta['timings_s']}")
    assert acc > 0.7


@needs_lava
def test_timeout_kills_the_runner_and_its_lava_workers(monkeypatch) -> None:
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(lava_env.subprocess, "Popen", recording_popen)
    plan = random_fc_plan(np.random.default_rng(0), (8, 4), num_steps=4)
    with pytest.raises(LavaRunError, match="timed out"):
        run_lava(plan, np.zeros((4, 3000, 8), np.uint8), timeout_s=4.0)
    assert len(started) == 1 and started[0].returncode is not None
    deadline = time.monotonic() + 10
    while _live_members(started[0].pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # killed orphans are reaped by init shortly after SIGKILL
    assert _live_members(started[0].pid) == []


def _live_members(pgid: int) -> list[int]:
    """Non-zombie processes of process group ``pgid`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def test_missing_lava_environment_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(lava_env.ENV_VAR, "/nonexistent/python3.10")
    with pytest.raises(EnvironmentMissingError, match="setup.sh") as info:
        run_lava(random_fc_plan(np.random.default_rng(0), (3, 2), 2), np.zeros((2, 1, 3)))
    assert info.value.exit_code == 4
