"""Integer S-IBP on the deployment plan (neurodeploy.bounds.plan_ibp): unit checks of the
interval operations, soundness against the bit-exact emulator (≥ 10^4 members per set) and
the Lava transcription (with its one-step synaptic delays), and broken bounds being caught."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from neurodeploy.bounds.perturbation import AnalogLinfSet, BernoulliLinfSet, InputBox, SpikeFlipSet
from neurodeploy.bounds.plan_ibp import (
    PlanFormat,
    certify_plan,
    certify_plan_many,
    cond_wrap_interval,
    plan_format,
    plan_ibp_bounds,
    plan_margin_lower,
    trunc_div,
    verdict_sentence,
    wrap_interval,
)
from neurodeploy.bounds.plan_soundness import check_plan_soundness, check_plan_soundness_lava
from neurodeploy.errors import ConfigError, DataError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan

BROKEN_WRAP = functools.partial(plan_ibp_bounds, widen_wraps=False)


@pytest.fixture(autouse=True)
def _one_thread(_quiet_and_threads):
    """Small integer workloads: on the shared 2-core machine extra threads only contend."""
    torch.set_num_threads(1)


def _dropped_reset_union(plan, box, *a, **k):
    """Broken: an unknown spike keeps the pre-reset voltage interval (forgets v = 0)."""
    b = plan_ibp_bounds(plan, box)
    for L in b.layers:
        L.vr_lo = torch.where(L.s_hi.bool() & ~L.s_lo.bool(), L.v_lo, L.vr_lo)
        L.vr_hi = torch.where(L.s_hi.bool() & ~L.s_lo.bool(), L.v_hi, L.vr_hi)
    return b


def _int(*v):
    return torch.tensor(v, dtype=torch.int64)


# ----------------------------------------------------------------------------- interval ops


def test_wrap_interval_is_exact_inside_a_period_and_full_range_across() -> None:
    lo, hi = wrap_interval(_int(5, 2**23 + 3, -2**23 - 10, 2**23 - 2), _int(9, 2**23 + 7, -2**23 - 1,
                                                                         2**23 + 2), 24)
    assert lo.tolist() == [5, -2**23 + 3, 2**23 - 10, -2**23]
    assert hi.tolist() == [9, -2**23 + 7, 2**23 - 1, 2**23 - 1]
    # every point of every interval maps inside the result
    rng = np.random.default_rng(0)
    a = rng.integers(-2**26, 2**26, 200)
    w = rng.integers(0, 2**24, 200)
    lo, hi = wrap_interval(torch.as_tensor(a), torch.as_tensor(a + w), 24)
    for i in range(200):
        xs = np.linspace(a[i], a[i] + w[i], 50).astype(np.int64)
        wr = ((xs + 2**23) % 2**24) - 2**23
        assert lo[i] <= wr.min() and wr.max() <= hi[i]


def test_cond_wrap_interval_hull_of_pieces() -> None:
    M = 2**23

    def f(u):
        return u - 2 * M if u > M else (u + 2 * M if u <= -M else u)

    cases = [(0, 10), (M - 5, M), (M - 5, M + 5), (M + 1, M + 9), (-M - 3, -M + 3), (-M - 9, -M),
             (-3 * M, 3 * M)]
    lo, hi = cond_wrap_interval(_int(*[c[0] for c in cases]), _int(*[c[1] for c in cases]), 24)
    for (a, b), l_, h_ in zip(cases, lo.tolist(), hi.tolist(), strict=True):
        img = [f(u) for u in np.linspace(a, b, 400).astype(np.int64).tolist() + [a, b, M, M + 1,
                                                                               -M, -M + 1]
               if a <= u <= b]
        assert l_ <= min(img) and max(img) <= h_
    assert (lo[0].item(), hi[0].item()) == (0, 10)          # inside: unchanged
    assert (lo[3].item(), hi[3].item()) == (-M + 1, -M + 9)  # one piece: shifted exactly


def test_trunc_div_rounds_toward_zero() -> None:
    assert trunc_div(_int(-4097, -1, 4097, 8191), 4096).tolist() == [-1, 0, 1, 1]


def test_plan_format_reads_the_plans_format_record() -> None:
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (4, 3), num_steps=2)
    assert plan_format(plan) == PlanFormat()  # Lava 0.10's rules (plan default)
    rec = {"threshold_shift": 5, "state_bits": 20, "activation_shift": 4, "u_overflow": "wrap"}
    for holder in (SimpleNamespace(fixed_point=rec),
                   SimpleNamespace(fixed_point=SimpleNamespace(**rec)),
                   SimpleNamespace(source={"fixed_point": rec})):
        f = plan_format(holder)
        assert (f.threshold_shift, f.state_bits, f.activation_shift, f.u_overflow) == \
            (5, 20, 4, "wrap")
    with pytest.raises(ConfigError, match="u_overflow"):
        plan_format(SimpleNamespace(fixed_point={"u_overflow": "stochastic"}))


def test_other_format_rules_are_sound_by_enumeration() -> None:
    """Formats other than Lava's (u wraps in two's complement or saturates, v wraps, '>=',
    subtract reset): the bound of a one-neuron plan contains every reachable integer state,
    enumerated over every input train of the box by a direct integer simulation."""
    import itertools

    def simulate(fmt, w, vth, bias, du, dv, train):
        half = 1 << (fmt.state_bits - 1)
        u = v = 0
        vs, ss = [], []
        for s_in in train:
            a = sum(wi * si for wi, si in zip(w, s_in, strict=True))
            uu = int(np.trunc(u * (4096 - du - 1) / 4096)) + (a << 6)
            if fmt.u_overflow == "wrap":
                uu = ((uu + half) % (2 * half)) - half
            elif fmt.u_overflow == "saturate":
                uu = max(-half + 1, min(half - 1, uu))
            else:
                uu = uu - 2 * half if uu > half else (uu + 2 * half if uu <= -half else uu)
            u = uu
            vv = int(np.trunc(v * (4096 - dv) / 4096)) + u + bias
            vv = ((vv + half) % (2 * half)) - half if fmt.v_overflow == "wrap" else \
                max(-half + 1, min(half - 1, vv))
            th = vth << 6
            s = vv > th if fmt.spike_comparison == ">" else vv >= th
            if s:
                vv = 0 if fmt.reset == "zero" else vv - th
            v = vv
            vs.append(v)
            ss.append(int(s))
        return vs, ss

    w = [90, -40, 70]
    T = 3
    for rules in itertools.product(("wrap_once", "wrap", "saturate"), ("saturate", "wrap"),
                                   (">", ">="), ("zero", "subtract")):
        fmt = PlanFormat(state_bits=16, u_overflow=rules[0], v_overflow=rules[1],
                         spike_comparison=rules[2], reset=rules[3])
        L = PlanLayer(name="fc1", kind="dense", in_shape=(3,), out_shape=(1,),
                      weights=np.array([w], np.int32), weight_exp=0, du=3000, dv=500, vth=70,
                      bias_mant=np.array([40], np.int32), bias_exp=0, scale=1.0)
        plan = DeploymentPlan("x", T, (3,), (L,))
        lo = torch.zeros(T, 1, 3)
        hi = torch.ones(T, 1, 3)
        lo[0, 0, 0] = 1
        b = plan_ibp_bounds(plan, InputBox(lo, hi, {}), fmt).layers[0]
        free = [(t, i) for t in range(T) for i in range(3) if (t, i) != (0, 0)]
        for bits in itertools.product((0, 1), repeat=len(free)):
            train = [[1 if (t, i) == (0, 0) else 0 for i in range(3)] for t in range(T)]
            for (t, i), bit in zip(free, bits, strict=True):
                train[t][i] = bit
            vs, ss = simulate(fmt, w, 70, 40, 3000, 500, train)
            for t in range(T):
                assert b.vr_lo[t, 0, 0] <= vs[t] <= b.vr_hi[t, 0, 0], (rules, t)
                assert b.s_lo[t, 0, 0] <= ss[t] <= b.s_hi[t, 0, 0], (rules, t)


# ----------------------------------------------------------------------------- hand example


def _one_neuron_plan(w: int, vth: int, bias: int = 0, dv: int = 0, T: int = 4) -> DeploymentPlan:
    L = PlanLayer(name="fc1", kind="dense", in_shape=(2,), out_shape=(1,),
                  weights=np.array([[w, w]], np.int32), weight_exp=0, du=4095, dv=dv, vth=vth,
                  bias_mant=np.array([bias], np.int32), bias_exp=0, scale=1.0)
    return DeploymentPlan("loihi2", T, (2,), (L,))


def test_hand_counted_bounds_strict_threshold_and_reset() -> None:
    # w = 100 on two inputs, vth = 100 → threshold 6400; a << 6 = 6400 per input spike.
    plan = _one_neuron_plan(100, 100)
    lo = torch.tensor([[[1, 0]], [[0, 0]], [[1, 1]], [[0, 0]]], dtype=torch.float32)
    hi = torch.tensor([[[1, 1]], [[0, 0]], [[1, 1]], [[1, 0]]], dtype=torch.float32)
    b = plan_ibp_bounds(plan, InputBox(lo, hi, {})).layers[0]
    # t0: v ∈ [6400, 12800]; 6400 > 6400 is false (strict) → spike unknown
    assert (b.v_lo[0].item(), b.v_hi[0].item()) == (6400, 12800)
    assert (b.s_lo[0].item(), b.s_hi[0].item()) == (0, 1)
    # reset union: [min(6400, 0), max(min(12800, 6400), 0)] = [0, 6400]
    assert (b.vr_lo[0].item(), b.vr_hi[0].item()) == (0, 6400)
    # t1 (dv = 0: no decay): v ∈ [0, 6400], no spike
    assert (b.v_lo[1].item(), b.v_hi[1].item(), b.s_hi[1].item()) == (0, 6400, 0)
    # t2: v ∈ [12800, 19200] → spike certain, v reset to 0
    assert (b.s_lo[2].item(), b.vr_lo[2].item(), b.vr_hi[2].item()) == (1, 0, 0)
    # t3: v ∈ [0, 6400] → no spike
    assert b.s_hi[3].item() == 0
    counts = plan_margin_lower(plan_ibp_bounds(plan, InputBox(lo, hi, {})), torch.tensor([0]))
    assert counts.shape == (1, 0)


# ----------------------------------------------------------------------------- soundness


def _bern(plan, n_in, B, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, *n_in, generator=g), torch.randint(0, plan.num_classes, (B,), generator=g)


@pytest.mark.parametrize("seed", [0, 1])
def test_sound_on_emulator_fc_bernoulli_and_flip_sets(seed) -> None:
    rng = np.random.default_rng(seed)
    plan = random_fc_plan(rng, (20, 16, 12, 4), num_steps=6, du=None, bias_max=300, vth=300,
                          weight_scale=60.0)
    x, y = _bern(plan, (20,), 4, seed)
    g = torch.Generator().manual_seed(seed + 10)
    r = check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 6, 2500, g)
    assert r.samples >= 10_000 and r.values_checked > 10**6
    assert r.sound, r
    s = (torch.rand(6, 4, 20, generator=g) < 0.3).float()
    r = check_plan_soundness(plan, SpikeFlipSet(0.1), s, y, 6, 2500, g)
    assert r.samples >= 10_000 and r.sound, r
    # not vacuous: some bound is tight enough to fix some spikes of the hidden layers
    b = plan_ibp_bounds(plan, BernoulliLinfSet(0.1).box(x, 6, g))
    assert float((b.layers[0].s_hi - b.layers[0].s_lo).float().mean()) < 0.9


def test_wraps_matter_and_dropping_the_widening_is_caught() -> None:
    """Dense with weight_exp 7: a << 6 exceeds 2^23 and u wraps on the chip."""
    rng = np.random.default_rng(1)
    plan = random_fc_plan(rng, (24, 10, 4), num_steps=6, weight_mode="mixed_any", du=None,
                          bias_max=300, vth=3000, weight_scale=150.0, weight_exp=7)
    x, y = _bern(plan, (24,), 4, 3)
    g = torch.Generator().manual_seed(0)
    ok = check_plan_soundness(plan, BernoulliLinfSet(0.15), x, y, 6, 2500, g)
    assert ok.sound, ok
    g = torch.Generator().manual_seed(0)
    bad = check_plan_soundness(plan, BernoulliLinfSet(0.15), x, y, 6, 2500, g,
                               bounds_fn=BROKEN_WRAP)
    assert bad.total_violations > 0


def test_conv_pool_plan_sound() -> None:
    rng = np.random.default_rng(2)
    plan = random_conv_plan(rng, (1, 5, 5), 2, (3, 3), (1, 1), (1, 1), 2, 4, num_steps=5,
                            weight_scale=300.0, vth=200)
    assert [L.kind for L in plan.layers] == ["conv", "pool", "dense"]
    x, y = _bern(plan, (1, 5, 5), 4, 4)
    g = torch.Generator().manual_seed(1)
    r = check_plan_soundness(plan, BernoulliLinfSet(0.15), x, y, 5, 2500, g)
    assert r.samples >= 10_000 and r.sound, r


def _conv_wrap_plan(seed: int) -> DeploymentPlan:
    """80 input channels, 3x3 kernel, large positive int16 weights: conv sums reach past 2^23
    and wrap (Lava's 24-bit conv output)."""
    rng = np.random.default_rng(seed)
    C, H = 80, 4
    w = rng.integers(8000, 32001, size=(2, C, 3, 3)).astype(np.int32)
    w[:, ::9] *= -1
    conv = PlanLayer(name="conv1", kind="conv", in_shape=(C, H, H), out_shape=(2, H, H),
                     weights=w, weight_exp=0, du=4095, dv=0, vth=20000,
                     bias_mant=np.zeros(2 * H * H, np.int32), bias_exp=0, scale=1.0,
                     stride=(1, 1), padding=(1, 1))
    fc = PlanLayer(name="fc2", kind="dense", in_shape=(2, H, H), out_shape=(4,),
                   weights=(2 * rng.integers(-60, 61, size=(4, 2 * H * H))).astype(np.int32),
                   weight_exp=0, du=4095, dv=0, vth=100, bias_mant=np.zeros(4, np.int32),
                   bias_exp=0, scale=1.0, flatten_before=True)
    kw = {"raw_weights": True} if any(
        f.name == "raw_weights" for f in dataclasses.fields(DeploymentPlan)) else {}
    return DeploymentPlan("loihi2", 5, (C, H, H), (conv, fc), **kw)


@pytest.mark.parametrize("members", [pytest.param(500, id="fast"),
                                     pytest.param(2500, id="1e4", marks=pytest.mark.slow)])
def test_conv_wrap_needed_and_dropping_it_is_caught(members) -> None:
    plan = _conv_wrap_plan(0)
    g = torch.Generator().manual_seed(1)
    x = 0.6 + 0.4 * torch.rand(4, 80, 4, 4, generator=g)
    y = torch.randint(0, 4, (4,), generator=g)
    b = plan_ibp_bounds(plan, BernoulliLinfSet(0.15).box(x, 5, g))
    assert int(b.layers[0].a_hi.max()) == 2**23 - 1  # some interval was widened
    g = torch.Generator().manual_seed(1)
    ok = check_plan_soundness(plan, BernoulliLinfSet(0.15), x, y, 5, members, g)
    assert ok.samples == 4 * members and ok.sound, ok
    g = torch.Generator().manual_seed(1)
    bad = check_plan_soundness(plan, BernoulliLinfSet(0.15), x, y, 5, 200, g,
                               bounds_fn=BROKEN_WRAP)
    assert bad.spike_violations[0] > 0


def test_dropping_the_reset_union_is_caught() -> None:
    rng = np.random.default_rng(5)
    plan = random_fc_plan(rng, (20, 16, 4), num_steps=6, du=None, dv=200, bias_max=0, vth=200,
                          weight_scale=80.0)
    x, y = _bern(plan, (20,), 4, 5)
    g = torch.Generator().manual_seed(2)
    assert check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 6, 2500, g).sound
    g = torch.Generator().manual_seed(2)
    bad = check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 6, 2500, g,
                               bounds_fn=_dropped_reset_union)
    assert sum(bad.voltage_violations) > 0


