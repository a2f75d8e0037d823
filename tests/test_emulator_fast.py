"""The emulator's fast paths equal its exact integer path.

Fast: float32 synaptic sums where every partial sum is provably an integer below 2^24 (float64
otherwise), ``F.conv2d`` on direct/im2col backends only, the conv wrap skipped where the bound
makes it the identity, the batch stepped in blocks. Exact: int64 sums (synapse level), or the
emulator with float64 weights, unfold + matmul convolutions and one block (network level).
Weights are drawn so that the bound sits at the limits (2^23 for the conv wrap, 2^24 for the
float32 choice) and all-ones inputs reach it.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.exporters.plan import RAW_WEIGHT_LIMIT, DeploymentPlan, PlanLayer
from neurodeploy.sims import emulator as emulator_mod
from neurodeploy.sims import kernel as kernel_mod
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan
from neurodeploy.sims.kernel import FLOAT32_EXACT


def slow(n: int) -> settings:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def exact_path():
    """The emulator without its fast paths: float64 weights, unfold + matmul convolutions
    (no F.conv2d), the activation shift after the sum, plan-order neurons, the whole batch
    in one block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emulator_mod, "_cpu_float32_is_ieee", lambda: False)
        mp.setattr(kernel_mod, "conv_backend", lambda x, w, L: None)
        mp.setattr(Emulator, "BLOCK_ELEMENTS", 1 << 40)
        mp.setattr(Emulator, "CHANNELS_LAST", False)
        mp.setattr(Emulator, "_shifted_weights", lambda self, k: None)
        yield


@contextmanager
def blocks_of(elements: int):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Emulator, "BLOCK_ELEMENTS", elements)
        yield


def _row_weights(rng: np.random.Generator, n_out: int, fan_in: int, target: int,
                 limit: int, sign: str = "mixed") -> np.ndarray:
    """Integer weights ``[n_out, fan_in]`` with |w| ≤ limit whose largest row sum of |w| is
    exactly ``min(target, fan_in·limit)`` (row 0), the other rows below it; all positive
    (``+``: all-ones inputs reach +bound), all negative (``-``) or random signs."""
    target = min(target, fan_in * limit)
    mags = np.zeros((n_out, fan_in), np.int64)
    q, r = divmod(target, fan_in)
    mags[0] = q
    mags[0, :r] += 1
    for o in range(1, n_out):
        mags[o] = rng.integers(0, max(q, 1) + 1, fan_in)
    if sign == "mixed":
        return mags * rng.choice(np.array([-1, 1]), size=(n_out, fan_in))
    return mags if sign == "+" else -mags


def _int_conv(x: torch.Tensor, w: np.ndarray, L: PlanLayer) -> torch.Tensor:
    """Integer truth: ``Σ w·x`` in int64 over each output's receptive field."""
    N = x.shape[0]
    C_out, cin_g, kh, kw = w.shape
    g = int(L.groups)
    cols = F.unfold(x.double(), (kh, kw), padding=tuple(L.padding), stride=tuple(L.stride))
    cols = cols.to(torch.int64).reshape(N, g, cin_g * kh * kw, -1)   # gathered 0/1 spikes
    wg = torch.as_tensor(w, dtype=torch.int64).reshape(g, C_out // g, cin_g * kh * kw)
    return torch.einsum("gok,ngkp->ngop", wg, cols).reshape(N, *L.out_shape)


def _wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


BOUNDS = [2**23 - 1, 2**23, 2**23 + 1, FLOAT32_EXACT - 1, FLOAT32_EXACT, FLOAT32_EXACT + 1]


def _conv_plan(rng: np.random.Generator, groups: int, cin_g: int, C_out: int,
               kernel: tuple[int, int], hw: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], target: int, sign: str) -> DeploymentPlan:
    """A one-conv plan whose largest Σ|w| is ``target`` (or as close as int16 allows)."""
    kh, kw = kernel
    H, W = hw
    C = groups * cin_g
    w = _row_weights(rng, C_out, cin_g * kh * kw, target, RAW_WEIGHT_LIMIT, sign)
    w = w.reshape(C_out, cin_g, kh, kw).astype(np.int32)
    Ho = (H + 2 * padding[0] - kh) // stride[0] + 1
    Wo = (W + 2 * padding[1] - kw) // stride[1] + 1
    out = (C_out, Ho, Wo)
    L = PlanLayer("conv1", "conv", (C, H, W), out, w, 0, 4095, 0, 100,
                  np.zeros(int(np.prod(out)), np.int32), 0, 1.0, stride=stride,
                  padding=padding, groups=groups)
    return DeploymentPlan("fast", 2, (C, H, W), (L,), raw_weights=True)


