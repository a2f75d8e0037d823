"""The path bound refined where it matters: three steps of exact state on its critical pairs.

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

is on no flipping input: it is dropped (*dead*). On the *alive* pairs the pass runs the
dynamic programme again over edges, with gains of step t computed per triple
``(b_{t−2}, b_{t−1}, b_t)`` — steps t − 2, t − 1, t run on those bits from the union after step
t − 3, each quantity an exact integer interval as in the step bound:

    W_t(b_{t−1}, b_t) = max over alive (b_{t−2}, b_{t−1}) of W_{t−1}(b_{t−2}, b_{t−1})
                        + g³_t(b_{t−2}, b_{t−1}, b_t)

(triples breaking a pixel's thermometer order between steps t − 2 and t dropped too). The
pruning runs again as the refined prefixes come in: a pair whose best refined prefix plus its
pair gain and ``H_t`` stays below ``θ_j`` is dropped before its triples are built. Then
``R_j = max W_{T−1}`` bounds ``c_j − c_y`` of every flipping input, and with integer counts

    c_j − c_y ≤ min(P_j, max(θ_j − 1, R_j))

for every input: the class is ruled out when ``R_j < θ_j`` (no alive pair left: ``R_j = −∞``).

Where the three-step pass leaves ``R_j ≥ θ_j`` a **four-step pass** runs on what it leaves
alive from both sides: with ``Z`` the refined suffix after each pair (the same DP backwards over
the same triples), a triple is kept when prefix + its gain + suffix ≥ ``θ_j``, and the DP runs
once more over the kept triples, each step's gain from the exact state of the quadruple
``(b_{t−3}, …, b_t)`` (from the union after t − 4); its maximum replaces ``R_j`` where lower.
Cost: one integer step per triple; a class whose alive pairs join into more than
``max_triples`` triples keeps its path bound (not proved, never approximated). Scope as the
path bound's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.pathbound import (
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
#: this many multiply-adds in all (~12 µs a triple on the digits plan's 18 944: ≈ 30 s)
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


def _forward(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
             floor: int, max_triples: int) -> tuple[dict, dict, dict] | None:
    """The three-step pass: per step t ≥ 1 its alive pairs ``E[t]`` ``[E, 2]`` and their refined
    prefixes ``W[t]``; per t ≥ 2 its triples ``(edge at t − 1, edge at t, g³)``. None when a
    step's triples pass ``max_triples``."""
    gains, T = tb.gains, len(tb.gains)
    F, H = _forward_backward(gains, j)
    alive = [np.zeros((0, 2), dtype=np.int64)] + [
        np.argwhere(F[t - 1][:, None] + gains[t][:, :, j] + H[t][None, :] >= floor)
        for t in range(1, T)]
    e = alive[1]
    E = {1: e}
    W = {1: gains[0][0, e[:, 0], j].astype(np.float64) + gains[1][e[:, 0], e[:, 1], j]}
    TR: dict[int, tuple] = {}
    gains3 = _triple_gains_two if len(tb.layers) == 2 else _triple_gains
    for t in range(2, T):
        prev, w = E[t - 1], W[t - 1]
        live = np.nonzero(w + H[t - 1][prev[:, 1]] >= floor)[0]   # refined prefix can flip
        best = np.full(gains[t].shape[0], -np.inf)       # per b_{t−1}: its best refined prefix
        np.maximum.at(best, prev[live, 1], w[live])
        cur = alive[t]
        cur = cur[best[cur[:, 0]] + gains[t][cur[:, 0], cur[:, 1], j] + H[t][cur[:, 1]] >= floor]
        joined = _join(prev[live], cur, max_triples)
        if joined is None:
            return None
        pre, at = joined
        pre = live[pre]
        b2, m, n = prev[pre, 0], prev[pre, 1], cur[at, 1]
        ok = _consistent(lv, t - 2, tb.steps[t - 2], t, tb.steps[t], b2, n)
        pre, at, b2, m, n = pre[ok], at[ok], b2[ok], m[ok], n[ok]
        g = gains3(plan, tb, t, y, j, b2, m, n) if len(pre) else np.zeros(0)
        new = np.full(len(cur), -np.inf)
        np.maximum.at(new, at, w[pre] + g)
        E[t], W[t], TR[t] = cur, new, (pre, at, g)
    return E, W, TR


def _chain_gains(plan: DeploymentPlan, tb: PathTables, t: int, y: int, j: int,
                 combos: np.ndarray) -> np.ndarray:
    """``g⁴_t`` of each row ``(b_{t−3}, b_{t−2}, b_{t−1}, b_t)`` of ``combos``: the four steps run
    on those bits from the union after step t − 4."""
    g = np.empty(len(combos))
    for c0 in range(0, len(combos), CHUNK_TRIPLES):
        rows = combos[c0:c0 + CHUNK_TRIPLES]
        st = [tuple(np.broadcast_to(a, (len(rows), a.size)) for a in s)
              for s in tb.unions[t - 3]]
        for k in range(4):
            lo, hi, st = _run(tb.layers, plan.fixed_point, st,
                              _rows(tb.steps[t - 3 + k], rows[:, k]))
        g[c0:c0 + CHUNK_TRIPLES] = hi[:, j] - lo[:, y]
    return g