def test_sound_on_lava_transcription_with_delays_and_dropping_the_delay_is_caught() -> None:
    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (20, 16, 12, 4), num_steps=6, du=None, bias_max=300, vth=300,
                          weight_scale=60.0)
    x, _ = _bern(plan, (20,), 4, 0)
    g = torch.Generator().manual_seed(7)
    ok = check_plan_soundness_lava(plan, BernoulliLinfSet(0.1), x, 6, 40, g)
    assert ok.sound and ok.values_checked > 0
    g = torch.Generator().manual_seed(7)
    bad = check_plan_soundness_lava(plan, BernoulliLinfSet(0.1), x, 6, 40, g, use_delay=False)
    assert bad.total_violations > 0


def _talif_plan(seed: int) -> DeploymentPlan:
    rng = np.random.default_rng(seed)
    plan = random_fc_plan(rng, (16, 12, 10, 4), num_steps=6, du=None, bias_max=200, vth=300,
                          weight_scale=60.0)
    layers = []
    for k, L in enumerate(plan.layers):
        if k == len(plan.layers) - 1:
            layers.append(L)
            continue
        vth64 = int(L.vth) << 6
        tv = rng.integers(0, 2**11 + 1, size=L.out_size).astype(np.int32)
        nds = rng.integers(-vth64, vth64 + 1, size=(plan.num_steps, L.out_size)).astype(np.int32)
        layers.append(dataclasses.replace(
            L, neuron="talif", neuron_params={"theta_v_shift": 12, "theta_bits": 24},
            neuron_arrays={"theta_v": tv, "nds": nds}))
    return dataclasses.replace(plan, layers=tuple(layers))