@st.composite
def conv_layers(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    plan = _conv_plan(
        rng, groups, draw(st.sampled_from([1, 2, 16, 64])), groups * draw(st.integers(1, 3)),
        (kh, kw), (draw(st.integers(kh, 7)), draw(st.integers(kw, 7))),
        (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))),
        draw(st.one_of(st.sampled_from(BOUNDS), st.integers(0, 2**25))),
        draw(st.sampled_from(["+", "-", "mixed"])))
    C, H, W = plan.input_shape
    B = draw(st.integers(1, 3))
    x = (rng.random((2, B, C, H, W)) < draw(st.floats(0.0, 1.0))).astype(np.uint8)
    x[0, 0] = 1  # all ones: interior outputs reach Σ|w| of their channel
    return plan, torch.as_tensor(x)


@slow(60)
@given(conv_layers())
def test_conv_synapse_equals_int64_sums(case) -> None:
    _check_conv_synapse(*case)


@pytest.mark.parametrize("sign", ["+", "-"])
@pytest.mark.parametrize("target", BOUNDS)
def test_conv_synapse_equals_int64_sums_at_the_limits(target: int, sign: str) -> None:
    """Σ|w| at 2^23 ± 1 (the conv wrap: +2^23 wraps, −2^23 does not) and 2^24 ± 1 (float32
    or float64), reached by all-ones inputs."""
    rng = np.random.default_rng(target)
    plan = _conv_plan(rng, 1, 64, 2, (3, 3), (5, 5), (1, 1), (1, 1), target, sign)
    assert Emulator(plan).kernels[0].bound == target
    x = torch.ones(1, 2, *plan.input_shape, dtype=torch.uint8)
    x[0, 1, :, 0] = 0
    _check_conv_synapse(plan, x)


def _check_conv_synapse(plan: DeploymentPlan, x: torch.Tensor) -> None:
    L = plan.layers[0]
    emu = Emulator(plan)
    bound = emu.kernels[0].bound
    assert emu._weights[0].dtype == (torch.float32 if bound < FLOAT32_EXACT
                                     else torch.float64)
    a = emu.synaptic_input(0, x)
    T, B = x.shape[:2]
    want = _wrap(_int_conv(x.reshape(T * B, *L.in_shape), L.weights, L),
                 plan.fixed_point.conv_output_bits).reshape(T, B, -1)
    assert torch.equal(a.to(torch.float64), want.to(torch.float64))
    with exact_path():
        a_exact = Emulator(plan).synaptic_input(0, x)
    assert a_exact.dtype == torch.float64
    assert torch.equal(a_exact, want.to(torch.float64))


@slow(25)
@given(st.integers(0, 2**32 - 1), st.sampled_from(BOUNDS + [1000, 2**20]),
       st.integers(-3, 3))
def test_dense_synapse_equals_int64_sums_at_the_limits(seed, target, weight_exp) -> None:
    rng = np.random.default_rng(seed)
    fan_in = 255 * 2 + (target + 254) // 255   # 8-bit excitatory weights reach the target
    w = np.abs(_row_weights(rng, 3, fan_in, target, 255)).astype(np.int32)
    L = PlanLayer("fc1", "dense", (fan_in,), (3,), w, weight_exp, 4095, 0, 100,
                  np.zeros(3, np.int32), 0, 1.0)
    plan = DeploymentPlan("fast", 2, (fan_in,), (L,), raw_weights=True)
    x = (rng.random((2, 2, fan_in)) < rng.random()).astype(np.uint8)
    x[0, 0] = 1
    emu = Emulator(plan)
    P = emu.kernels[0]
    assert P.bound == min(target, fan_in * 255)
    assert emu._weights[0].dtype == (torch.float32 if P.bound < FLOAT32_EXACT
                                     else torch.float64)
    acc = torch.as_tensor(x.reshape(4, fan_in).astype(np.int64)) @ torch.as_tensor(
        P.weights.astype(np.int64)).T
    acc = acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp   # floor
    if not P.small:
        acc = _wrap(acc, plan.fixed_point.port_bits)
    got = emu.synaptic_input(0, torch.as_tensor(x)).reshape(4, 3)
    assert torch.equal(got.to(torch.float64), acc.to(torch.float64))
    with exact_path():
        assert torch.equal(Emulator(plan).synaptic_input(0, torch.as_tensor(x)).reshape(4, 3),
                           acc.to(torch.float64))


