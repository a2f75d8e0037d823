"""The path bound (neurodeploy.verify.pathbound) against brute force on random tiny plans: its
per-class bound on c_j − c_y is never below the true maximum over every reachable input (full
and partial enumeration), never above the step bound where both enumerate every bit and below
it on some classes, and a deliberately broken pass (step t started from the state another
combination of step t − 1 left) is caught by the same sweep."""

from __future__ import annotations

import numpy as np
import pytest

from neurodeploy.verify import pathbound
from neurodeploy.verify.pathbound import path_bound
from neurodeploy.verify.stepbound import step_bound
from tests.test_verify import _case
from tests.test_verify_stepbound import SEEDS, _true_margins


def _sweep(configs=((12, 20), (1, 2), (0, 0))) -> tuple[int, int, int]:
    """(cases bounded, bound below the truth somewhere, classes tighter than the step bound)."""
    bounded = below = tighter = 0
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth = _true_margins(plan, emu, lv, y)
        other = np.arange(truth.size) != y
        for bits, pair in configs:
            m = path_bound(plan, lv, y, bits, pair)
            if m is None:
                continue
            bounded += 1
            below += bool(np.any(m[other] < truth[other]))
            if (bits, pair) == (12, 20):
                s = step_bound(plan, lv, y)
                assert np.all(m[other] <= s[other]), seed   # every bit enumerated by both
                tighter += int(np.sum(m[other] < s[other]))
    return bounded, below, tighter


def test_path_bound_is_never_below_the_truth() -> None:
    bounded, below, tighter = _sweep()
    assert below == 0
    assert bounded >= 300
    assert tighter >= 5           # it is tighter than the step bound somewhere (9 measured)


@pytest.mark.parametrize("name", ["_pair_gains", "_pair_gains_two"])
def test_wrong_pair_state_is_caught(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # step t starts from the state of combination 0 of step t − 1 for every pair (the generic
    # pass and the two-layer one, each forced in turn)
    orig = getattr(pathbound, name)

    def first_state(layers, fmt, y, states, cur):  # noqa: ANN001
        st = [tuple(np.repeat(a[:1], a.shape[0], 0) for a in s) for s in states]
        return orig(layers, fmt, y, st, cur)

    monkeypatch.setattr(pathbound, "_pair_gains", first_state)
    monkeypatch.setattr(pathbound, "_pair_gains_two", first_state)
    assert _sweep(configs=((12, 20),))[1] >= 1


def test_two_layer_pass_equals_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two-layer shortcut gives the generic pass's bounds bit for bit (every tiny plan has
    two layers, so the sweep above ran the shortcut)."""
    cases = [_case(seed) for seed in SEEDS]
    configs = ((12, 20), (3, 5))
    fast = [path_bound(c[0], c[6], c[4], *k) for c in cases for k in configs]
    monkeypatch.setattr(pathbound, "_pair_gains_two", pathbound._pair_gains)
    slow = [path_bound(c[0], c[6], c[4], *k) for c in cases for k in configs]
    compared = 0
    for f, s in zip(fast, slow, strict=True):
        assert (f is None) == (s is None)
        if f is not None:
            assert np.array_equal(f, s)
            compared += 1
    assert compared >= 200


def test_pipeline_with_path_equals_enumeration() -> None:
    from neurodeploy.verify import verify_example
    from neurodeploy.verify.exhaustive import enumerate_levels

    seen: dict[str, int] = {}
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth, _ = enumerate_levels(plan, emu, lv, y)
        for branch in (0.0, 5.0):      # the path bound at the root, and in every node too
            r = verify_example(plan, emu, x, y, u, eps, timeout=30, search=False,
                               enumerate_limit=0, path=True, branch_seconds=branch)
            assert r.status == ("robust" if truth else "non_robust"), (seed, r.status, r.how)
            key = r.how + ("-flip" if r.how == "critical" and not truth else "")
            seen[key] = seen.get(key, 0) + 1
    assert seen.get("path", 0) >= 1, seen     # the path bound proves what the step bound cannot
    assert seen.get("critical", 0) >= 1, seen  # its refinement what the path bound cannot
    assert seen.get("critical-flip", 0) >= 1, seen  # its whole-input windows find flips