def test_talif_theta_bounds_sound() -> None:
    plan = _talif_plan(3)
    x, y = _bern(plan, (16,), 4, 8)
    g = torch.Generator().manual_seed(3)
    r = check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 6, 2500, g)
    assert r.sound, r
    b = plan_ibp_bounds(plan, BernoulliLinfSet(0.1).box(x, 6, g))
    assert b.layers[0].theta_lo is not None and b.layers[-1].theta_lo is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_sound_bigger_random_plans(seed) -> None:
    rng = np.random.default_rng(100 + seed)
    plan = random_fc_plan(rng, (64, 48, 32, 10), num_steps=8, du=None, weight_mode="mixed_any",
                          bias_max=500, weight_scale=100.0, weight_exp=int(rng.integers(-2, 6)))
    x, y = _bern(plan, (64,), 8, seed)
    g = torch.Generator().manual_seed(seed)
    assert check_plan_soundness(plan, BernoulliLinfSet(0.08), x, y, 8, 2500, g).sound
    s = (torch.rand(8, 8, 64, generator=g) < 0.2).float()
    assert check_plan_soundness(plan, SpikeFlipSet(0.05), s, y, 8, 2500, g).sound
    tplan = _talif_plan(200 + seed)
    x, y = _bern(tplan, (16,), 8, seed)
    assert check_plan_soundness(tplan, BernoulliLinfSet(0.1), x, y, 6, 2500, g).sound