KINDS = ["lif", "sublif", "sublif_delayed", "lif_delayed", "lif_rec", "sublif_cb", "talif"]


def _with_kind(plan: DeploymentPlan, kind: str, rng: np.random.Generator) -> DeploymentPlan:
    """Every hidden layer of ``plan`` as neuron ``kind`` (random integer extras)."""
    layers = []
    for k, L in enumerate(plan.layers):
        n = L.out_size
        if k == len(plan.layers) - 1 or kind == "lif":
            layers.append(L)
        elif kind == "talif":
            vth64 = max(int(L.vth), 1) << 6
            layers.append(dataclasses.replace(
                L, neuron="talif", neuron_params={"theta_v_shift": 10, "theta_bits": 24},
                neuron_arrays={
                    "theta_v": rng.integers(0, 513, n).astype(np.int32),
                    "nds": rng.integers(-vth64, vth64 + 1, (plan.num_steps, n)).astype(
                        np.int32)}))
        else:
            arrays = {}
            if kind.endswith("_rec"):
                arrays["w_rec"] = (2 * rng.integers(-30, 31, (n, n))).astype(np.int32)
            if kind.endswith(("_rec", "_cb")):
                arrays["a_bias"] = rng.integers(-40, 41, n).astype(np.int32)
            layers.append(dataclasses.replace(L, neuron=kind, neuron_arrays=arrays))
    # raw: a tiny "mixed_even" layer may come out single-signed, off the compiler's grid
    out = dataclasses.replace(plan, layers=tuple(layers), raw_weights=True)
    out.validate()
    return out


@st.composite
def networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    T = draw(st.integers(1, 6))
    if draw(st.booleans()):
        sizes = tuple(draw(st.integers(1, 30)) for _ in range(draw(st.integers(2, 4))))
        plan = random_fc_plan(rng, sizes, num_steps=T,
                              weight_mode=draw(st.sampled_from(
                                  ["mixed_even", "mixed_any", "excitatory", "inhibitory"])),
                              weight_exp=draw(st.integers(-2, 7)),  # ≥ 5: port wraps
                              du=draw(st.sampled_from([4095, None])))
        shape: tuple[int, ...] = (sizes[0],)
    else:
        C, H, W = draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
        plan = random_conv_plan(
            rng, (C, H, W), channels=draw(st.integers(1, 4)),
            kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
            stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
            padding=(draw(st.integers(0, 1)), draw(st.integers(0, 1))),
            pool=draw(st.sampled_from([1, 2])), classes=draw(st.integers(1, 5)), num_steps=T,
            weight_scale=draw(st.sampled_from([40.0, 4000.0])),  # large: conv wraps, u wraps
            du=draw(st.sampled_from([4095, None])))
        shape = (C, H, W)
    plan = _with_kind(plan, draw(st.sampled_from(KINDS)), rng)
    B = draw(st.integers(1, 7))
    x = (rng.random((T, B, *shape)) < draw(st.floats(0.05, 0.95))).astype(np.uint8)
    return plan, torch.as_tensor(x), draw(st.sampled_from([1, 7, 40, 1 << 16]))


@slow(60)
@given(networks())
def test_fast_emulator_equals_exact_path_on_random_plans(case) -> None:
    plan, x, block = case
    with blocks_of(block):
        fast = Emulator(plan).run(x, record_v=True)
    with exact_path():
        exact = Emulator(plan).run(x, record_v=True)
    for name in ("spikes", "v", "v_after"):
        for k, (f, e) in enumerate(zip(getattr(fast, name), getattr(exact, name), strict=True)):
            assert torch.equal(f, e), f"{name} of layer {k} differs"
    for f, e in zip(fast.theta, exact.theta, strict=True):
        assert (f is None and e is None) or torch.equal(f, e)
    assert torch.equal(fast.out_spikes, exact.out_spikes)


