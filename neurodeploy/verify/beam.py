"""Flipping inputs from the path bound's tables: a beam over the steps, exact prefix plus an
admissible suffix.

The path bound (:mod:`.pathbound`) keeps, per step t and enumerated combination ``b_t`` of
step t's input bits, a Viterbi table; run backwards it gives for target class j

    H_t(b_t) = max over the paths after b_t of Σ_{s>t} g_s(b_{s−1}, b_s)
             ≥ Σ_{s>t} (s_{s,j} − s_{s,y}) of every real input whose bits at t are b_t

(each pair gain is an upper bound). A real input is built step by step: an *item* is a
prefix ``b_0 … b_t`` together with each pixel's range of level indices still consistent with
it and the plan's exact integer state after step t. Item scores are

    exact prefix Σ_{s≤t} (s_{s,j} − s_{s,y})  +  H_t(b_t)  (+ 10⁻³·tanh(Δv / 64), Δv the
    output membrane margin of j over y after step t: a tie-break on the integer plateaus),

an upper bound on ``c_j − c_y`` of every completion plus the tie-break. Step t + 1 expands every
kept item over its free bits of that step (a pixel's bit is free while both "spikes" and
"stays quiet" leave one of its reachable levels), drops the expansions whose bound is below
``θ_j = [j > y]`` (no completion of them flips to j) and keeps the ``width`` best. After the
last step the prefix is the whole input's ``c_j − c_y``; one at ``θ_j`` or above is a
flipping input, returned as per-pixel levels.

This is a heuristic (a beam, not the search tree): it finds inputs, proves nothing when it
finds none, and its flipping inputs are checked on the emulator by their users like every
other. What it adds to the local level moves of the attacks: it goes step by step along what
the bound says the remaining steps can still give, so it reaches flipping sets no single move
leads into (issue 21 round 10: four of the five digits-plan counterexamples the attacks
missed, in 13–95 s of CPU each where the verifier's windows took 64–658 s). Scope as the path bound's; a
step with more than ``max_step_bits`` free bits ends the search (the expansion is
exponential in them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.critical import Cap, _backward, _forward_backward, _pair_tables
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.pathbound import PathTables, _run, path_bound
from neurodeploy.verify.stepbound import StepBits, _Unprovable, _zero_state

#: items kept per step
WIDTH = 200
#: at most this many free input bits in one step (the expansion enumerates them)
MAX_STEP_BITS = 15
#: expansions per vectorised run
CHUNK = 65_536
#: the refined suffixes' triples per step (:class:`.critical.Cap`; more keep the pair gains)
TRIPLES = 8_000_000
#: the suffix bounds tried, in order: the path bound's, then the refined pair suffixes
PHASES = (False, True)
#: weight of the membrane tie-break (below one output spike over all classes)
TIE = 1e-3


def step_free_bits(lv: PixelLevels) -> np.ndarray:
    """``[T]``: how many pixels' bits each step leaves free over the whole ball."""
    low = np.array([r[0] for r in lv.levels])
    high = np.array([r[-1] for r in lv.levels])
    return ((low[None, :] <= lv.rank) & (high[None, :] > lv.rank)).sum(1)


@dataclass
class _Items:
    """The beam: level-index ranges ``[lo, hi]`` ``[n, P]``, the exact states after the last
    step, the exact prefix margin ``c_j − c_y`` so far and the last step's table row."""

    lo: np.ndarray
    hi: np.ndarray
    state: list
    prefix: np.ndarray
    row: np.ndarray


def _row_index(step: StepBits, bits: np.ndarray) -> np.ndarray:
    """Each input row's combination index in the path table's enumerated ``step``."""
    k = step.cols.size
    return (bits[:, step.cols].astype(np.int64) << np.arange(k)[None, :]).sum(1)