# ----------------------------------------------------------------------------- certify


def _small_compiled(T: int = 5):
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC16-FC4", (1, 3, 3), num_steps=T, readout="rate")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model, compile_model(model, profile="loihi2")


def test_certify_plan_known_draw_exact_at_eps0_and_paired_with_float() -> None:
    from neurodeploy.encoding import host_spikes

    model, plan = _small_compiled()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 3, 3, generator=g)
    idx = torch.arange(100, 140)
    spikes = host_spikes(x, idx, 7, 5)
    counts = Emulator(plan).run(spikes).counts
    y = counts.argmax(1)
    y[:5] = (y[:5] + 1) % 4  # some wrong labels
    out = certify_plan(plan, x, y, 0.0, host_seed=7, model=model, index=idx, batch_size=16)
    # ε = 0: the box is the host's draw itself, the integer bounds are exact, so verified ⇔
    # the emulator's counts on the host spikes strictly prefer y
    top2 = counts.topk(2, 1).values
    strict = (counts.argmax(1) == y) & (top2[:, 0] > top2[:, 1])
    assert out["deployed"]["verified_error"] == pytest.approx(1 - strict.float().mean().item())
    assert out["deployed"]["clean_accuracy"] == pytest.approx(35 / 40)
    assert set(out["float"]) == {"ibp", "crown"} and out["n"] == 40
    assert "(float) →" in out["verdict"] and "Loihi 2" in out["verdict"]
    # the float side is certified on the same box: at ε = 0 float S-IBP is exact too
    with torch.no_grad():
        f_counts = model.run(spikes, record=True).spikes[-1].sum(0)
    f_top2 = f_counts.topk(2, 1).values
    f_strict = (f_counts.argmax(1) == y) & (f_top2[:, 0] > f_top2[:, 1])
    assert out["float"]["ibp"]["verified_error"] == pytest.approx(
        1 - f_strict.float().mean().item())
    # ε > 0 can only lose certificates
    wider = certify_plan(plan, x, y, 0.1, host_seed=7, index=idx)
    assert wider["deployed"]["verified_error"] >= out["deployed"]["verified_error"]
    assert "float" not in wider