def test_conv_runs_conv2d_only_on_direct_backends() -> None:
    """On this machine's CPU torch picks oneDNN or im2col for the emulator's convolutions;
    any other backend (Winograd, FFT, NNPACK, cuDNN) sends the conv to unfold + matmul."""
    rng = np.random.default_rng(0)
    plan = random_conv_plan(rng, (2, 12, 12), channels=4, kernel=(3, 3), stride=(1, 1),
                            padding=(1, 1), pool=2, classes=3)
    L = plan.layers[0]
    x = (torch.as_tensor(rng.random((16, *L.in_shape))) < 0.5).float()
    w = torch.as_tensor(L.weights, dtype=torch.float32)
    assert kernel_mod.conv_backend(x, w, L) in ("Mkldnn", "Slow2d")
    want = kernel_mod.conv_unfold(x, w, L)
    assert torch.equal(kernel_mod.conv_exact(x, w, L), want)

    def refuse(*args, **kwargs):
        raise AssertionError("F.conv2d called on a transforming backend")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel_mod, "conv_backend", lambda x, w, L: "NnpackSpatial")
        mp.setattr(kernel_mod.F, "conv2d", refuse)
        assert torch.equal(kernel_mod.conv_exact(x, w, L), want)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("kernel", "stride"), [((2, 2), (2, 2)), ((3, 3), (2, 2)),
                                                ((3, 2), (1, 2)), ((1, 1), (1, 1))])
