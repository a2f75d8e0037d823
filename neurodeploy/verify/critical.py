"""The path bound refined where it matters: three steps of exact state on its critical pairs,
then longer windows up to the whole input.

The path bound (:mod:`.pathbound`) starts every pair of steps ``(b_{t−1}, b_t)`` from the step
bound's union two steps back. On the digits demo plan that union is where its slack lives
(measured: with the hidden layer's state after step t − 2 exact, the pair gains along a
real input equal that input's output spikes; with the union they claim up to eight spikes
more). Recomputing every pair from every ``b_{t−2}`` would cost ``2^(k_{t−2}+k_{t−1}+k_t)``
runs a step; but only a few pairs can lie on a path that flips the decision:

For class j with threshold ``θ_j = [j > y]`` (a flip needs ``c_j − c_y ≥ θ_j``) let ``F_t(b)``
be the path bound's best prefix sum ending in ``b`` (Viterbi forward) and ``H_t(b)`` its best
suffix sum after it (backward). Every real input's prefix and suffix sums of the true output
spikes lie below those (each pair gain is an upper bound), so a pair with

    F_{t−1}(b_{t−1}) + g_t(b_{t−1}, b_t) + H_t(b_t) < θ_j

is on no flipping input: it is dropped (*dead*). The pass keeps, per pair, a bound on the
prefix (``FP_t``, through step t) and on the suffix (``SP_t``, after it) of every flipping
input through the pair — the Viterbi values to start with — and refines them with gains of
step t computed per triple ``(b_{t−2}, b_{t−1}, b_t)``: steps t − 2, t − 1, t run on those bits
from the union after step t − 3, each quantity an exact integer interval as in the step bound.

* **backward** (t = T − 1 … 2, first: the last steps have the fewest combinations): the pairs
  alive at t (``FP_t + SP_t ≥ θ_j``), the pairs ``(c, a)`` at t − 1 that can still reach
  ``θ_j`` through one of them, and ``SP_{t−1}(c, a) = max_b g³_t(c, a, b) + SP_t(a, b)``;
* **forward** (t = 2 … T − 1), the mirror:
  ``FP_t(a, b) = max_c FP_{t−1}(c, a) + g³_t(c, a, b)`` over the live pairs ``(c, a)``.

Triples breaking a pixel's thermometer order between steps t − 2 and t are dropped; a step
whose triples pass ``max_triples`` keeps the pair gains' bound there (and rounds of both
passes repeat while they still shrink the alive set). Then ``R_j = max FP_{T−1}`` bounds
``c_j − c_y`` of every flipping input, and with integer counts

    c_j − c_y ≤ min(P_j, max(θ_j − 1, R_j))

for every input: the class is ruled out when ``R_j < θ_j`` (no alive pair left: ``R_j = −∞``).
On the digits demo plan the backward pass first is what keeps the triples few (example 46
class 3: 8·10⁷ triples at step 2 forward only; 10⁵ in all after the backward pass).

Where the three-step passes leave ``R_j ≥ θ_j``, the windows of :mod:`.windows` run on the
triples the forward pass built: four, five, … T exact steps per tuple, each level on what the
one below keeps from both sides; at T steps on a plan whose every free bit is enumerated the
bound is exact, and a class still at ``θ_j`` hands back a flipping input (a counterexample
the pipeline replays). Scope as the path bound's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify import windows
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.pathbound import (
    INVALID,
    MAX_BITS,
    MAX_PAIR_BITS,
    PAIR_MACS,
    PathTables,
    _run,
    carried,
    order_ok,
    path_bound,
)
from neurodeploy.verify.stepbound import (
    StepBits,
    _check,
    _first_synapse,
    _neurons,
    _scale,
    _Unprovable,
    score_of,
)

#: at most this many triples are evaluated per class (about 4 µs each on the digits plan) ...
MAX_TRIPLES = 8_000_000
#: ... and, where the generic pass runs them (plans of more than two layers), at most about
#: this many multiply-adds per class over all its passes, counted as tuples × the plan's
#: multiply-adds a step (~12 µs a triple on the digits plan's 18 944: ≈ 30 s)
GENERIC_TRIPLE_MACS = 5 * 10**10
#: the pipeline's path bound enumerates more than :mod:`.pathbound`'s default: up to this many
#: bits a step and per pair (every free bit of the digits plan at ε 0.1: the bits left as
#: intervals cost the refinement its proofs there) ...
STAGE_BITS, STAGE_PAIR_BITS = 15, 24
#: ... with 16× the multiply-add budget on two-layer plans, whose pair pass evaluates only the
#: hidden neurons a pair can move (the generic pass keeps :data:`.pathbound.PAIR_MACS`)
TWO_LAYER_MACS = 16 * PAIR_MACS
#: triples per vectorised pass
CHUNK_TRIPLES = 8192
#: at most this many rounds of the backward and forward three-step passes per class
ROUNDS = 3


def _forward_backward(gains: list[np.ndarray], j: int
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The path bound's best prefix sum ending in each ``b_t`` (``F``) and best suffix sum
    after it (``H``), class j."""
    T = len(gains)
    F = [gains[0][0, :, j].astype(np.float64)]
    for t in range(1, T):
        F.append((F[-1][:, None] + gains[t][:, :, j]).max(0))
    H = [np.zeros(0)] * T
    H[T - 1] = np.zeros(gains[T - 1].shape[1])
    for t in range(T - 1, 0, -1):
        H[t - 1] = (gains[t][:, :, j] + H[t][None, :]).max(1)
    return F, H


