"""The critical-pair refinement (neurodeploy.verify.critical) and its windows
(neurodeploy.verify.windows) against brute force on random tiny plans: the per-class bound on
c_j − c_y is never below the true maximum over every reachable input (natural thresholds, and
every pair kept alive), never above the path bound, below it on some classes; with every bit
enumerated the whole-input windows are exact (the true maximum for every class a flip reaches,
a flipping input handed back exactly when one exists); triples started from another
combination's state, and windows that start one step early, are caught by the same sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.verify import critical, windows
from neurodeploy.verify.critical import critical_bound, critical_score
from neurodeploy.verify.pathbound import path_bound
from tests.test_verify import _case
from tests.test_verify_stepbound import SEEDS, _true_margins


def _sweep(floors=(None, -99)) -> tuple[int, int, int]:
    """(cases bounded, bound below the truth somewhere, classes tighter than the path bound)."""
    bounded = below = tighter = 0
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth = _true_margins(plan, emu, lv, y)
        other = np.arange(truth.size) != y
        p = path_bound(plan, lv, y)
        for floor in floors:
            m = critical_bound(plan, lv, y, floor=floor)
            if m is None:
                assert p is None
                continue
            bounded += 1
            below += bool(np.any(m[other] < truth[other]))
            assert np.all(m[other] <= p[other]), seed
            tighter += int(np.sum(m[other] < p[other]))
    return bounded, below, tighter


def test_critical_bound_is_never_below_the_truth() -> None:
    bounded, below, tighter = _sweep()
    assert below == 0
    assert bounded >= 200
    assert tighter >= 5


def test_triples_from_another_state_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # every triple starts from the state of the first row (as if one b_{t−2}, b_{t−1} left
    # the state of all): the sweep must find a bound below the truth
    monkeypatch.setattr(critical, "_take",
                        lambda state, rows: [tuple(a[np.zeros_like(rows)] for a in s)
                                             for s in state])
    assert _sweep(floors=(-99,))[1] >= 1


def test_first_open_and_the_triple_cap_stay_sound() -> None:
    for seed in list(SEEDS)[:60]:
        plan, emu, x, u, y, eps, lv = _case(seed)
        full = critical_bound(plan, lv, y)
        if full is None:
            continue
        fast = critical_bound(plan, lv, y, first_open=True)
        assert np.all(fast >= full)
        capped = critical_bound(plan, lv, y, max_triples=0)     # no triple may run
        assert np.all(capped >= full) and np.all(capped <= path_bound(plan, lv, y))
        spent = critical_bound(plan, lv, y, total=5)            # five tuples in all per class
        assert np.all(spent >= full) and np.all(spent <= path_bound(plan, lv, y))
        proved = critical_score(plan, lv, y)
        assert (proved <= 0) == (critical_score(plan, lv, y, first_open=True) <= 0)


def test_two_layer_triples_equal_the_generic_pass() -> None:
    compared = 0
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        tables: list = []
        if path_bound(plan, lv, y, tables=tables) is None or lv.num_steps < 3:
            continue
        tb = tables[0]
        t = lv.num_steps - 1
        rng = np.random.default_rng(seed)
        k = 64
        b2 = rng.integers(len(tb.steps[t - 2].bits), size=k)
        m = rng.integers(len(tb.steps[t - 1].bits), size=k)
        n = rng.integers(len(tb.steps[t].bits), size=k)
        for j in range(plan.layers[-1].out_size):
            if j == y:
                continue
            try:
                a = critical._triple_gains(plan, tb, t, y, j, b2, m, n)
                b = critical._triple_gains_two(plan, tb, t, y, j, b2, m, n)
            except critical._Unprovable:
                continue
            assert np.array_equal(a, b), seed
            compared += 1
    assert compared >= 100


def test_windows_without_their_first_step_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # every window of k steps runs only its last k − 1, from the union entering its first
    # (a state one step too early): the sweep must find a bound below the truth
    def dropped(plan, tb, t, k, y, j, tup):  # noqa: ANN001
        st = [tuple(np.broadcast_to(a, (len(tup), a.size)) for a in s)
              for s in tb.unions[t - k + 1]]
        for q in range(1, k):
            lo, hi, st = critical._run(tb.layers, plan.fixed_point, st,
                                       critical._rows(tb.steps[t - k + 1 + q], tup[:, q]))
        return hi[:, j] - lo[:, y]

    monkeypatch.setattr(windows, "_chain_gains", dropped)
    assert _sweep()[1] >= 1


def test_whole_input_windows_are_exact_and_their_flips_replay() -> None:
    # tiny plans enumerate every free bit: the windows reach the whole input, so every class
    # a flip can reach gets exactly its true maximum (every class at all with the floor at
    # −99), the others stay below their threshold, and the returned levels flip the emulator
    exact = flips = 0
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth = _true_margins(plan, emu, lv, y)
        tables: list = []
        m = path_bound(plan, lv, y, tables=tables)
        if m is None or not windows.exact_tables(tables[0]):
            continue
        theta = (np.arange(truth.size) > y).astype(np.int64)
        for floor in (None, -99):
            out, level = critical._refine(plan, lv, y, m, tables[0], critical.MAX_TRIPLES,
                                          floor, False)
            th = theta if floor is None else np.full(truth.size, floor)
            for j in np.nonzero(np.arange(truth.size) != y)[0]:
                if truth[j] >= th[j]:
                    assert out[j] == truth[j], (seed, floor, j)
                    exact += 1
                else:
                    assert out[j] <= th[j] - 1, (seed, floor, j)
            if floor is None:
                assert (level is not None) == bool(np.any((truth >= theta)[np.arange(
                    truth.size) != y])), seed
            if level is not None and floor is None:
                c = emu.run(torch.as_tensor(lv.spikes(level)[:, None, :]).reshape(
                    lv.num_steps, 1, *plan.input_shape), record=False).logits[0]
                d = (c - c[y]).numpy()
                assert np.any((d >= th)[np.arange(truth.size) != y]), seed
                flips += 1
    assert exact >= 150 and flips >= 15, (exact, flips)


@pytest.mark.parametrize("T", [1, 2, 3])
def test_short_plans_are_decided_exactly(T: int) -> None:
    # one, two and three steps: the pair table or the triples are already whole inputs
    import itertools

    from neurodeploy.sims.emulator import Emulator, random_fc_plan
    from neurodeploy.verify.levels import pixel_levels

    checked = flips = 0
    for seed in range(80):
        rng = np.random.default_rng(seed)
        P = int(rng.integers(2, 5))
        plan = random_fc_plan(rng, (P, int(rng.integers(2, 6)), 3), num_steps=T,
                              weight_mode="mixed_any", weight_exp=int(rng.integers(-2, 8)))
        x, u = rng.random(P).astype(np.float32), rng.random((T, P)).astype(np.float32)
        lv, emu, y = pixel_levels(x, u, 0.3), Emulator(plan), int(rng.integers(3))
        levels = np.array(list(itertools.product(*lv.levels)))
        spikes = np.stack([lv.spikes(lvl) for lvl in levels], 1)
        c = emu.run(torch.as_tensor(spikes).reshape(T, len(levels), *plan.input_shape),
                    record=False).logits.numpy().astype(np.int64)
        truth = (c - c[:, y:y + 1]).max(0)
        tables: list = []
        m = path_bound(plan, lv, y, tables=tables)
        if m is None:
            continue
        out, level = critical._refine(plan, lv, y, m, tables[0], critical.MAX_TRIPLES, None,
                                      False)
        theta = (np.arange(3) > y).astype(np.int64)
        for j in (k for k in range(3) if k != y):
            assert out[j] == truth[j] if truth[j] >= theta[j] else out[j] < theta[j], seed
            checked += 1
        if level is not None:
            d = emu.run(torch.as_tensor(lv.spikes(level)[:, None, :]).reshape(
                T, 1, *plan.input_shape), record=False).logits[0].numpy()
            assert any(d[j] - d[y] >= theta[j] for j in range(3) if j != y), seed
            flips += 1
    assert checked >= 100 and flips >= 10, (checked, flips)
