"""The counterexample search of the exact verifier: restarts keep the first search's finds, a
spent time budget starts no restart, and every level vector it returns misclassifies on the
bit-exact emulator."""

from __future__ import annotations

from neurodeploy.verify.exhaustive import enumerate_levels
from neurodeploy.verify.search import emulator_predict, find_counterexample
from tests.test_verify import _case


def test_restarted_search_keeps_first_finds_and_replays() -> None:
    found = {1: 0, 3: 0}
    non_robust = 0
    for seed in range(400, 425):
        plan, emu, x, u, y, eps, lv = _case(seed)
        robust, _ = enumerate_levels(plan, emu, lv, y)
        non_robust += not robust
        hits = {}
        for restarts in (1,) if robust else (1, 3):   # on a robust case any find is a bug
            level = find_counterexample(plan, emu, lv, lv.x, lv.u, y, eps, seed, False,
                                        restarts)
            hits[restarts] = level is not None
            if level is not None:
                assert not robust, seed
                assert emulator_predict(emu, plan, lv.spikes(level)[:, None, :])[0] != y
            found[restarts] += hits[restarts]
        if not robust:
            assert hits[3] or not hits[1], seed    # the first search is the old single one
            # a spent budget starts no restart: exactly the single search's answer
            once = find_counterexample(plan, emu, lv, lv.x, lv.u, y, eps, seed, False, 1)
            spent = find_counterexample(plan, emu, lv, lv.x, lv.u, y, eps, seed, False, 3,
                                        budget=0.0)
            assert (once is None) == (spent is None), seed
            assert once is None or (once == spent).all(), seed
    assert non_robust >= 5 and found[1] >= 3
    assert found[3] >= found[1]


def test_search_score_of_solver_cases() -> None:
    """Where the searches ran and found nothing, the result records their best score: at
    least the clean input's, and no flip (≤ the 10⁻³ membrane tie-break) on robust cases."""
    from neurodeploy.verify import verify_example
    from neurodeploy.verify.search import _scores

    checked = 0
    for seed in range(200, 230):
        plan, emu, x, u, y, eps, lv = _case(seed)
        r = verify_example(plan, emu, x, y, u, eps, timeout=30, search=True, twin=False,
                           enumerate_limit=0, search_restarts=2, steps=False)
        if r.how not in ("solver", "timeout"):
            assert r.search_score is None
            continue
        clean = _scores(emu, plan, lv.spikes(lv.clean)[:, None, :], y)[0]
        assert r.search_score is not None and r.search_score >= clean - 1e-12, seed
        if r.status == "robust":
            assert r.search_score <= 1e-3, seed
            assert r.record()["search_score"] == round(r.search_score, 4)
            checked += 1
    assert checked >= 5
