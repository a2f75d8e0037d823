"""A robustness proof that keeps the state exact across each pair of consecutive steps and
chains the pairs along one input path: a Viterbi pass over each step's input-bit combinations.

The step bound (:mod:`.stepbound`) lets every step pick its own worst input combination and
carries, out of every step, the union of the states of all its combinations — so the next
step's worst case may start from a state another combination left behind. On plans whose
neurons forget quickly (the digits demo plan keeps ¼ of v per step and resets to 0) most of
that slack lives in the last step's state. This pass removes it for one step back:

Let ``b_t`` be step t's enumerated input bits (its free bits, the ``max_bits`` most influential
when there are more; the others stay the interval [0, 1]) and ``U_{t−2}`` the step bound's
carried union after step t − 2. For every pair ``(b_{t−1}, b_t)`` the plan's integer step runs
twice from ``U_{t−2}``, each quantity an exact integer interval — step t − 1 on ``b_{t−1}``,
step t on ``b_t`` from the state that left — so the state entering step t is that of
``b_{t−1}`` alone, not a union. With ``s_t`` the output spike intervals of step t,

    g_t(b_{t−1}, b_t) = s_{t,j}^hi − s_{t,y}^lo   ≥   s_{t,j} − s_{t,y}

for every real input whose bits at t − 1 and t are ``b_{t−1}, b_t`` (its state after t − 2
lies in ``U_{t−2}``, by the step bound's induction). A real input is one path ``b_0 … b_{T−1}``
whose consecutive pairs respect each pixel's thermometer order (a pixel's bit at the higher
rank implies its bit at the lower one), hence

    c_j − c_y = Σ_t (s_{t,j} − s_{t,y})  ≤  max over paths Σ_t g_t(b_{t−1}, b_t) =: P_j,

computed exactly by dynamic programming over the steps (Viterbi: ``V_t(b_t) = max_{b_{t−1}}
V_{t−1}(b_{t−1}) + g_t(b_{t−1}, b_t)``, invalid pairs excluded). The example is **robust**
when ``P_j < [j > y]`` for every j ≠ y (ties to the lowest index). What the pass still forgets:
states from two steps back (the union) and a pixel's order across non-adjacent steps — both
only widen the bound, so "proved" is a proof and "not proved" means nothing.

Cost: ``2^(k_{t−1} + k_t)`` pairs per step (k ≤ ``max_bits``; at most :data:`MAX_PAIR_BITS` per
pair, fewer on larger plans (:data:`PAIR_MACS`): the later step keeps fewer bits otherwise).
Scope as the step bound's: dense, conv and pool synapses, ``lif``/``sublif``; TA-LIF, or a wrap
or saturation an interval can reach, ends the pass unproved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.stepbound import (
    StepBits,
    _check,
    _first_synapse,
    _Layer,
    _neurons,
    _prepare,
    _scale,
    _synapse,
    _tz,
    _union,
    _Unprovable,
    _zero_state,
    score_of,
)

#: at most this many enumerated bits per step ...
MAX_BITS = 12
#: ... and per pair of consecutive steps
MAX_PAIR_BITS = 20
#: ... and at most about this many multiply-adds per step (fewer pair bits on larger plans:
#: 20 on the digits plan, 15 on a 784-512-256-10 one)
PAIR_MACS = (1 << 20) * 20_000
#: rows of one vectorised pass (pairs are chunked by the earlier step's combination)
CHUNK_ROWS = 16_384

State = list[tuple[np.ndarray, ...]]


def _step_bits(lv: PixelLevels, t: int, weight: np.ndarray, k_max: int) -> StepBits:
    """Step t's input spikes: every combination of its ``k_max`` most influential free bits,
    the other free bits [0, 1], the fixed bits fixed."""
    low = np.array([r[0] for r in lv.levels])
    high = np.array([r[-1] for r in lv.levels])
    rank = lv.rank[t]
    free = np.nonzero((low <= rank) & (high > rank))[0]
    cols = free[np.argsort(-weight[free], kind="stable")][:max(0, k_max)]
    lo = (low > rank).astype(np.float64)
    hi = lo.copy()
    hi[free] = 1.0
    lo[cols] = hi[cols] = 0.0
    k = cols.size
    combos = ((np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)
    return StepBits(lo, hi, cols, combos)


def _run(layers: list[_Layer], fmt, states: State, bits: StepBits
         ) -> tuple[np.ndarray, np.ndarray, State]:
    """One integer step of every layer on each combination of ``bits``: the output spike
    interval ``[B, C]`` and the states after it (``[B, N]`` per layer)."""
    act = _first_synapse(layers[0], fmt, bits)
    out = []
    for k, S in enumerate(layers):
        lo, hi, st = _neurons(S, fmt, states[k], *act)
        out.append(tuple(np.broadcast_to(np.atleast_2d(a), lo.shape) for a in st))
        if k + 1 < len(layers):
            act = _synapse(layers[k + 1], fmt, lo, hi)
    return lo, hi, out


def order_ok(lv: PixelLevels, t0: int, t1: int, p: int, x0: np.ndarray, x1: np.ndarray
             ) -> np.ndarray:
    """Whether pixel p's bits ``x0`` at step t0 and ``x1`` at step t1 (broadcast) respect its
    thermometer order: the slot of lower rank spikes whenever the other one does."""
    if lv.rank[t0, p] < lv.rank[t1, p]:                  # spiking at t1 ⇒ spiking at t0
        return ~((x0 == 0) & (x1 == 1))
    return ~((x0 == 1) & (x1 == 0))                        # spiking at t0 ⇒ spiking at t1


def _valid_pairs(lv: PixelLevels, t: int, prev: StepBits, cur: StepBits) -> np.ndarray:
    """``[B1, B2]``: which ``(b_{t−1}, b_t)`` respect the thermometer order of the pixels
    enumerated at both steps."""
    ok = np.ones((len(prev.bits), len(cur.bits)), dtype=bool)
    for a, p in enumerate(prev.cols):
        for b in np.nonzero(cur.cols == p)[0]:
            ok &= order_ok(lv, t - 1, t, int(p), prev.bits[:, a][:, None], cur.bits[:, b][None, :])
    return ok


def carried(S: _Layer, fmt, state: tuple[np.ndarray, ...]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a first-layer neuron carries into the next step from ``state`` (rows ``[B, N]``):
    the decayed current ``[cu_lo, cu_hi]`` and ``k = cu + decayed v + bias`` ``[k_lo, k_hi]``,
    so that the step's ``v = a(b_t) + k``."""
    D = fmt.decay_unity
    U_lo, U_hi, V_lo, V_hi = state
    if S.f_u.any():
        cu_lo, cu_hi = _tz(U_lo, S.f_u, D), _tz(U_hi, S.f_u, D)
    else:
        cu_lo = cu_hi = np.zeros_like(U_lo)
    return (cu_lo, cu_hi, cu_lo + _tz(V_lo, S.f_v, D) + S.bias,
            cu_hi + _tz(V_hi, S.f_v, D) + S.bias)