def _expansions(items: _Items, cut: np.ndarray, chunk: int):
    """Per chunk of items: (item of each expansion, its full input bits), over every item's
    free bits at the step whose per-pixel spike threshold (level index) is ``cut``."""
    on = items.lo >= cut[None]
    free = (items.lo < cut[None]) & (items.hi >= cut[None])
    cols = np.nonzero(free.any(0))[0]
    combos = ((np.arange(1 << cols.size)[:, None] >> np.arange(cols.size)[None, :]) & 1
              ).astype(np.uint8)
    per = max(1, chunk // len(combos))
    for i0 in range(0, len(on), per):
        ii = np.arange(i0, min(len(on), i0 + per))
        ok = ((combos[None] == on[ii][:, cols][:, None]) | free[ii][:, cols][:, None]).all(2)
        it, cc = np.nonzero(ok)
        bits = on[ii[it]].astype(np.uint8)
        bits[:, cols] = combos[cc]
        yield ii[it], bits


def _advance(plan: DeploymentPlan, tb: PathTables, items: _Items, it: np.ndarray,
             bits: np.ndarray, t: int, y: int, j: int) -> tuple[np.ndarray, list, np.ndarray]:
    """The exact step t of items ``it`` on input ``bits``: new prefix, states, Δv of j over y."""
    P = bits.shape[1]
    sb = StepBits(np.zeros(P), np.zeros(P), np.arange(P), bits.astype(np.float64))
    st = [tuple(a[it] for a in s) for s in items.state]
    lo, _, after = _run(tb.layers, plan.fixed_point, st, sb)
    v = after[-1][2]
    return items.prefix[it] + lo[:, j] - lo[:, y], after, v[:, j] - v[:, y]


def _suffix(suffix: tuple, tb: PathTables, items: _Items, it: np.ndarray, bits: np.ndarray,
            t: int) -> np.ndarray:
    """The suffix bound after step t of each expansion: ``H_t(b_t)``, or the refined pair
    table's ``SP_t(b_{t−1}, b_t)`` from step 1 on."""
    H, SP = suffix
    row = _row_index(tb.steps[t], bits)
    if SP is None or t == 0:
        return H[t][row]
    return SP[t][items.row[it], row].astype(np.float64)


def _select(plan, tb, items, cut, suffix, t, y, j, width) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` best expansions of step t (item, bits), none below ``θ_j``."""
    theta = int(j > y)
    keep_it, keep_bits, keep_s = [], [], []
    for it, bits in _expansions(items, cut, CHUNK):
        prefix, _, dv = _advance(plan, tb, items, it, bits, t, y, j)
        bound = prefix + _suffix(suffix, tb, items, it, bits, t)
        s = np.where(bound >= theta, bound + TIE * np.tanh(dv / 64.0), -np.inf)
        top = np.argsort(-s, kind="stable")[:width]
        top = top[np.isfinite(s[top])]
        keep_it.append(it[top]), keep_bits.append(bits[top]), keep_s.append(s[top])
    s = np.concatenate(keep_s)
    top = np.argsort(-s, kind="stable")[:width]
    return np.concatenate(keep_it)[top], np.concatenate(keep_bits)[top]


def _suffix_tables(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
                   refined: bool) -> tuple:
    """``(H, SP)``: the path bound's suffix ``H_t`` and, ``refined``, the pair suffixes after
    :mod:`.critical`'s backward three-step pass (tighter: exact state over three steps)."""
    _, H = _forward_backward(tb.gains, j)
    if not refined:
        return H, None
    FP, SP = _pair_tables(tb, j)
    _backward(plan, lv, tb, y, j, int(j > y), FP, SP, Cap(TRIPLES))
    return H, SP


def beam_class(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
               width: int = WIDTH, refined: bool = False) -> tuple[float, np.ndarray | None]:
    """The beam for target class j (module docstring): the best whole input's exact
    ``c_j − c_y`` (−∞ when the beam emptied) and its per-pixel levels; ``refined``: scored
    with the refined pair suffixes (:func:`_suffix_tables`)."""
    levels = [np.asarray(r) for r in lv.levels]
    T, P = lv.num_steps, len(levels)
    cuts = np.array([[np.searchsorted(levels[p], lv.rank[t, p], "right") for p in range(P)]
                     for t in range(T)])
    suffix = _suffix_tables(plan, lv, tb, y, j, refined)
    items = _Items(np.zeros((1, P), dtype=np.int64), np.array([[len(r) - 1 for r in levels]]),
                   [tuple(np.atleast_2d(a) for a in s) for s in _zero_state(tb.layers)],
                   np.zeros(1), np.zeros(1, dtype=np.int64))
    for t in range(T):
        it, bits = _select(plan, tb, items, cuts[t], suffix, t, y, j, width)
        if not len(it):
            return -np.inf, None
        prefix, state, _ = _advance(plan, tb, items, it, bits, t, y, j)
        free = (items.lo[it] < cuts[t][None]) & (items.hi[it] >= cuts[t][None])
        on = bits == 1
        cut = np.broadcast_to(cuts[t][None], on.shape)
        items = _Items(np.where(on & free, cut, items.lo[it]),
                       np.where(~on & free, cut - 1, items.hi[it]), state, prefix,
                       _row_index(tb.steps[t], bits))
    b = int(np.argmax(items.prefix))
    return float(items.prefix[b]), np.array([levels[p][items.lo[b, p]] for p in range(P)])


@dataclass
class BeamOutcome:
    """What :func:`beam_search` did: ``level`` (a flipping input's levels, or None),
    ``proved`` (the path bound itself ruled every class out: no flip exists), ``ran`` (False
    where the search does not apply: too many free bits a step, a TA-LIF layer, a wrap or
    saturation the bound can reach) and ``best`` (the highest ``c_j − c_y − θ_j`` a whole
    input of the beams reached; ≥ 0 ⇔ a flip)."""

    level: np.ndarray | None = None
    proved: bool = False
    ran: bool = True
    best: float = -np.inf


def beam_search(plan: DeploymentPlan, lv: PixelLevels, y: int, width: int = WIDTH,
                max_step_bits: int = MAX_STEP_BITS) -> BeamOutcome:
    """A flipping input of example ``(lv, y)``: the path bound's tables (its default bit
    budget), then :func:`beam_class` for each class it leaves open, the most open first,
    until one flips."""
    if int(step_free_bits(lv).max(initial=0)) > max_step_bits:
        return BeamOutcome(ran=False)
    tables: list[PathTables] = []
    m = path_bound(plan, lv, y, tables=tables)
    if m is None:
        return BeamOutcome(ran=False)
    theta = (np.arange(m.size) > y).astype(np.int64)
    open_ = [int(c) for c in np.argsort(theta - m, kind="stable") if c != y and m[c] >= theta[c]]
    out = BeamOutcome(proved=not open_)
    try:
        for refined in PHASES:
            for c in open_:
                margin, level = beam_class(plan, lv, tables[0], y, c, width, refined)
                out.best = max(out.best, margin - theta[c])
                if margin >= theta[c]:
                    out.level = level
                    return out
    except _Unprovable:
        out.ran = False
    return out