def test_depthwise_conv_equals_int64_sums(kernel, stride, layout) -> None:
    """The pools (depthwise convolutions): every channel at Σ|w| = 2^24 − 1 (float32's last exact
    bound), odd sizes (rows left over), both memory layouts."""
    rng = np.random.default_rng(3)
    C, H, W = 5, 9, 7
    kh, kw = kernel
    w = np.stack([_row_weights(rng, 1, kh * kw, FLOAT32_EXACT - 1, FLOAT32_EXACT, sign)[0]
                  for sign in ("+", "-", "mixed", "+", "-")]).reshape(C, 1, kh, kw)
    out = (C, (H - kh) // stride[0] + 1, (W - kw) // stride[1] + 1)
    L = PlanLayer("pool", "pool", (C, H, W), out, w.astype(np.int64), 0, 4095, 0, 100,
                  np.zeros(int(np.prod(out)), np.int32), 0, 1.0, stride=stride, groups=C)
    x = (torch.as_tensor(rng.random((4, C, H, W))) < 0.5).float()
    x[0] = 1.0
    got = kernel_mod.conv_exact(x.contiguous(memory_format=layout),
                                torch.as_tensor(w, dtype=torch.float32), L)
    assert torch.equal(got.to(torch.float64), _int_conv(x, w, L).to(torch.float64))


@pytest.mark.parametrize("weight_exp", [-2, -1, 0, 3])
def test_activation_shift_folds_only_where_exact(weight_exp: int) -> None:
    """The shift is folded into dense weights only for ``weight_exp ≥ 0``: with a negative
    exponent the floor comes first (odd sums: 64·floor(S/2) ≠ 32·S)."""
    rng = np.random.default_rng(5)
    plan = random_fc_plan(rng, (30, 20, 5), num_steps=5, weight_mode="excitatory",
                          weight_scale=30.0, weight_exp=weight_exp, vth=50)
    x = torch.as_tensor((rng.random((5, 6, 30)) < 0.5).astype(np.uint8))
    emu = Emulator(plan)
    assert [w is not None for w in emu._act_weights] == [weight_exp >= 0] * 2
    fast = emu.run(x, record_v=True)
    with exact_path():
        exact = Emulator(plan).run(x, record_v=True)
    assert all(torch.equal(f, e) for f, e in zip(fast.v, exact.v, strict=True))
    assert all(torch.equal(f, e) for f, e in zip(fast.spikes, exact.spikes, strict=True))


def test_float32_only_when_the_cpu_computes_it_in_ieee() -> None:
    """bf16/tf32 "fast math" (torch's matmul precision, oneDNN's fpmath switch) rounds the
    integer products: the emulator then sums in float64."""
    plan = random_fc_plan(np.random.default_rng(0), (6, 4))
    assert Emulator(plan)._weights[0].dtype == torch.float32
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONEDNN_DEFAULT_FPMATH_MODE", "BF16")
        assert Emulator(plan)._weights[0].dtype == torch.float64
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert Emulator(plan)._weights[0].dtype == torch.float64
    finally:
        torch.set_float32_matmul_precision(before)


# ----------------------------------------------------------------------------- compiled steps


def _assert_same_trace(a, b) -> None:
    for name in ("spikes", "v", "v_after"):
        for k, (f, e) in enumerate(zip(getattr(a, name), getattr(b, name), strict=True)):
            assert torch.equal(f, e), f"{name} of layer {k} differs"
    for f, e in zip(a.theta, b.theta, strict=True):
        assert (f is None and e is None) or torch.equal(f, e)
    assert torch.equal(a.out_spikes, b.out_spikes)


@contextmanager
def step_block_uncompiled():
    """``compile_steps`` with ``torch.compile`` left out: :func:`_step_block` and the fusable
    arithmetic run eagerly (checked on many plans without paying a compilation each)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emulator_mod, "_compiled_step_block", lambda: emulator_mod._step_block)
        yield


@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("subtract", [False, True])
def test_fusable_fire_and_reset_equal_the_exact_ones(inclusive: bool, subtract: bool) -> None:
    """Around the threshold (θ ± 2, scalar and per-neuron θ) and at the largest state values."""
    fusable, exact = kernel_mod.FusableExactArithmetic(), kernel_mod.ExactArithmetic(False)
    big = float(2**44)
    theta_n = torch.tensor([5.0, 5.0, 5.0, 5.0, 5.0, -3.0, big, -big, 0.0])
    v = torch.tensor([3.0, 4.0, 5.0, 6.0, 7.0, -3.0, big, -big, -0.0])
    for theta in (5.0, theta_n):
        s = fusable.fire(v, theta, 1.0, inclusive)
        ref = exact.fire(v, theta, 1.0, inclusive)
        assert torch.equal(s, ref.to(torch.float64))
        assert torch.equal(fusable.reset(v, s, theta, subtract),
                           exact.reset(v.clone(), ref, theta, subtract))


@slow(60)
@given(networks())
def test_fusable_step_block_equals_the_eager_loop_on_random_plans(case) -> None:
    plan, x, _ = case
    with step_block_uncompiled():
        emu = Emulator(plan, compile_steps=True)
        fused = emu.run(x, record_v=True)
    assert set(emu.step_paths) == {"compiled"}
    _assert_same_trace(fused, Emulator(plan).run(x, record_v=True))


def test_compile_failure_falls_back_to_the_eager_loop() -> None:
    plan = random_fc_plan(np.random.default_rng(3), (12, 9, 4), num_steps=4)
    x = torch.as_tensor((np.random.default_rng(4).random((4, 3, 12)) < 0.5).astype(np.uint8))

    def no_compiler():
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emulator_mod, "_compiled_step_block", no_compiler)
        emu = Emulator(plan, compile_steps=True)
        got = emu.run(x, record_v=True)
    assert emu.step_paths == ["eager"] * len(plan.layers) and not emu.compile_steps
    _assert_same_trace(got, Emulator(plan).run(x, record_v=True))


#: the default suite compiles one kind (a cold compile costs ~15–30 s on 2 cores); the fusable
#: arithmetic itself is checked on every kind above without compiling; ``make test-long``
#: compiles the other kinds too
COMPILED_KINDS = [pytest.param(k, marks=() if k == "lif" else pytest.mark.long) for k in KINDS]


@pytest.mark.slow
@pytest.mark.parametrize("kind", COMPILED_KINDS)
def test_compiled_steps_equal_the_eager_loop(kind: str) -> None:
    """torch.compile itself (inductor's C++ loop, its flags and fusions) on one plan per
    neuron kind: conv and dense layers, wraps and overflows reachable (large weights)."""
    pytest.importorskip("torch._inductor")
    rng = np.random.default_rng(len(kind))
    plan = _with_kind(random_conv_plan(rng, (2, 6, 6), channels=3, kernel=(3, 3),
                                       stride=(1, 1), padding=(1, 1), pool=2, classes=3,
                                       num_steps=5, weight_scale=4000.0), kind, rng)
    x = torch.as_tensor((rng.random((5, 4, 2, 6, 6)) < 0.4).astype(np.uint8))
    emu = Emulator(plan, compile_steps=True)
    got = emu.run(x, record_v=True)
    if set(emu.step_paths) != {"compiled"}:
        pytest.skip(f"torch.compile unavailable here: {emu.step_paths}")
    _assert_same_trace(got, Emulator(plan).run(x, record_v=True))


def test_compile_steps_default_comes_from_the_environment(monkeypatch) -> None:
    plan = random_fc_plan(np.random.default_rng(0), (6, 5, 3), num_steps=3)
    monkeypatch.delenv(emulator_mod.COMPILE_ENV, raising=False)
    assert not Emulator(plan).compile_steps
    monkeypatch.setenv(emulator_mod.COMPILE_ENV, "1")
    assert Emulator(plan).compile_steps and not Emulator(plan, compile_steps=False).compile_steps
    monkeypatch.setenv(emulator_mod.COMPILE_ENV, "0")
    assert not Emulator(plan).compile_steps and Emulator(plan, compile_steps=True).compile_steps