def _window4(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
             floor: int, fw: tuple[dict, dict, dict], max_quads: int) -> float | None:
    """The four-step pass on the triples the three-step pass leaves alive from both sides
    (refined prefix + triple gain + refined suffix ≥ ``floor``): its ``R_j``, or None when a
    step's quadruples pass ``max_quads``."""
    E, W, TR = fw
    gains, T = tb.gains, len(tb.gains)
    Z = {T - 1: np.zeros(len(E[T - 1]))}                  # refined suffix after each edge
    for t in range(T - 1, 1, -1):
        pre, at, g = TR[t]
        Z[t - 1] = np.full(len(E[t - 1]), -np.inf)
        np.maximum.at(Z[t - 1], pre, g + Z[t][at])
    A = {}
    for t in range(2, T):
        pre, at, g = TR[t]
        keep = W[t - 1][pre] + g + Z[t][at] >= floor
        A[t] = (pre[keep], at[keep], g[keep])
    pre, at, g = A[2]
    e1 = E[1]
    V = gains[0][0, e1[pre, 0], j] + gains[1][e1[pre, 0], e1[pre, 1], j] + g   # exact so far
    for t in range(3, T):
        (pa, aa, _), (pb_, ab, _) = A[t - 1], A[t]
        joined = _join(np.stack([pa, aa], 1), np.stack([pb_, ab], 1), max_quads)
        if joined is None:
            return None
        ia, ib = joined
        first, last = E[t - 2][pa[ia]], E[t][ab[ib]]
        combos = np.stack([first[:, 0], first[:, 1], last[:, 0], last[:, 1]], 1)
        ok = _consistent(lv, t - 3, tb.steps[t - 3], t, tb.steps[t], combos[:, 0], combos[:, 3])
        ia, ib, combos = ia[ok], ib[ok], combos[ok]
        new = np.full(len(pb_), -np.inf)
        if len(ia):
            np.maximum.at(new, ib, V[ia] + _chain_gains(plan, tb, t, y, j, combos))
        V = new
    return float(V.max()) if len(V) else -np.inf


def refine_class(plan: DeploymentPlan, lv: PixelLevels, tb: PathTables, y: int, j: int,
                 floor: int, max_triples: int = MAX_TRIPLES) -> float | None:
    """``R_j`` of the module docstring over the pairs alive at threshold ``floor`` (−∞ when
    none is) — the three-step pass, then, where it leaves ``R_j ≥ floor``, the four-step one —
    or None when a step's triples pass ``max_triples``."""
    T = len(tb.gains)
    if T == 1:
        return float(tb.gains[0][0, :, j].max())
    fw = _forward(plan, lv, tb, y, j, floor, max_triples)
    if fw is None:
        return None
    W = fw[1][T - 1]
    r = float(W.max()) if len(W) else -np.inf
    if r >= floor and T >= 4:
        r4 = _window4(plan, lv, tb, y, j, floor, fw, max_triples)
        if r4 is not None:
            r = min(r, r4)
    return r


def _refine(plan: DeploymentPlan, lv: PixelLevels, y: int, m: np.ndarray, tb: PathTables,
            max_triples: int, floor: int | None, first_open: bool) -> np.ndarray:
    """The refined per-class bound from the path bound ``m`` and its tables."""
    out = m.astype(np.float64)
    theta = (np.arange(m.size) > y).astype(np.int64) if floor is None else np.full(m.size, floor)
    try:
        for j in np.argsort(theta - m, kind="stable"):
            if j == y or m[j] < theta[j]:
                continue
            r = refine_class(plan, lv, tb, y, int(j), int(theta[j]), max_triples)
            if r is not None:
                out[j] = min(m[j], max(theta[j] - 1, r))
            if first_open and out[j] >= theta[j]:
                break
    except _Unprovable:
        return m
    return np.rint(out).astype(np.int64)


def critical_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
                   max_pair_bits: int = MAX_PAIR_BITS, max_triples: int = MAX_TRIPLES,
                   floor: int | None = None, first_open: bool = False) -> np.ndarray | None:
    """Per class the bound ``min(P_j, max(θ_j − 1, R_j))`` on ``c_j − c_y`` (``P_y`` = 0), or
    None where the path bound does not apply; ``floor`` replaces every ``θ_j`` (a lower one
    refines more pairs: tests use it to exercise every triple); ``first_open`` stops at the
    first class left open (the others keep ``P_j``; classes furthest above their threshold
    first, so a proof that cannot come fails fast)."""
    tables: list[PathTables] = []
    m = path_bound(plan, lv, y, max_bits, max_pair_bits, tables=tables)
    if m is None:
        return None
    return _refine(plan, lv, y, m, tables[0], max_triples, floor, first_open)


def path_then_critical(plan: DeploymentPlan, lv: PixelLevels, y: int,
                       max_triples: int = MAX_TRIPLES) -> tuple[float | None, float | None]:
    """The pipeline's stage: (path score, refined score) at :data:`STAGE_BITS` /
    :data:`STAGE_PAIR_BITS`; the refinement runs only where the path bound does not prove
    (else None) and stops at the first class it leaves open; plans of more than two layers
    get at most :data:`GENERIC_TRIPLE_MACS` multiply-adds of triples per class."""
    tables: list[PathTables] = []
    two = len(plan.layers) == 2
    m = path_bound(plan, lv, y, STAGE_BITS, STAGE_PAIR_BITS, tables=tables,
                   pair_macs=TWO_LAYER_MACS if two else PAIR_MACS)
    if m is None:
        return None, None
    if score_of(m, y) <= 0:
        return score_of(m, y), None
    if not two:
        macs = sum(S.pos.size for S in tables[0].layers)
        max_triples = min(max_triples, GENERIC_TRIPLE_MACS // max(macs, 1))
    return score_of(m, y), score_of(_refine(plan, lv, y, m, tables[0], max_triples, None,
                                            True), y)


def critical_score(plan: DeploymentPlan, lv: PixelLevels, y: int, **kw) -> float | None:
    """The bound in the search's units, ``max_{j≠y} (m_j + ½[j < y])`` (≤ 0 is a proof)."""
    m = critical_bound(plan, lv, y, **kw)
    return None if m is None else score_of(m, y)
