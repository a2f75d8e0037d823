"""Branch-and-bound over pixel levels (neurodeploy.verify.branch, step-bound node check): every
"robust" it returns is robust by brute force on random tiny plans, it proves cases the root
intervals cannot, and the same sweep catches a deliberately unsound split (one that drops a
branch). The pipeline test turns the root step bound off so the branch stage is what proves."""

from __future__ import annotations

from neurodeploy.verify.branch import branch_and_bound
from neurodeploy.verify.exhaustive import enumerate_levels
from neurodeploy.verify.intmodel import encode
from tests.test_verify import _case


def _sweep(split=None) -> tuple[int, int]:
    """(B&B robust verdicts, of which wrong by enumeration) on cases the root leaves open."""
    proved = wrong = 0
    for seed in range(600, 700):
        plan, emu, x, u, y, eps, lv = _case(seed)
        if not encode(plan, lv, y).targets:
            continue
        kw = {} if split is None else {"split": split}
        ok, _ = branch_and_bound(plan, lv, y, seconds=30, max_nodes=400, **kw)
        if ok:
            proved += 1
            wrong += not enumerate_levels(plan, emu, lv, y)[0]
    return proved, wrong


def test_branch_verdicts_equal_enumeration() -> None:
    proved, wrong = _sweep()
    assert wrong == 0
    assert proved >= 5          # it decides cases the root intervals leave open


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