def _rows(bits: StepBits, rows: np.ndarray) -> StepBits:
    return StepBits(bits.lo, bits.hi, bits.cols, bits.bits[rows])


def _take(state: list, rows: np.ndarray) -> list:
    return [tuple(a[rows] for a in s) for s in state]


def _consistent(lv: PixelLevels, t0: int, a: StepBits, t1: int, b: StepBits,
                ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Which rows ``ra`` of step t0's bits and ``rb`` of step t1's respect every shared
    pixel's thermometer order (the lower rank spikes whenever the higher one does)."""
    ok = np.ones(len(ra), dtype=bool)
    for ka, p in enumerate(a.cols):
        for kb in np.nonzero(b.cols == p)[0]:
            ok &= order_ok(lv, t0, t1, int(p), a.bits[ra, ka], b.bits[rb, kb])
    return ok


def _join(prev_edges: np.ndarray, edges: np.ndarray, limit: int
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """All (alive edge at t − 1, alive edge at t) sharing ``b_{t−1}``: index arrays, or None
    when there are more than ``limit`` (counted before any is built)."""
    order = np.argsort(prev_edges[:, 1], kind="stable")
    key = prev_edges[order, 1]
    lo = np.searchsorted(key, edges[:, 0], "left")
    hi = np.searchsorted(key, edges[:, 0], "right")
    cnt = hi - lo
    if int(cnt.sum()) > limit:
        return None
    cur = np.repeat(np.arange(len(edges)), cnt)
    start = np.repeat(lo - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt)
    pre = order[np.arange(cnt.sum()) + start]
    return pre, cur


def _pair_rows(plan: DeploymentPlan, tb: PathTables, t: int, b2: np.ndarray, m: np.ndarray
               ) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """The states after step t − 2 per distinct ``b_{t−2}`` (from the union after t − 3), the
    distinct ``(row of that state, b_{t−1})`` pairs, each triple's pair and the triples in
    pair order."""
    ul, li = np.unique(b2, return_inverse=True)
    _, _, s2 = _run(tb.layers, plan.fixed_point, tb.unions[t - 2], _rows(tb.steps[t - 2], ul))
    width = len(tb.steps[t - 1].bits)
    keys, pi = np.unique(li.ravel() * width + m, return_inverse=True)
    pi = pi.ravel()
    pairs = np.stack([keys // width, keys % width], 1)
    return s2, pairs, pi, np.argsort(pi, kind="stable")


def _chunks(pi: np.ndarray, order: np.ndarray):
    """Triples in pair order, :data:`CHUNK_TRIPLES` at a time: (their indices, the distinct
    pairs among them, each one's position in that list)."""
    for c0 in range(0, len(order), CHUNK_TRIPLES):
        sel = order[c0:c0 + CHUNK_TRIPLES]
        p = pi[sel]                                   # sorted
        new = np.concatenate([[True], p[1:] != p[:-1]])
        yield sel, p[new], np.cumsum(new) - 1


def _triple_gains(plan: DeploymentPlan, tb: PathTables, t: int, y: int, j: int,
                  b2: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``g³_t`` of each triple ``(b2, m, n)`` of combination rows of steps t − 2, t − 1, t."""
    fmt, layers, steps = plan.fixed_point, tb.layers, tb.steps
    s2, pairs, pi, order = _pair_rows(plan, tb, t, b2, m)
    g = np.empty(len(n))
    for sel, up, inv in _chunks(pi, order):
        _, _, s1 = _run(layers, fmt, _take(s2, pairs[up, 0]), _rows(steps[t - 1], pairs[up, 1]))
        lo, hi, _ = _run(layers, fmt, _take(s1, inv), _rows(steps[t], n[sel]))
        g[sel] = hi[:, j] - lo[:, y]
    return g


def _triple_gains_two(plan: DeploymentPlan, tb: PathTables, t: int, y: int, j: int,
                      b2: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """:func:`_triple_gains` of a two-layer plan, the same integers with less work: step t
    needs only the output spikes of classes j and y, and a hidden neuron's
    ``v = a(b_t) + k(b_{t−2}, b_{t−1})`` (as in :func:`.pathbound._pair_gains_two`), so the
    first layer's activation runs once per distinct ``b_t`` and each triple costs two
    comparisons and four dot products per hidden neuron."""
    fmt, layers, steps = plan.fixed_point, tb.layers, tb.steps
    S1, S2 = layers
    nbits = min(fmt.state_bits, fmt.port_bits)
    fire = S1.theta + (0 if fmt.spike_comparison == ">=" else 1)
    cls = np.array([j, y])
    S2c = replace(S2, pos=S2.pos[cls], neg=S2.neg[cls],
                  dense=S2.dense[cls], f_u=S2.f_u[cls], f_v=S2.f_v[cls], bias=S2.bias[cls])
    s2, pairs, pi, order = _pair_rows(plan, tb, t, b2, m)
    un, ni = np.unique(n, return_inverse=True)
    ni = ni.ravel()
    a_lo, a_hi = _first_synapse(S1, fmt, _rows(steps[t], un))                   # [Bn, N]
    g = np.empty(len(n))
    for sel, up, inv in _chunks(pi, order):
        _, _, s1 = _run(layers, fmt, _take(s2, pairs[up, 0]), _rows(steps[t - 1], pairs[up, 1]))
        cu_lo, cu_hi, k_lo, k_hi = carried(S1, fmt, s1[0])
        A_lo, A_hi = a_lo[ni[sel]], a_hi[ni[sel]]
        # range checks over every (pair, b_t) of the chunk: a superset of its triples
        _check(cu_lo.min(0) + A_lo.min(0), cu_hi.max(0) + A_hi.max(0), nbits)
        _check(k_lo.min(0) + A_lo.min(0), k_hi.max(0) + A_hi.max(0), nbits)
        sure = (A_lo >= (fire - k_lo)[inv]).astype(np.float64)
        maybe = (A_hi >= (fire - k_hi)[inv]).astype(np.float64)
        o_lo, o_hi = _scale(S2c, fmt, sure @ S2c.pos.T + maybe @ S2c.neg.T,
                            maybe @ S2c.pos.T + sure @ S2c.neg.T)
        st = tuple(a[:, cls][inv] for a in s1[1])
        lo, hi, _ = _neurons(S2c, fmt, st, o_lo, o_hi)
        g[sel] = hi[:, 0] - lo[:, 1]
    return g


def _pair_tables(tb: PathTables, j: int) -> tuple[list, list]:
    """Dense per-pair bounds of class j, float32 ``[B_{t−1}, B_t]`` for t ≥ 1 (index 0 unused):
    ``FP[t]`` on the prefix sum ``Σ_{s≤t} (s_{s,j} − s_{s,y})`` and ``SP[t]`` on the suffix
    ``Σ_{s>t}`` of every flipping input through that pair; the path bound's Viterbi values to
    start with, −∞ on pairs that break a pixel's thermometer order."""
    gains, T = tb.gains, len(tb.gains)
    F, H = _forward_backward(gains, j)
    FP: list = [None]
    SP: list = [None]
    for t in range(1, T):
        g = gains[t][:, :, j]
        FP.append(np.where(g == INVALID, -np.inf, F[t - 1][:, None] + g).astype(np.float32))
        SP.append(np.repeat(H[t][None, :], g.shape[0], 0).astype(np.float32))
    return FP, SP


def _gains3(plan: DeploymentPlan, tb: PathTables, t: int, y: int, j: int,
            c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(c):
        return np.zeros(0)
    gains3 = _triple_gains_two if len(tb.layers) == 2 else _triple_gains
    return gains3(plan, tb, t, y, j, c, a, b)


@dataclass
class Cap:
    """Tuples one step of a pass may join (``step``, counted before any is built) and, where
    set, tuples one class may still evaluate over all its passes (``total``)."""

    step: int
    total: int | None = None

    def limit(self) -> int:
        return self.step if self.total is None else min(self.step, self.total)

    def spend(self, n: int) -> None:
        if self.total is not None:
            self.total -= n


def _triples(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, t: int, y: int, j: int,
             first: np.ndarray, second: np.ndarray, cap: Cap) -> tuple | None:
    """The triples ``(c, a, b)`` joining pairs ``first`` ``(c, a)`` at t − 1 and ``second``
    ``(a, b)`` at t, thermometer-consistent between t − 2 and t: (index into ``first``, index
    into ``second``, ``g³_t``), or None when more than ``cap`` allows."""
    joined = _join(first, second, cap.limit())
    if joined is None:
        return None
    i1, i2 = joined
    cap.spend(len(i1))
    c, a, b = first[i1, 0], first[i1, 1], second[i2, 1]
    ok = _consistent(lv, t - 2, tb.steps[t - 2], t, tb.steps[t], c, b)
    i1, i2 = i1[ok], i2[ok]
    return i1, i2, _gains3(plan, tb, t, y, j, c[ok], a[ok], b[ok])


def _backward(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
              floor: int, FP: list, SP: list, cap: Cap) -> None:
    """One backward three-step pass (``SP`` in place), t = T − 1 … 2: the pairs alive at t
    (``FP + SP ≥ floor``), the pairs ``(c, a)`` at t − 1 that can still reach the floor
    through one of them, and ``SP[t − 1](c, a) = max_b g³_t(c, a, b) + SP[t](a, b)`` over
    their triples; where the triples pass ``cap``, the pair gains' ``max_b g_t(a, b) +
    SP[t](a, b)`` instead."""
    gains = tb.gains
    for t in range(len(gains) - 1, 1, -1):
        alive = np.argwhere(FP[t] + SP[t] >= floor)
        z = SP[t][alive[:, 0], alive[:, 1]]
        up = np.full(gains[t].shape[0], -np.inf, dtype=np.float32)
        np.maximum.at(up, alive[:, 0], gains[t][alive[:, 0], alive[:, 1], j] + z)
        cand = np.argwhere(FP[t - 1] + up[None, :] >= floor)
        new = np.full(SP[t - 1].shape, -np.inf, dtype=np.float32)
        tri = _triples(plan, lv, tb, t, y, j, cand, alive, cap)
        if tri is None:
            new[cand[:, 0], cand[:, 1]] = up[cand[:, 1]]
        else:
            i1, i2, g = tri
            np.maximum.at(new, (cand[i1, 0], cand[i1, 1]), g + z[i2])
        np.minimum(SP[t - 1], new, out=SP[t - 1])


def _forward(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
             floor: int, FP: list, SP: list, cap: Cap) -> dict | None:
    """One forward three-step pass (``FP`` in place), t = 2 … T − 1, the mirror of
    :func:`_backward`; returns per t its triples (``[n, 3]`` combination rows, refined prefix
    through t, ``g³_t``), or None when some step's triples passed ``cap`` (that step keeps
    its pair gains' prefix)."""
    gains, out = tb.gains, {}
    for t in range(2, len(gains)):
        prev = np.argwhere(FP[t - 1] + SP[t - 1] >= floor)
        w = FP[t - 1][prev[:, 0], prev[:, 1]]
        best = np.full(gains[t].shape[0], -np.inf, dtype=np.float32)
        np.maximum.at(best, prev[:, 1], w)
        reach = np.minimum(best[:, None] + gains[t][:, :, j], FP[t])
        cur = np.argwhere(reach + SP[t] >= floor)
        new = np.full(FP[t].shape, -np.inf, dtype=np.float32)
        tri = _triples(plan, lv, tb, t, y, j, prev, cur, cap)
        if tri is None:
            new[cur[:, 0], cur[:, 1]] = reach[cur[:, 0], cur[:, 1]]
            out = None
        else:
            i1, i2, g = tri
            p = w[i1] + g
            np.maximum.at(new, (cur[i2, 0], cur[i2, 1]), p)
            if out is not None:
                out[t] = (np.stack([prev[i1, 0], prev[i1, 1], cur[i2, 1]], 1), p, g)
        np.minimum(FP[t], new, out=FP[t])
    return out


def _alive(FP: list, SP: list, floor: int) -> int:
    return sum(int(np.count_nonzero(f + s >= floor)) for f, s in zip(FP[1:], SP[1:], strict=True))


@dataclass
class Refined:
    """A class's refined bound ``R_j`` and, where the windows reached a whole input exactly,
    that flipping input's levels."""

    bound: float
    level: np.ndarray | None = None


def _whole(lv: PixelLevels, tb: PathTables, floor: int, r: float, rows: list) -> Refined:
    """A table whose rows are whole inputs (one or two steps): its maximum ``r`` at ``rows``,
    with that input's levels where it flips and every free bit is enumerated."""
    flip = r >= floor and windows.exact_tables(tb)
    return Refined(r, windows.input_levels(lv, tb, np.array(rows)) if flip else None)


def refine_class(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
                 floor: int, max_triples: int = MAX_TRIPLES, total: int | None = None
                 ) -> Refined:
    """``R_j`` of the module docstring over the inputs that can reach ``floor``: rounds of the
    backward and forward three-step passes (while a step's triples pass ``max_triples`` and
    the rounds still shrink what is alive), then the windows of :mod:`.windows` up to the
    whole input; ``total`` caps the tuples evaluated over all of them."""
    T = len(tb.gains)
    cap = Cap(max_triples, total)
    if T == 1:
        g = tb.gains[0][0, :, j]
        return _whole(lv, tb, floor, float(g.max()), [int(np.argmax(g))])
    FP, SP = _pair_tables(tb, j)
    if T == 2:
        return _whole(lv, tb, floor, float(FP[1].max()),
                      list(np.unravel_index(int(np.argmax(FP[1])), FP[1].shape)))
    alive = None
    for _ in range(ROUNDS):
        _backward(plan, lv, tb, y, j, floor, FP, SP, cap)
        triples = _forward(plan, lv, tb, y, j, floor, FP, SP, cap)
        r = float(FP[T - 1].max())
        if r < floor or triples is not None:
            break
        now = _alive(FP, SP, floor)
        if alive is not None and now >= alive:
            break
        alive = now
    if r < floor or triples is None:
        return Refined(r)
    r, level = windows.windows(plan, lv, tb, y, j, floor, windows.from_triples(tb, triples),
                               r, cap)
    return Refined(r, level)


def _refine(plan: DeploymentPlan, lv: PixelLevels, y: int, m: np.ndarray, tb: PathTables,
            max_triples: int, floor: int | None, first_open: bool, total: int | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """The refined per-class bound from the path bound ``m`` and its tables, and the levels
    of a flipping input where a class's windows found one (the search stops there under
    ``first_open``)."""
    out = m.astype(np.float64)
    theta = (np.arange(m.size) > y).astype(np.int64) if floor is None else np.full(m.size, floor)
    flip = None
    try:
        for j in np.argsort(theta - m, kind="stable"):
            if j == y or m[j] < theta[j]:
                continue
            r = refine_class(plan, lv, tb, y, int(j), int(theta[j]), max_triples, total)
            out[j] = min(m[j], max(theta[j] - 1, r.bound))
            flip = r.level if flip is None else flip
            if first_open and out[j] >= theta[j]:
                break
    except _Unprovable:
        return m, None
    return np.rint(out).astype(np.int64), flip


def critical_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
                   max_pair_bits: int = MAX_PAIR_BITS, max_triples: int = MAX_TRIPLES,
                   floor: int | None = None, first_open: bool = False,
                   total: int | None = None) -> np.ndarray | None:
    """Per class the bound ``min(P_j, max(θ_j − 1, R_j))`` on ``c_j − c_y`` (``P_y`` = 0), or
    None where the path bound does not apply; ``floor`` replaces every ``θ_j`` (a lower one
    refines more pairs: tests use it to exercise every triple); ``first_open`` stops at the
    first class left open (the others keep ``P_j``; classes furthest above their threshold
    first, so a proof that cannot come fails fast); ``total`` caps the tuples a class may
    evaluate over all its passes."""
    tables: list[PathTables] = []
    m = path_bound(plan, lv, y, max_bits, max_pair_bits, tables=tables)
    if m is None:
        return None
    return _refine(plan, lv, y, m, tables[0], max_triples, floor, first_open, total)[0]


class Stage(NamedTuple):
    """The pipeline stage's outcome: the path score, the refined score (None where the path
    bound proved or did not apply) and the levels of a flipping input the windows found."""

    path: float | None
    refined: float | None = None
    level: np.ndarray | None = None


def path_then_critical(plan: DeploymentPlan, lv: PixelLevels, y: int,
                       max_triples: int = MAX_TRIPLES) -> Stage:
    """The pipeline's stage at :data:`STAGE_BITS` / :data:`STAGE_PAIR_BITS`: the refinement
    runs only where the path bound does not prove and stops at the first class it leaves
    open (or where it finds a flipping input); plans of more than two layers get at most
    :data:`GENERIC_TRIPLE_MACS` multiply-adds of triples per class."""
    tables: list[PathTables] = []
    two = len(plan.layers) == 2
    m = path_bound(plan, lv, y, STAGE_BITS, STAGE_PAIR_BITS, tables=tables,
                   pair_macs=TWO_LAYER_MACS if two else PAIR_MACS)
    if m is None:
        return Stage(None)
    if score_of(m, y) <= 0:
        return Stage(score_of(m, y))
    total = None
    if not two:
        total = GENERIC_TRIPLE_MACS // max(sum(S.pos.size for S in tables[0].layers), 1)
    out, level = _refine(plan, lv, y, m, tables[0], max_triples, None, True, total)
    return Stage(score_of(m, y), score_of(out, y), level)


def critical_score(plan: DeploymentPlan, lv: PixelLevels, y: int, **kw) -> float | None:
    """The bound in the search's units, ``max_{j≠y} (m_j + ½[j < y])`` (≤ 0 is a proof)."""
    m = critical_bound(plan, lv, y, **kw)
    return None if m is None else score_of(m, y)
