"""Branch-and-bound over pixel levels with a sound bound at every node.

A node is a product of per-pixel level sets ``N = ∏_p S_p`` with ``S_p ⊆ R_p`` (the root is the
example's reachable set, :mod:`.levels`). The step bound of :mod:`.stepbound` (each step's free
input bits enumerated jointly, every other quantity an exact integer interval; no solver model
is built) *proves* a node when no target class survives it: ``max (c_j − c_y) < [j > y]`` for
every ``j ≠ y`` (the interval pass of :mod:`.intmodel`, the first node check, was looser
and slower). Otherwise one pixel's level
set is split into its lower and upper half, ``S_p = S_p^lo ⊔ S_p^hi``: the children partition
the node, so

    robust(N)  ⇔  robust(N_lo) ∧ robust(N_hi),

and the example is robust when every leaf is proved. The split pixel is the free pixel with
the largest influence ``(|S_p| − 1) · Σ_n |W¹_{n,p}|`` (first-layer weight mass, the pixel
that widens the first layer's intervals most). A node whose pixels are all fixed is one input
and is not split further; the search gives up there (``None``), as it does when the node or
time budget runs out — only "every branch proved" is a verdict, never a partial tree.

A second split rule, ``rule="time"``, cuts where the step bound loses most: the earliest step
t with a free input bit, at the most influential pixel p among that step's free bits, split at
its rank, ``S_p = {c ∈ S_p : c ≤ rank[t, p]} ⊔ {c > rank[t, p]}`` (the bit quiet / spiking).
Down such a branch the first steps' inputs become single combinations, so the state the step
bound carries out of them is exact instead of a union. Neither rule dominates: on the digits
plan at ε 0.1 the time rule proves example 20 in 839 nodes where the mass rule had not after
189,154, and its trees are far larger on examples 8–16 (issue 22, ``benchmarks/RESULTS_verify.md``
round 6); :func:`portfolio` runs both, each for half the time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels

#: a split: a level set → the children's level sets (must partition it)
Split = Callable[[tuple[int, ...]], list[tuple[int, ...]]]


def halves(levels: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The lower and upper half of a level set (a partition)."""
    h = len(levels) // 2
    return [levels[:h], levels[h:]]


def step_node_proves(plan: DeploymentPlan, lv: PixelLevels, y: int) -> bool:
    """True when the step bound of :mod:`.stepbound` rules out every target class on ``lv``."""
    from neurodeploy.verify.stepbound import step_proves

    return step_proves(plan, lv, y)


def path_node_proves(plan: DeploymentPlan, lv: PixelLevels, y: int) -> bool:
    """The step bound, then (where it does not prove) the path bound of :mod:`.pathbound`."""
    from neurodeploy.verify.pathbound import path_score

    if step_node_proves(plan, lv, y):
        return True
    score = path_score(plan, lv, y)
    return score is not None and score <= 0


def _influence(plan: DeploymentPlan) -> np.ndarray:
    """``Σ_n |W¹_{n,p}|`` per input pixel (first-layer weight mantissas)."""
    w = np.abs(np.asarray(plan.layers[0].weights, dtype=np.float64))
    if plan.layers[0].kind == "dense":
        return w.reshape(w.shape[0], -1).sum(0)
    return np.ones(int(np.prod(plan.input_shape)))   # conv/pool: no per-pixel column


Levels = tuple[tuple[int, ...], ...]
RULES = ("mass", "time")


def _mass_cut(levels: Levels, infl: np.ndarray, split: Split
              ) -> tuple[int, list[tuple[int, ...]]] | None:
    """The mass rule: the free pixel of most ``(|S_p| − 1) · influence``, cut by ``split``."""
    width = np.array([(len(s) - 1) * infl[p] for p, s in enumerate(levels)])
    p = int(np.argmax(width))
    return (p, split(levels[p])) if width[p] > 0 else None


def _time_cut(levels: Levels, rank: np.ndarray, infl: np.ndarray
              ) -> tuple[int, list[tuple[int, ...]]] | None:
    """The time rule (module docstring): the earliest step's most influential free bit."""
    low = np.array([s[0] for s in levels])
    high = np.array([s[-1] for s in levels])
    for t in range(rank.shape[0]):
        free = np.nonzero((low <= rank[t]) & (high > rank[t]))[0]
        if free.size:
            p = int(free[np.argmax(infl[free])])
            r = int(rank[t, p])
            return p, [tuple(c for c in levels[p] if c <= r), tuple(c for c in levels[p] if c > r)]
    return None


def branch_and_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, seconds: float,
                     max_nodes: int = 10_000, split: Split = halves,
                     proves: Callable[[DeploymentPlan, PixelLevels, int], bool] = step_node_proves,
                     rule: str = "mass", root_open: bool = False) -> tuple[bool | None, int]:
    """(True: every leaf proved — robust; None: budget spent or a single input reached
    unproved, undecided), and the number of nodes evaluated. ``rule``: ``mass`` (the pixel
    of most levels × weight mass, cut by ``split``) or ``time`` (module docstring);
    ``root_open``: the caller already ran ``proves`` on the root without a proof (it is split
    without a second evaluation)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    infl = _influence(plan)
    t0 = time.perf_counter()
    stack, nodes = [lv.levels], 0
    while stack:
        if nodes >= max_nodes or time.perf_counter() - t0 > seconds:
            return None, nodes
        levels = stack.pop()
        nodes += 1
        if not (root_open and nodes == 1) and \
                proves(plan, dataclasses.replace(lv, levels=levels), y):
            continue
        cut = _mass_cut(levels, infl, split) if rule == "mass" else \
            _time_cut(levels, lv.rank, infl)
        if cut is None:
            return None, nodes
        p, parts = cut
        for part in parts:
            stack.append(levels[:p] + (part,) + levels[p + 1:])
    return True, nodes


def portfolio(plan: DeploymentPlan, lv: PixelLevels, y: int, seconds: float,
              max_nodes: int = 10_000,
              proves: Callable[[DeploymentPlan, PixelLevels, int], bool] = step_node_proves,
              root_open: bool = False) -> tuple[bool | None, int, str | None]:
    """Both rules in turn, each with half of ``seconds`` and ``max_nodes`` and node check
    ``proves`` (``root_open``: the root is known unproved, as in :func:`branch_and_bound`):
    (True when one proves, else None; nodes evaluated in all; the rule that proved)."""
    total = 0
    for rule in RULES:
        proved, n = branch_and_bound(plan, lv, y, seconds / 2, max(1, max_nodes // 2),
                                     proves=proves, rule=rule, root_open=root_open)
        root_open = True            # the first rule evaluated it (skipping a check is sound)
        total += n
        if proved:
            return True, total, rule
    return None, total, None
