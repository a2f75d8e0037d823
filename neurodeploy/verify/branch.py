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


def _influence(plan: DeploymentPlan) -> np.ndarray:
    """``Σ_n |W¹_{n,p}|`` per input pixel (first-layer weight mantissas)."""
    w = np.abs(np.asarray(plan.layers[0].weights, dtype=np.float64))
    if plan.layers[0].kind == "dense":
        return w.reshape(w.shape[0], -1).sum(0)
    return np.ones(int(np.prod(plan.input_shape)))   # conv/pool: no per-pixel column


def branch_and_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, seconds: float,
                     max_nodes: int = 10_000, split: Split = halves,
                     proves: Callable[[DeploymentPlan, PixelLevels, int], bool] = step_node_proves
                     ) -> tuple[bool | None, int]:
    """(True: every leaf proved — robust; None: budget spent or a single input reached
    unproved, undecided), and the number of nodes evaluated."""
    infl = _influence(plan)
    t0 = time.perf_counter()
    stack, nodes = [lv.levels], 0
    while stack:
        if nodes >= max_nodes or time.perf_counter() - t0 > seconds:
            return None, nodes
        levels = stack.pop()
        nodes += 1
        if proves(plan, dataclasses.replace(lv, levels=levels), y):
            continue
        width = np.array([(len(s) - 1) * infl[p] for p, s in enumerate(levels)])
        p = int(np.argmax(width))
        if width[p] <= 0:
            return None, nodes
        for part in split(levels[p]):
            stack.append(levels[:p] + (part,) + levels[p + 1:])
    return True, nodes
