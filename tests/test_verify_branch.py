"""Branch-and-bound over pixel levels (neurodeploy.verify.branch, step-bound node check): every
"robust" it returns is robust by brute force on random tiny plans, it proves cases the root
intervals cannot, and the same sweep catches a deliberately unsound split (one that drops a
branch). The pipeline test turns the root step bound off so the branch stage is what proves."""

from __future__ import annotations

from neurodeploy.verify.branch import branch_and_bound
from neurodeploy.verify.exhaustive import enumerate_levels
from neurodeploy.verify.intmodel import encode
from tests.test_verify import _case


def _sweep(split=None, rule="mass") -> tuple[int, int]:
    """(B&B robust verdicts, of which wrong by enumeration) on cases the root leaves open."""
    proved = wrong = 0
    for seed in range(600, 700):
        plan, emu, x, u, y, eps, lv = _case(seed)
        if not encode(plan, lv, y).targets:
            continue
        kw = {} if split is None else {"split": split}
        ok, _ = branch_and_bound(plan, lv, y, seconds=30, max_nodes=400, rule=rule, **kw)
        if ok:
            proved += 1
            wrong += not enumerate_levels(plan, emu, lv, y)[0]
    return proved, wrong


def test_branch_verdicts_equal_enumeration() -> None:
    proved, wrong = _sweep()
    assert wrong == 0
    assert proved >= 5          # it decides cases the root intervals leave open


def test_time_rule_verdicts_equal_enumeration() -> None:
    proved, wrong = _sweep(rule="time")
    assert wrong == 0
    assert proved >= 5


def test_time_cut_is_the_earliest_most_influential_free_bit() -> None:
    import numpy as np

    from neurodeploy.verify.branch import _time_cut

    rank = np.array([[0, 2, 1], [1, 0, 0], [2, 1, 2]])        # [T = 3, P = 3]
    infl = np.array([1.0, 5.0, 2.0])
    # step 0: pixel 0 (rank 0, levels 0..3) and pixel 2 (rank 1, levels 0..2) are free, pixel
    # 1 (rank 2, levels {2}) is not; pixel 2 weighs more: quiet {0, 1} | spiking {2}
    assert _time_cut(((0, 1, 2, 3), (2,), (0, 1, 2)), rank, infl) == (2, [(0, 1), (2,)])
    # nothing free at step 0 (pixel 0 at {1, 2} > rank 0); step 1: pixel 0 at rank 1
    assert _time_cut(((1, 2), (2,), (0,)), rank, infl) == (0, [(1,), (2,)])
    assert _time_cut(((1,), (2,), (0,)), rank, infl) is None  # a single input


def test_unsound_split_is_caught() -> None:
    # drops every upper half: the leaves no longer cover the node
    proved, wrong = _sweep(split=lambda s: [s[: len(s) // 2]])
    assert wrong >= 1


def test_pipeline_with_branch_equals_enumeration() -> None:
    from neurodeploy.verify import verify_example

    seen: dict[str, int] = {}
    for seed in range(600, 640):
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth, _ = enumerate_levels(plan, emu, lv, y)
        r = verify_example(plan, emu, x, y, u, eps, timeout=30, search=False,
                           enumerate_limit=0, branch_seconds=30, steps=False)
        assert r.status == ("robust" if truth else "non_robust"), (seed, r.status, r.how)
        seen[r.how] = seen.get(r.how, 0) + 1
    assert seen.get("branch", 0) >= 3


def test_unsound_time_cut_is_caught(monkeypatch) -> None:
    from neurodeploy.verify import branch

    orig = branch._time_cut

    def quiet_only(levels, rank, infl):  # noqa: ANN001 — drops the spiking half of each cut
        cut = orig(levels, rank, infl)
        return None if cut is None else (cut[0], cut[1][:1])

    monkeypatch.setattr(branch, "_time_cut", quiet_only)
    proved, wrong = _sweep(rule="time")
    assert wrong >= 1


def test_root_open_skips_only_the_roots_check() -> None:
    """With ``root_open`` the root is split without a second evaluation; every other node is
    checked, and where the root is indeed open the verdict is that of the full search."""
    from neurodeploy.verify.branch import step_node_proves

    seen: list[tuple] = []

    def spy(p, node, yy):  # noqa: ANN001
        seen.append(node.levels)
        return step_node_proves(p, node, yy)

    for seed in range(600, 640):
        plan, emu, x, u, y, eps, lv = _case(seed)
        if not encode(plan, lv, y).targets:
            continue
        seen.clear()

        full, _ = branch_and_bound(plan, lv, y, seconds=30, max_nodes=400, proves=spy)
        assert seen[0] == lv.levels
        seen.clear()
        skip, _ = branch_and_bound(plan, lv, y, seconds=30, max_nodes=400, proves=spy,
                                   root_open=True)
        assert lv.levels not in seen
        if not step_node_proves(plan, lv, y):
            assert skip == full