def test_certify_plan_many_pairs_draws_with_certify_many() -> None:
    from neurodeploy.bounds.certify import certify_many

    model, plan = _small_compiled()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, 1, 3, 3, generator=g)
    y = torch.randint(0, 4, (30,), generator=g)
    a = certify_plan_many(plan, x, y, 0.0, seed=3, batch_size=16)
    b = certify_many(model, x, y, 0.0, None, ("ibp",), seed=3, batch_size=16)["ibp"]
    # same draws: both clean accuracies come from the same second draw per batch, and the
    # float and deployed models agree on most of these examples
    assert a.margin_lb.shape == b.margin_lb.shape == (30, 3)
    assert abs(a.clean_accuracy - b.clean_accuracy) <= 0.2


def test_certify_plan_refuses_analog_set_and_bad_boxes() -> None:
    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (4, 3), num_steps=2)
    with pytest.raises(ConfigError, match="binary spikes"):
        certify_plan_many(plan, torch.rand(2, 4), torch.zeros(2, dtype=torch.long), 0.1,
                          perturbation=AnalogLinfSet(0.1))
    with pytest.raises(DataError, match="binary"):
        plan_ibp_bounds(plan, InputBox(torch.full((2, 1, 4), 0.5), torch.ones(2, 1, 4), {}))
    with pytest.raises(DataError, match="shape"):
        plan_ibp_bounds(plan, InputBox(torch.zeros(2, 1, 5), torch.ones(2, 1, 5), {}))


