"""Windows of k exact steps, k = 4 … T, on what the window below keeps from both sides.

:mod:`.critical`'s three-step passes leave, per class j, the triples ``(b_{t−2}, b_{t−1}, b_t)``
a flipping input can use, each with its refined prefix (an upper bound on
``Σ_{s≤t} (s_{s,j} − s_{s,y})`` of the inputs through it) and its gain ``g³_t``. One level up
is the same construction on longer tuples. At level k the nodes of step t (``t ≥ k − 1``)
are k-tuples ``τ = (b_{t−k+1}, …, b_t)`` with the gain ``g^k_t(τ)``: the k steps run on those
bits from the step bound's union after step ``t − k`` (each quantity an exact integer interval
as in the step bound); a node at t − 1 and one at t are linked when they share their
``k − 1`` common steps. On this chain

* ``P(τ)`` — the best prefix: ``P`` of a linked node at t − 1 plus ``g^k_t(τ)``;
* ``S(τ)`` — the best suffix: the DP backwards, ``g^k_{t+1} + S`` of a linked node at t + 1;

and a node with ``P + S < θ_j`` is on no flipping input. Level k + 1 joins the kept nodes of
consecutive steps into (k+1)-tuples (thermometer-consistent between their first and last
step; nearer steps are consistent by construction), runs the DP forward with ``g^{k+1}``,
and drops as it goes every node whose prefix plus the level-k suffix stays below ``θ_j``.
``R^{k+1} = max P`` at step T − 1 bounds ``c_j − c_y`` of every flipping input.

At level T a node is a whole input, run from the zero state: when every free input bit is
enumerated (no bit left as an interval), its ``P`` *is* ``c_j − c_y`` of that input, so
``R^T`` is exact — below ``θ_j`` a proof, otherwise the maximising node is a flipping input
(returned as levels; the pipeline replays it on the emulator like every counterexample). A
level whose joined tuples pass the cap keeps the level below's ``R`` (never approximated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.pathbound import PathTables, _run

if TYPE_CHECKING:
    from neurodeploy.verify.critical import Cap

#: tuples per vectorised run of the k steps
CHUNK = 8192


@dataclass
class Level:
    """Level k's nodes per step t: ``first`` / ``second`` (their two level-(k−1) nodes, at
    t − 1 and t: the link keys), ``tup`` ``[n, k]`` (combination rows of steps t − k + 1 … t),
    ``g`` (``g^k_t``) and ``P`` (refined prefix through t)."""

    k: int
    first: dict[int, np.ndarray] = field(default_factory=dict)
    second: dict[int, np.ndarray] = field(default_factory=dict)
    tup: dict[int, np.ndarray] = field(default_factory=dict)
    g: dict[int, np.ndarray] = field(default_factory=dict)
    P: dict[int, np.ndarray] = field(default_factory=dict)

    def bound(self) -> float:
        last = self.P[max(self.P)]
        return float(last.max()) if len(last) else -np.inf


def _keys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of pair ids made one compact index space."""
    _, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    inv = inv.ravel()
    return inv[:len(a)], inv[len(a):]


def from_triples(tb: PathTables, triples: dict) -> Level:
    """Level 3 from :func:`.critical._forward`'s triples (rows ``(c, a, b)``, prefix, gain)."""
    L = Level(3)
    for t, (rows, p, g) in triples.items():
        n_prev, n_t = tb.gains[t].shape[:2]
        L.first[t] = rows[:, 0] * n_prev + rows[:, 1]      # pair (c, a) of step t − 1
        L.second[t] = rows[:, 1] * n_t + rows[:, 2]        # pair (a, b) of step t
        L.tup[t], L.P[t], L.g[t] = rows, p.astype(np.float64), g
    ts = sorted(triples)
    for t in ts[1:]:
        L.second[t - 1], L.first[t] = _keys(L.second[t - 1], L.first[t])
    L.first[ts[0]] = _keys(L.first[ts[0]], np.zeros(0, np.int64))[0]
    L.second[ts[-1]] = _keys(L.second[ts[-1]], np.zeros(0, np.int64))[0]
    return L


def _suffix(L: Level) -> dict[int, np.ndarray]:
    """Per node the best ``Σ_{s>t} g^k_s`` along linked nodes (the DP backwards)."""
    ts = sorted(L.P)
    S = {ts[-1]: np.zeros(len(L.P[ts[-1]]))}
    for t in reversed(ts[1:]):
        size = 1 + max(int(L.second[t - 1].max(initial=-1)), int(L.first[t].max(initial=-1)))
        best = np.full(size, -np.inf)
        np.maximum.at(best, L.first[t], L.g[t] + S[t])
        S[t - 1] = best[L.second[t - 1]]
    return S


