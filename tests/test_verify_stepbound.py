"""The step bound (neurodeploy.verify.stepbound) against brute force on random tiny plans: its
per-class bound on c_j − c_y is never below the true maximum over every reachable input
(windows 1 and 2, full and partial enumeration), its proofs are robust by enumeration, it
proves cases the interval pass leaves open, and a deliberately broken pass (a dropped union
of the carried states, a dropped reset) is caught by the same sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neurodeploy.verify import stepbound, verify_example
from neurodeploy.verify.exhaustive import enumerate_levels
from neurodeploy.verify.intmodel import encode
from neurodeploy.verify.stepbound import step_bound, step_proves
from tests.test_verify import _case

SEEDS = range(600, 760)


def _true_margins(plan, emu, lv, y: int) -> np.ndarray:
    """``max (c_j − c_y)`` per class over every reachable level combination."""
    levels = np.array(list(itertools.product(*lv.levels)), dtype=np.int64)
    spikes = np.stack([lv.spikes(lvl) for lvl in levels], 1)
    c = emu.run(torch.as_tensor(spikes).reshape(spikes.shape[0], len(levels),
                                                *plan.input_shape), record=False).logits
    c = c.numpy().astype(np.int64)
    return (c - c[:, y:y + 1]).max(0)


def _sweep(configs=((14, 1), (2, 1), (0, 1), (14, 2))) -> tuple[int, int, int]:
    """(cases bounded, bound below the truth somewhere, proofs the root intervals lack)."""
    bounded = below = extra = 0
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth = _true_margins(plan, emu, lv, y)
        for bits, window in configs:
            m = step_bound(plan, lv, y, bits, window)
            if m is None:
                continue
            bounded += 1
            other = np.arange(m.size) != y
            below += bool(np.any(m[other] < truth[other]))
        if step_proves(plan, lv, y) and encode(plan, lv, y).targets:
            extra += 1
    return bounded, below, extra


def test_bound_is_never_below_the_truth() -> None:
    bounded, below, extra = _sweep()
    assert below == 0
    assert bounded >= 300        # lif and sublif cases, four configurations each
    assert extra >= 3            # it proves what the interval pass cannot


def test_dropped_union_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # carries only the first combination's state: the other combinations' futures are lost
    monkeypatch.setattr(stepbound, "_union", lambda st: tuple(np.atleast_2d(a)[0] for a in st))
    assert _sweep(configs=((14, 1),))[1] >= 1


def test_dropped_reset_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = stepbound._neurons

    def no_reset(S, fmt, state, a_lo, a_hi):
        lo, hi, (u_lo, u_hi, _, _) = orig(S, fmt, state, a_lo, a_hi)
        D = fmt.decay_unity       # v as if nothing fired: the pre-reset voltage
        v_lo = stepbound._tz(state[2], S.f_v, D) + u_lo + S.bias
        v_hi = stepbound._tz(state[3], S.f_v, D) + u_hi + S.bias
        return lo, hi, (u_lo, u_hi, v_lo, v_hi)

    monkeypatch.setattr(stepbound, "_neurons", no_reset)
    assert _sweep(configs=((14, 1),))[1] >= 1


def test_talif_is_not_bounded() -> None:
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        if any(L.neuron == "talif" for L in plan.layers):
            assert step_bound(plan, lv, y) is None
            assert not step_proves(plan, lv, y)
            return
    pytest.fail("no TA-LIF case in the sweep")


def test_pipeline_steps_stage_equals_enumeration() -> None:
    """Verdicts equal brute force; where the step bound ran and did not prove, the recorded
    ``bound_score`` is above 0 and never below the true ``max_{j≠y}(c_j − c_y + ½[j < y])``."""
    seen: dict[str, int] = {}
    scored = 0
    for seed in range(600, 680):
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth, _ = enumerate_levels(plan, emu, lv, y)
        r = verify_example(plan, emu, x, y, u, eps, timeout=30, search=False,
                           enumerate_limit=0)
        assert r.status == ("robust" if truth else "non_robust"), (seed, r.status, r.how)
        seen[r.how] = seen.get(r.how, 0) + 1
        if r.bound_score is not None:
            m = _true_margins(plan, emu, lv, y)
            best = max(m[j] + 0.5 * (j < y) for j in range(m.size) if j != y)
            assert r.bound_score > 0 and r.bound_score >= best, (seed, r.bound_score, best)
            scored += 1
    assert seen.get("steps", 0) >= 3
    assert scored >= 5           # cases where the bound ran and did not prove


def _reference_neurons(S, fmt, state, a_lo, a_hi):
    """The step of the module docstring written out case by case (no shortcuts)."""
    D = fmt.decay_unity
    u_lo = stepbound._tz(state[0], S.f_u, D) + a_lo
    u_hi = stepbound._tz(state[1], S.f_u, D) + a_hi
    v_lo = stepbound._tz(state[2], S.f_v, D) + u_lo + S.bias
    v_hi = stepbound._tz(state[3], S.f_v, D) + u_hi + S.bias
    need = 0 if fmt.spike_comparison == ">=" else 1
    sure, maybe = v_lo - S.theta >= need, v_hi - S.theta >= need
    q_hi = np.minimum(v_hi, S.theta + need - 1)
    if S.subtract:
        f_lo, f_hi = np.maximum(v_lo, S.theta + need) - S.theta, v_hi - S.theta
    else:
        f_lo = f_hi = np.zeros_like(v_lo)
    r_lo = np.where(sure, f_lo, np.where(maybe, np.minimum(v_lo, f_lo), v_lo))
    r_hi = np.where(sure, f_hi, np.where(maybe, np.maximum(q_hi, f_hi), v_hi))
    return sure, maybe, (u_lo, u_hi, r_lo, r_hi)


def test_neuron_step_equals_the_case_by_case_formula() -> None:
    """The neuron step's shortcuts (u = a without a carried current; the reset's union without
    a separate "sure" case when θ ≥ 1) change no interval: thresholds −3 … 40, both resets,
    both comparisons, carried currents on and off."""
    import dataclasses

    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        plan, *_ = _case(600 + seed)
        layers = stepbound._prepare(plan)
        if layers is None:                      # TA-LIF: not bounded
            continue
        fmt = dataclasses.replace(plan.fixed_point, spike_comparison=[">", ">="][seed % 2])
        S = layers[0]
        N = S.L.out_size
        S = dataclasses.replace(S, theta=int(rng.integers(-3, 41)), subtract=seed % 3 == 0,
                                f_u=S.f_u * int(seed % 4 != 0), bias=rng.integers(-20, 21, N))
        lo = rng.integers(-60, 60, (2, N))
        state = (lo[0], lo[0] + rng.integers(0, 30, N), lo[1], lo[1] + rng.integers(0, 30, N))
        a_lo = rng.integers(-50, 50, (16, N))
        a_hi = a_lo + rng.integers(0, 40, (16, N))
        got = stepbound._neurons(S, fmt, state, a_lo, a_hi)
        ref = _reference_neurons(S, fmt, state, a_lo, a_hi)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
        for g, r in zip(got[2], ref[2], strict=True):
            assert np.array_equal(g, r), seed
        checked += 1
    assert checked >= 20


def test_first_layer_from_the_enumerated_columns_equals_the_dense_product() -> None:
    checked = 0
    for seed in range(600, 640):
        plan, emu, x, u, y, eps, lv = _case(seed)
        layers = stepbound._prepare(plan)
        if layers is None:
            continue
        weight = np.abs(layers[0].dense).sum(0)
        for bits in stepbound._window_inputs(lv, range(lv.num_steps), weight, 3):
            got = stepbound._first_synapse(layers[0], plan.fixed_point, bits)
            ref = stepbound._synapse(layers[0], plan.fixed_point, *bits.dense())
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
            checked += bits.cols.size > 0
    assert checked >= 20