def test_verdict_sentence_words() -> None:
    assert verdict_sentence(0.06, 0.54, 0.55, "loihi2").startswith(
        "verified error at ε=0.06: 0.54 (float) → 0.55 (Loihi 2)")
    assert "weaker" in verdict_sentence(0.06, 0.54, 0.60)
    assert "unchanged" in verdict_sentence(0.06, 0.54, 0.542)
    assert verdict_sentence(0.1, None, 0.3, "loihi1") == "verified error at ε=0.1: 0.30 (Loihi 1)"


def test_certify_cli_with_plan_and_model(tmp_path, capsys) -> None:
    import json

    from neurodeploy.cli import main
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.models import ModelConfig, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC16-FC10", (1, 8, 8), num_steps=4, readout="rate")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    save_checkpoint(tmp_path / "m.pt", model)
    compile_model(model, profile="loihi2").save(tmp_path / "plan.npz")
    out = tmp_path / "cert.json"
    code = main(["certify", "--plan", str(tmp_path / "plan.npz"), "--model",
                 str(tmp_path / "m.pt"), "--data", "digits", "--samples", "24", "--eps", "0.02",
                 "--method", "ibp", "--batch-size", "10", "-q", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    d = json.loads(out.read_text())
    assert set(d["methods"]) == {"deployed (plan-ibp)", "float (ibp)"}
    assert d["n"] == 24 and "(Loihi 2)" in d["verdict"] and d["verdict"] in printed
    code = main(["certify", "--eps", "0.02", "--data", "digits"])
    assert code == 2 and "--plan" in capsys.readouterr().err


@pytest.mark.parametrize("conv", [False, True])
def test_two_synapse_groups_sound_and_the_low_group_counts(conv) -> None:
    """A second synapse group (plan v3 ``weights_lo``) is bounded as the folded matrix
    ``W_e·2^k + W_e(lo)``: sound on the emulator; bounds that ignore the low group are not."""
    rng = np.random.default_rng(5)
    if conv:
        plan = random_conv_plan(rng, (1, 5, 5), 2, (3, 3), (1, 1), (1, 1), 2, 4, num_steps=5,
                                weight_scale=60.0, vth=900)
        shape = (1, 5, 5)
    else:
        plan = random_fc_plan(rng, (20, 16, 4), num_steps=5, du=None, bias_max=300, vth=1500,
                              weight_scale=40.0)
        shape = (20,)
    layers = []
    for L in plan.layers:
        if L.kind == "pool":
            layers.append(L)
            continue
        lo = rng.integers(0, 8, L.weights.shape).astype(np.int32)
        layers.append(dataclasses.replace(L, weight_exp=3, weights_lo=lo))
    plan = dataclasses.replace(plan, layers=tuple(layers))
    plan.validate()
    x, y = _bern(plan, shape, 4, 7)
    g = torch.Generator().manual_seed(2)
    r = check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 5, 2500, g)
    assert r.samples >= 10_000 and r.sound, r

    def without_lo(p, box, *a, **k):
        return plan_ibp_bounds(dataclasses.replace(p, layers=tuple(
            dataclasses.replace(L, weights_lo=np.zeros_like(L.weights_lo))
            if L.weights_lo is not None else L for L in p.layers)), box, *a, **k)

    g = torch.Generator().manual_seed(2)
    bad = check_plan_soundness(plan, BernoulliLinfSet(0.1), x, y, 5, 2500, g,
                               bounds_fn=without_lo)
    assert bad.total_violations > 0