def _chain_gains(plan, tb: PathTables, t: int, k: int, y: int, j: int,
                 tup: np.ndarray) -> np.ndarray:
    """``g^k_t`` of each k-tuple row ``tup``: steps t − k + 1 … t from the union after t − k."""
    from neurodeploy.verify.critical import _rows

    g = np.empty(len(tup))
    for c0 in range(0, len(tup), CHUNK):
        rows = tup[c0:c0 + CHUNK]
        st = [tuple(np.broadcast_to(a, (len(rows), a.size)) for a in s)
              for s in tb.unions[t - k + 1]]
        for q in range(k):
            lo, hi, st = _run(tb.layers, plan.fixed_point, st,
                              _rows(tb.steps[t - k + 1 + q], rows[:, q]))
        g[c0:c0 + CHUNK] = hi[:, j] - lo[:, y]
    return g


def _best_per(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` and the largest value of each."""
    uk, inv = np.unique(keys, return_inverse=True)
    best = np.full(len(uk), -np.inf)
    np.maximum.at(best, inv.ravel(), values)
    return uk, best


def level_up(plan, lv: PixelLevels, tb: PathTables, y: int, j: int, floor: int, L: Level,
             cap: Cap) -> Level | None:
    """Level k + 1 from level k (module docstring), or None when a step's joined tuples
    pass ``cap``."""
    from neurodeploy.verify.critical import _consistent, _join

    S = _suffix(L)
    ts = sorted(L.P)
    up = Level(L.k + 1)
    keys, best = None, None
    for t in ts[1:]:
        if keys is None:       # the first step: level k's prefixes are exact there
            keys = np.nonzero(L.P[t - 1] + S[t - 1] >= floor)[0]
            best = L.P[t - 1][keys]
        size = 1 + max(int(L.second[t - 1].max(initial=-1)), int(L.first[t].max(initial=-1)))
        link = np.full(size, -np.inf)
        np.maximum.at(link, L.second[t - 1][keys], best)
        cand = np.nonzero((L.P[t] + S[t] >= floor)
                          & (link[L.first[t]] + L.g[t] + S[t] >= floor))[0]
        joined = _join(np.stack([keys, L.second[t - 1][keys]], 1),
                       np.stack([L.first[t][cand], cand], 1), cap.limit())
        if joined is None:
            return None
        ia, ib = joined
        cap.spend(len(ia))
        a, b = keys[ia], cand[ib]
        tup = np.concatenate([L.tup[t - 1][a], L.tup[t][b][:, -1:]], 1)
        ok = _consistent(lv, t - L.k, tb.steps[t - L.k], t, tb.steps[t], tup[:, 0], tup[:, -1])
        ia, a, b, tup = ia[ok], a[ok], b[ok], tup[ok]
        g = _chain_gains(plan, tb, t, up.k, y, j, tup) if len(tup) else np.zeros(0)
        p = best[ia] + g
        up.first[t], up.second[t], up.tup[t], up.g[t], up.P[t] = a, b, tup, g, p
        live = p + S[t][b] >= floor
        keys, best = _best_per(b[live], p[live])
    return up


def exact_tables(tb: PathTables) -> bool:
    """Every free input bit enumerated at every step (no bit left as an interval)."""
    return all(np.array_equal(s.lo, s.hi) for s in tb.steps)


def input_levels(lv: PixelLevels, tb: PathTables, rows: np.ndarray) -> np.ndarray:
    """The per-pixel levels of one whole input given as a combination row per step."""
    spikes = np.stack([s.lo for s in tb.steps]).astype(np.uint8)
    for t, s in enumerate(tb.steps):
        spikes[t, s.cols] = s.bits[rows[t]]
    level = spikes.sum(0).astype(np.int64)
    if not np.array_equal(lv.spikes(level), spikes) or not all(
            int(c) in r for c, r in zip(level, lv.levels, strict=True)):
        raise AssertionError("a whole-input window is not a reachable input (a bug)")
    return level


def windows(plan, lv: PixelLevels, tb: PathTables, y: int, j: int, floor: int, L: Level,
            bound: float, cap: Cap) -> tuple[float, np.ndarray | None]:
    """Levels 4 … T on class j from level 3 while the bound stays ≥ ``floor``: ``(R_j, the
    levels of a flipping input or None)`` — the input only where level T is exact."""
    T = len(tb.gains)
    while bound >= floor and L.k < T:
        nxt = level_up(plan, lv, tb, y, j, floor, L, cap)
        if nxt is None:
            return bound, None
        L = nxt
        bound = min(bound, L.bound())
    if bound >= floor and L.k == T and exact_tables(tb):
        last = L.P[T - 1]
        return bound, input_levels(lv, tb, L.tup[T - 1][int(np.argmax(last))])
    return bound, None