def _pair_gains(layers: list[_Layer], fmt, y: int, states: State, cur: StepBits
                ) -> np.ndarray:
    """``g_t(b_{t−1}, b_t)`` ``[B1, B2, C]``: step t on every combination of ``cur`` from each
    state ``states[·][i]`` the previous step's combination i left."""
    B1, B2 = states[0][0].shape[0], len(cur.bits)
    C = layers[-1].L.out_size
    g = np.empty((B1, B2, C))
    step = max(1, CHUNK_ROWS // B2)
    for i0 in range(0, B1, step):
        i = np.arange(i0, min(B1, i0 + step))
        st = [tuple(np.repeat(a[i], B2, 0) for a in s) for s in states]
        bits = StepBits(cur.lo, cur.hi, cur.cols, np.tile(cur.bits, (i.size, 1)))
        lo, hi, _ = _run(layers, fmt, st, bits)
        g[i0:i0 + i.size] = (hi - lo[:, y:y + 1]).reshape(i.size, B2, C)
    return g


def _pair_gains_two(layers: list[_Layer], fmt, y: int, states: State, cur: StepBits
                    ) -> np.ndarray:
    """:func:`_pair_gains` of a two-layer plan, the same integers with less work: a hidden
    neuron's ``v = a(b_t) + k(b_{t−1})`` (``k`` = the carried current and voltage after decay,
    plus the bias), so it spikes surely iff ``a_lo ≥ fire − k_lo`` and maybe iff ``a_hi ≥
    fire − k_hi``; a neuron whose answer is the same for every ``b_{t−1}`` (no ``a`` of this
    step falls between the extremes of ``fire − k`` over the previous combinations) adds the
    same output drive to every pair and is summed once per ``b_t``; only the others are
    evaluated per pair."""
    S1, S2 = layers
    bits = min(fmt.state_bits, fmt.port_bits)
    a_lo, a_hi = _first_synapse(S1, fmt, cur)                                  # [B2, N]
    cu_lo, cu_hi, k_lo, k_hi = carried(S1, fmt, states[0])                     # [B1, N]
    _check(cu_lo.min(0) + a_lo.min(0), cu_hi.max(0) + a_hi.max(0), bits)      # u, every pair
    fire = S1.theta + (0 if fmt.spike_comparison == ">=" else 1)
    _check(k_lo.min(0) + a_lo.min(0), k_hi.max(0) + a_hi.max(0), bits)        # v, every pair
    t_lo, t_hi = fire - k_lo, fire - k_hi
    sens = (((a_lo >= t_lo.min(0)) != (a_lo >= t_lo.max(0))).any(0)
            | ((a_hi >= t_hi.min(0)) != (a_hi >= t_hi.max(0))).any(0))
    ins = ~sens
    sure = (a_lo[:, ins] >= t_lo[0, ins]).astype(np.float64)
    maybe = (a_hi[:, ins] >= t_hi[0, ins]).astype(np.float64)
    base_lo = sure @ S2.pos[:, ins].T + maybe @ S2.neg[:, ins].T                # [B2, C]
    base_hi = maybe @ S2.pos[:, ins].T + sure @ S2.neg[:, ins].T
    pos, neg = S2.pos[:, sens], S2.neg[:, sens]
    B1, B2, C = k_lo.shape[0], a_lo.shape[0], S2.L.out_size
    g = np.empty((B1, B2, C))
    step = max(1, CHUNK_ROWS // B2)
    for i0 in range(0, B1, step):
        i = np.arange(i0, min(B1, i0 + step))
        s = (a_lo[None, :, sens] >= t_lo[i][:, None, sens]).astype(np.float64)  # [c, B2, S]
        m = (a_hi[None, :, sens] >= t_hi[i][:, None, sens]).astype(np.float64)
        f_lo = (base_lo[None] + s @ pos.T + m @ neg.T).reshape(-1, C)
        f_hi = (base_hi[None] + m @ pos.T + s @ neg.T).reshape(-1, C)
        o_lo, o_hi = _scale(S2, fmt, f_lo, f_hi)
        st = tuple(np.repeat(a[i], B2, 0) for a in states[1])
        lo, hi, _ = _neurons(S2, fmt, st, o_lo, o_hi)
        g[i0:i0 + i.size] = (hi - lo[:, y:y + 1]).reshape(i.size, B2, C)
    return g


@dataclass
class PathTables:
    """What the pass computed, kept for :mod:`.critical`: ``gains[t]`` ``[B_{t−1}, B_t, C]``
    (int8; ``gains[0]`` ``[1, B_0, C]``; :data:`INVALID` where a pair breaks a pixel's
    thermometer order), the enumerated ``steps`` and ``unions[t]``, the step bound's carried
    union after step t − 1 (``unions[0]`` the zero state)."""

    layers: list[_Layer]
    gains: list[np.ndarray]
    steps: list[StepBits]
    unions: list[State]


#: the stored gain of a pair that breaks a pixel's thermometer order (never on a real path)
INVALID = -100


def path_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
               max_pair_bits: int = MAX_PAIR_BITS, tables: list | None = None,
               pair_macs: int = PAIR_MACS) -> np.ndarray | None:
    """``P_j`` of the module docstring per class (``P_y`` = 0), or None where the pass does
    not apply (a TA-LIF layer, a reachable wrap or saturation). A list passed as ``tables``
    receives the pass's :class:`PathTables` (kept only then: up to ~10 MB a step);
    ``pair_macs`` replaces :data:`PAIR_MACS`."""
    layers = _prepare(plan)
    if layers is None:
        return None
    fmt = plan.fixed_point
    weight = np.abs(layers[0].dense).sum(0)
    macs = sum(S.pos.size for S in layers)
    max_pair_bits = min(max_pair_bits, max(0, int(np.log2(max(pair_macs / macs, 1.0)))))
    union: State = _zero_state(layers)               # after step t − 1
    prev: StepBits | None = None
    left: State = []      # per b_{t−1}: the state after step t − 1 from the union before it
    V = np.zeros(0)
    keep = PathTables(layers, [], [], [union]) if tables is not None else None
    try:
        for t in range(lv.num_steps):
            k_prev = 0 if prev is None else prev.cols.size
            cur = _step_bits(lv, t, weight, min(max_bits, max_pair_bits - k_prev))
            lo, hi, after = _run(layers, fmt, union, cur)
            if prev is None:
                g = (hi - lo[:, y:y + 1])[None]                          # [1, B, C]
                V = g[0]
            else:
                gains = _pair_gains_two if len(layers) == 2 else _pair_gains
                g = gains(layers, fmt, y, left, cur)
                g[~_valid_pairs(lv, t, prev, cur)] = -np.inf
                V = (V[:, None, :] + g).max(0)
            union = [_union(s) for s in after]
            prev, left = cur, after
            if keep is not None:
                keep.gains.append(np.where(np.isfinite(g), g, INVALID).astype(np.int8))
                keep.steps.append(cur)
                keep.unions.append(union)
    except _Unprovable:
        return None
    if keep is not None:
        tables.append(keep)
    m = np.rint(V.max(0)).astype(np.int64)
    m[y] = 0
    return m


def path_score(plan: DeploymentPlan, lv: PixelLevels, y: int, **kw) -> float | None:
    """The bound in the search's units, ``max_{j≠y} (P_j + ½[j < y])`` (≤ 0 is a proof), or
    None where the pass does not apply."""
    m = path_bound(plan, lv, y, **kw)
    return None if m is None else score_of(m, y)
