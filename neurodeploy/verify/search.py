"""Fast counterexample search over an example's reachable levels, before any solver runs.

Two searches, both judged by the bit-exact emulator (only its decision counts):

1. the audit's known-draw spike-set search (:func:`~neurodeploy.attacks.spikeset.spike_set_search`)
   on the deployed model — emulator forward, hardware-twin gradient
   (:class:`~neurodeploy.audit.deployed.DeployedSpikes`);
2. a gradient-free block search, restarted from the clean levels with a continuing random
   stream and alternated with a steepest-ascent search over single-pixel moves from random
   levels (the restarts are where the search gains: on the digits plan at ε 0.1 they refuted
   6 of the 19 examples a single search and 10 s of CP-SAT left undecided): batches of proposals that move random blocks of pixels to
   random reachable levels (extremes favoured), the best kept when it raises the score
   ``max_{j≠y}(c_j − c_y + ½·[j < y]) + 10⁻³·tanh(Δv / θ)`` (> 0 ⇔ misclassified; Δv the
   output membrane margin breaks ties on count plateaus).

A level vector is returned only after :meth:`PixelLevels.spikes` of it was re-run on the
emulator and misclassified; the searches' own float arithmetic never decides anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels


@dataclass
class SearchTrace:
    """The highest score any search of one example reached (> 0 ⇔ misclassified): for an
    example the searches could not refute, how far they stayed from a flip."""

    best: float = -np.inf

    def see(self, score: float) -> None:
        self.best = max(self.best, float(score))


def emulator_predict(emulator: Any, plan: DeploymentPlan, spikes: np.ndarray) -> np.ndarray:
    """Predictions of a batch of input trains ``[T, B, P]`` (argmax of counts, ties low)."""
    s = torch.as_tensor(spikes, dtype=torch.uint8).reshape(
        spikes.shape[0], spikes.shape[1], *plan.input_shape)
    return emulator.run(s, record=False).logits.argmax(1).numpy()


def _scores(emulator: Any, plan: DeploymentPlan, spikes: np.ndarray, y: int) -> np.ndarray:
    s = torch.as_tensor(spikes, dtype=torch.uint8).reshape(
        spikes.shape[0], spikes.shape[1], *plan.input_shape)
    tr = emulator.run(s, record=False, record_v=True)
    c = tr.logits.to(torch.float64)
    other = torch.ones(c.shape[1], dtype=torch.bool)
    other[y] = False
    bonus = torch.zeros(c.shape[1], dtype=torch.float64)
    bonus[:y] = 0.5
    margin = (c - c[:, y:y + 1] + bonus)[:, other].max(1).values
    v = tr.v[-1].to(torch.float64).sum(0)
    th = max(float(plan.fixed_point.vth_scaled(plan.layers[-1].vth)), 1.0) * spikes.shape[0]
    dv = ((v - v[:, y:y + 1])[:, other]).max(1).values / th
    return (margin + 1e-3 * torch.tanh(dv)).numpy()


def block_search(emulator: Any, plan: DeploymentPlan, lv: PixelLevels, y: int,
                 rng: np.random.Generator, iters: int = 60, batch: int = 64, patience: int = 8,
                 trace: SearchTrace | None = None) -> np.ndarray | None:
    """The gradient-free block search (module docstring): a misclassifying level vector or
    None. Stops after ``patience`` proposals batches without progress at block size 1;
    ``trace`` records the best score."""
    trace = SearchTrace() if trace is None else trace
    free = np.array([p for p, r in enumerate(lv.levels) if len(r) > 1], dtype=np.int64)
    if free.size == 0:
        return None
    width = max(len(lv.levels[p]) for p in free)
    table = np.array([list(lv.levels[p]) + [lv.levels[p][-1]] * (width - len(lv.levels[p]))
                      for p in free])                     # [F, width] reachable levels
    count = np.array([len(lv.levels[p]) for p in free])
    cur = lv.clean.astype(np.int64).copy()
    best = _scores(emulator, plan, lv.spikes(cur)[:, None, :], y)[0]
    trace.see(best)
    block, stale = max(1, free.size // 4), 0
    for _ in range(iters):
        pick = rng.random((batch, free.size)).argsort(axis=1)[:, :block]   # [B, block]
        r = rng.random(pick.shape)
        any_i = (rng.random(pick.shape) * count[pick]).astype(np.int64)
        idx = np.where(r < 0.4, 0, np.where(r < 0.8, count[pick] - 1, any_i))
        props = np.repeat(cur[None, :], batch, axis=0)
        np.put_along_axis(props, free[pick], table[pick, idx], axis=1)
        sp = np.stack([lv.spikes(q) for q in props], axis=1)
        sc = _scores(emulator, plan, sp, y)
        k = int(np.argmax(sc))
        trace.see(sc[k])
        if sc[k] > best:
            best, cur, stale = sc[k], props[k], 0
            if best > 0:
                return cur
        else:
            stale += block == 1
            block = max(1, block // 2)
            if stale >= patience:
                break
    return None


def twin_search(plan: DeploymentPlan, emulator: Any, lv: PixelLevels, x: np.ndarray,
                u: np.ndarray, y: int, eps: float, seed: int) -> np.ndarray | None:
    """The audit's spike-set search on the deployed model; its levels if they are reachable
    exactly (a float boundary case is dropped) — else None."""
    from neurodeploy.attacks.spikeset import SpikeSetConfig, spike_set_search
    from neurodeploy.audit.deployed import DeployedSpikes
    from neurodeploy.sims.twin import HardwareTwin

    fn = DeployedSpikes(emulator, HardwareTwin(plan))
    xt = torch.as_tensor(x, dtype=torch.float32).reshape(1, *plan.input_shape)
    ut = torch.as_tensor(u, dtype=torch.float32).reshape(u.shape[0], 1, *plan.input_shape)
    gen = torch.Generator().manual_seed(int(seed))
    cfg = SpikeSetConfig(n_iter=25, n_restarts=1, fused=False)
    _, spikes, fooled = spike_set_search(None, xt, torch.tensor([y]), ut, float(eps), gen,
                                         cfg, fn)
    if not bool(fooled[0]):
        return None
    level = spikes.reshape(spikes.shape[0], -1).sum(0).round().to(torch.int64).numpy()
    if any(int(c) not in r for c, r in zip(level, lv.levels, strict=True)):
        return None
    return level


def steepest_search(emulator: Any, plan: DeploymentPlan, lv: PixelLevels, y: int,
                    rng: np.random.Generator, kicks: int = 30, max_steps: int = 300,
                    trace: SearchTrace | None = None) -> np.ndarray | None:
    """Steepest ascent over single-pixel level moves from random reachable levels: every
    move ``c_p → c`` (``c ∈ R_p``) is scored in one emulator batch and the best taken while it
    raises the score (module docstring); at a local maximum a random eighth of the free
    pixels is kicked to random levels, at most ``kicks`` times. A misclassifying level
    vector or None; ``trace`` records the best score."""
    trace = SearchTrace() if trace is None else trace
    free = [p for p, r in enumerate(lv.levels) if len(r) > 1]
    if not free:
        return None
    moves = [(p, c) for p in free for c in lv.levels[p]]
    mp = np.array([m[0] for m in moves])
    mc = np.array([m[1] for m in moves])
    cur = np.array([r[int(rng.integers(len(r)))] for r in lv.levels], dtype=np.int64)
    best, kicked = -np.inf, 0
    for _ in range(max_steps):
        props = np.repeat(cur[None, :], len(moves), axis=0)
        props[np.arange(len(moves)), mp] = mc
        sc = _scores(emulator, plan, np.stack([lv.spikes(q) for q in props], axis=1), y)
        k = int(np.argmax(sc))
        trace.see(sc[k])
        if sc[k] > best:
            best, cur = sc[k], props[k]
            if best > 0:
                return cur
            continue
        kicked += 1
        if kicked > kicks:
            break
        for p in rng.choice(free, size=max(1, len(free) // 8), replace=False):
            cur[p] = lv.levels[p][int(rng.integers(len(lv.levels[p])))]
        best = -np.inf
    return None


#: settings of the restarted block searches (longer than the first, cheaper one)
RESTART_SEARCH = {"iters": 200, "batch": 128, "patience": 20}


def find_counterexample(plan: DeploymentPlan, emulator: Any, lv: PixelLevels, x: np.ndarray,
                        u: np.ndarray, y: int, eps: float, seed: int, twin: bool = True,
                        restarts: int = 1, budget: float | None = None,
                        trace: SearchTrace | None = None) -> np.ndarray | None:
    """The twin search, the block search, then ``restarts − 1`` times a steepest-ascent search
    and a block search with :data:`RESTART_SEARCH` (one random stream: the first block search
    is the single search of earlier versions, so more restarts never find less; once ``budget`` seconds have passed no further restart
    starts — the twin and the first block search always run); a level vector whose exact
    replay misclassifies, or None. ``trace`` records the block and steepest searches' best
    score."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tries = [lambda: block_search(emulator, plan, lv, y, rng, trace=trace)]
    for _ in range(max(1, restarts) - 1):
        tries += [lambda: steepest_search(emulator, plan, lv, y, rng, trace=trace),
                  lambda: block_search(emulator, plan, lv, y, rng, trace=trace,
                                       **RESTART_SEARCH)]
    if twin:
        tries.insert(0, lambda: twin_search(plan, emulator, lv, x, u, y, eps, seed))
    for k, run in enumerate(tries):
        if k >= 1 + twin and budget is not None and time.perf_counter() - t0 > budget:
            break
        level = run()
        if level is not None:
            pred = emulator_predict(emulator, plan, lv.spikes(level)[:, None, :])[0]
            if pred != y:
                return level
    return None
