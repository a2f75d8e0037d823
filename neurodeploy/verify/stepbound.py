"""A robustness proof that keeps the correlation of one step: enumerate that step's input bits.

The interval pass of :mod:`.intmodel` bounds every hidden neuron on its own, so a hidden layer
whose neurons all move with the same few input spikes looks far less robust than it is (on
the digits demo plan at ε 0.1 the intervals leave ~1 500 of 2 560 hidden spike slots open while
random inputs never move the decision by less than five counts). This pass bounds each step
*jointly* over the hidden layer:

At step t the input spikes are ``s[t, p] = [c_p > rank[t, p]]``; a pixel whose reachable levels
straddle its rank has one free bit there, every other pixel a fixed bit. The pass enumerates
every combination ``b ∈ {0, 1}^k`` of the ``k ≤ max_bits`` most influential free bits (the rest
of the free bits stay the interval [0, 1]) and runs the plan's integer step on all of them at
once, each quantity an exact integer interval per combination::

    a_b   = shift(W⁺·s_b^lo + W⁻·s_b^hi,  W⁺·s_b^hi + W⁻·s_b^lo)        (per layer, W = W⁺ + W⁻)
    u_b   = tz(U·f_u / D) + act(a_b),    v_b = tz(V·f_v / D) + u_b + bias
    s_b   ∈ [v_b^lo ≻ θ, v_b^hi ≻ θ],    r_b = the reset of v_b (0 / v − θ where it fired)

where ``U, V`` are the carried states: per neuron the union over the combinations of the step
before, ``U_{t+1} = ∪_b u_b``, ``V_{t+1} = ∪_b r_b``. Every real input's bits at step t are one
combination, and by induction its state lies in the carried union, so the output spikes of that
input lie in ``[s_b^lo, s_b^hi]`` of its combination b. Hence for every target class j ≠ y

    c_j − c_y = Σ_t (s_{t,j} − s_{t,y})  ≤  Σ_t max_b (s_{b,t,j}^hi − s_{b,t,y}^lo) =: M_j,

and the example is **robust** when ``M_j < [j > y]`` for every j (the readout's ties go to the
lowest index). With ``window = w > 1`` the bits of steps ``t − w + 1 … t`` are enumerated
together (combinations that break one pixel's thermometer order dropped) and the state is
carried per combination inside the window, from the union after step ``t − w``. Fewer bits
are enumerated on larger plans (about :data:`STEP_MACS` multiply-adds per step).
What the pass forgets: the coupling of one pixel's bits across steps (its level
is one number) and, across steps, which combination a carried state came from — both only
widen the bound, so "proved" is a proof and "not proved" means nothing.

Scope: dense, conv and pool synapses; ``lif``/``sublif`` neurons (TA-LIF's threshold state is
not carried here: not proved); a wrap, saturation or wrap-once that an interval can reach also
ends the pass unproved (the exact encoding handles those; this pass never approximates them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import FixedPointFormat
from neurodeploy.verify.intmodel import _layer_matrix, _neuron_constants
from neurodeploy.verify.levels import PixelLevels

#: at most 2^MAX_BITS combinations of one step's free input bits are enumerated
MAX_BITS = 14
#: ... and at most about this many multiply-adds per step (fewer bits on larger plans)
STEP_MACS = (1 << 14) * 20_000
#: steps enumerated jointly (the carried state is exact inside the window)
WINDOW = 1


class _Unprovable(Exception):
    """An interval reaches a wrap or saturation: the pass stops without a proof."""


@dataclass
class _Layer:
    """One layer's integer constants."""

    L: PlanLayer
    pos: np.ndarray        # W⁺ as float64 (exact: integer sums far below 2^53)
    neg: np.ndarray        # W⁻
    dense: np.ndarray      # W = W⁺ + W⁻
    f_u: np.ndarray
    f_v: np.ndarray
    bias: np.ndarray
    theta: int
    subtract: bool


#: a layer's state intervals (u_lo, u_hi, v_lo, v_hi), each ``[N]`` or ``[B, N]``
State = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _tz(x: np.ndarray, f: np.ndarray, d: int) -> np.ndarray:
    """``tz(x·f / d)`` elementwise (int64; monotone non-decreasing in x for f ≥ 0)."""
    p = x * f
    return np.where(p >= 0, p // d, -((-p) // d))


def _check(lo: np.ndarray, hi: np.ndarray, bits: int) -> None:
    """Stop unproved when ``[lo, hi]`` can leave the signed ``bits`` range minus one (no wrap,
    wrap-once or saturation of the format can act inside it)."""
    half = 1 << (bits - 1)
    if lo.size and (lo.min() < -half + 1 or hi.max() > half - 2):
        raise _Unprovable


def _prepare(plan: DeploymentPlan) -> list[_Layer] | None:
    fmt = plan.fixed_point
    out = []
    for L in plan.layers:
        if L.neuron not in ("lif", "sublif"):
            return None
        W = _layer_matrix(L, fmt).astype(np.float64)
        C = _neuron_constants(L, fmt)
        out.append(_Layer(L, np.maximum(W, 0), np.minimum(W, 0), W, C.f_u.astype(np.int64),
                          C.f_v.astype(np.int64), C.bias.astype(np.int64), int(C.theta0),
                          C.subtract))
    return out


def _zero_state(layers: list[_Layer]) -> list[State]:
    return [tuple(np.zeros(S.L.out_size, dtype=np.int64) for _ in range(4)) for S in layers]


def _union(state: State) -> State:
    """Per neuron the union over the combinations."""
    u_lo, u_hi, v_lo, v_hi = (np.atleast_2d(a) for a in state)
    return u_lo.min(0), u_hi.max(0), v_lo.min(0), v_hi.max(0)
def _synapse(S: _Layer, fmt: FixedPointFormat, lo: np.ndarray, hi: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The activation interval ``[B, N]`` for input spikes in ``[lo, hi]`` ``[B, N_in]``."""
    return _scale(S, fmt, lo @ S.pos.T + hi @ S.neg.T, hi @ S.pos.T + lo @ S.neg.T)


def _first_synapse(S: _Layer, fmt: FixedPointFormat, bits: StepBits
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_synapse` of ``bits.dense()``, computed as one shared row plus the enumerated
    columns: ``[lo, hi]`` differ only off the enumerated bits, where they are equal, so

        W⁺·lo_b + W⁻·hi_b = (W⁺·lo + W⁻·hi) + W[:, cols]·bits_b

    (``lo, hi`` the shared row, its enumerated columns 0) — ``k`` multiply-adds per
    combination and neuron instead of ``4·N_in``; exact (integer sums far below 2^53)."""
    var = bits.bits @ S.dense[:, bits.cols].T                      # [B, N]
    return _scale(S, fmt, (bits.lo @ S.pos.T + bits.hi @ S.neg.T) + var,
                  (bits.hi @ S.pos.T + bits.lo @ S.neg.T) + var)


def _scale(S: _Layer, fmt: FixedPointFormat, f_lo: np.ndarray, f_hi: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The weight exponent and activation shift of the layer on the exact sums (float64 holding
    integers), with the format's range checks."""
    a_lo = np.rint(f_lo).astype(np.int64)
    a_hi = np.rint(f_hi).astype(np.int64)
    L = S.L
    if L.kind == "dense":
        if L.weight_exp > 0:
            a_lo, a_hi = a_lo << L.weight_exp, a_hi << L.weight_exp
        elif L.weight_exp < 0:
            a_lo, a_hi = a_lo >> -L.weight_exp, a_hi >> -L.weight_exp   # floor: monotone
        _check(a_lo, a_hi, fmt.port_bits)
    else:
        _check(a_lo, a_hi, fmt.conv_output_bits)
    a_lo, a_hi = a_lo << fmt.activation_shift, a_hi << fmt.activation_shift
    _check(a_lo, a_hi, fmt.port_bits)
    return a_lo, a_hi


def _neurons(S: _Layer, fmt: FixedPointFormat, state: State, a_lo: np.ndarray,
             a_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, State]:
    """One step of the layer's neurons per combination: the spike interval ``[B, N]`` (0/1 as
    float64) and the state after the reset, per combination. With ``θ ≥ 1`` a neuron sure to
    fire is in the "maybe" branch too, and the reset's union needs no separate "sure" case
    for the lower end (fewer ``[B, N]`` passes; the general formula otherwise)."""
    D = fmt.decay_unity
    bits = min(fmt.state_bits, fmt.port_bits)
    if S.f_u.any():
        u_lo = _tz(state[0], S.f_u, D) + a_lo
        u_hi = _tz(state[1], S.f_u, D) + a_hi
    else:                                         # no current carried: u = a
        u_lo, u_hi = a_lo, a_hi
    _check(u_lo, u_hi, bits)
    v_lo = u_lo + (_tz(state[2], S.f_v, D) + S.bias)
    v_hi = u_hi + (_tz(state[3], S.f_v, D) + S.bias)
    _check(v_lo, v_hi, bits)
    fire = S.theta + (0 if fmt.spike_comparison == ">=" else 1)   # spikes iff v ≥ fire
    sure, maybe = v_lo >= fire, v_hi >= fire
    q_hi = np.minimum(v_hi, fire - 1)                             # quiet: v < fire
    if S.subtract:
        f_lo, f_hi = np.maximum(v_lo, fire) - S.theta, v_hi - S.theta
    else:
        f_lo = f_hi = np.zeros((), dtype=np.int64)
    if S.theta >= 1:     # f_lo ≤ v_lo where sure, and q_hi ≥ f_hi where maybe but not sure
        r_lo = np.where(maybe, np.minimum(v_lo, f_lo), v_lo)
        r_hi = np.where(sure, f_hi, np.maximum(q_hi, f_hi) if S.subtract else q_hi)
    else:
        r_lo = np.where(sure, f_lo, np.where(maybe, np.minimum(v_lo, f_lo), v_lo))
        r_hi = np.where(sure, f_hi, np.where(maybe, np.maximum(q_hi, f_hi), v_hi))
    return sure.astype(np.float64), maybe.astype(np.float64), (u_lo, u_hi, r_lo, r_hi)


@dataclass(frozen=True)
class StepBits:
    """One step's input spikes over the enumerated combinations: the shared row ``[lo, hi]``
    ``[P]`` (fixed bits, the free bits not enumerated as [0, 1], the enumerated ones 0) and the
    enumerated pixels ``cols`` ``[k]`` with their value per combination ``bits`` ``[B, k]``."""

    lo: np.ndarray
    hi: np.ndarray
    cols: np.ndarray
    bits: np.ndarray

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The input spike intervals ``[B, P]`` of every combination."""
        lo = np.broadcast_to(self.lo, (len(self.bits), self.lo.size)).copy()
        hi = np.broadcast_to(self.hi, (len(self.bits), self.hi.size)).copy()
        lo[:, self.cols] = hi[:, self.cols] = self.bits
        return lo, hi


def _window_inputs(lv: PixelLevels, steps: range, weight: np.ndarray, max_bits: int
                   ) -> list[StepBits]:
    """The input spikes of each step of a window: every consistent combination of the
    ``max_bits`` free bits of highest priority (first-layer weight mass, halved per step before
    the window's last), the other free bits [0, 1]. Consistent: one pixel's bits at ranks
    r < r' satisfy ``s_{r'} ≤ s_r`` (its level is one number)."""
    low = np.array([r[0] for r in lv.levels])
    high = np.array([r[-1] for r in lv.levels])
    last = steps[-1]
    cand = [(weight[p] * 0.5 ** (last - t), t, int(p)) for t in steps
            for p in np.nonzero((low <= lv.rank[t]) & (high > lv.rank[t]))[0]]
    cand.sort(key=lambda c: -c[0])
    pick = [(t, p) for _, t, p in cand[:max_bits]]
    k = len(pick)
    combos = (np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1
    for a, (ta, pa) in enumerate(pick):          # thermometer: higher rank ⇒ lower rank
        for b, (tb, pb) in enumerate(pick):
            if pa == pb and lv.rank[ta, pa] < lv.rank[tb, pb]:
                combos = combos[combos[:, b] <= combos[:, a]]
    out = []
    for t in steps:
        rank = lv.rank[t]
        lo = (low > rank).astype(np.float64)
        hi = lo.copy()
        hi[(low <= rank) & (high > rank)] = 1.0
        mine = [c for c, (tc, _) in enumerate(pick) if tc == t]
        cols = np.array([pick[c][1] for c in mine], dtype=np.int64)
        lo[cols] = hi[cols] = 0.0
        out.append(StepBits(lo, hi, cols, combos[:, mine].astype(np.float64)))
    return out


def step_bound(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
               window: int = WINDOW) -> np.ndarray | None:
    """``M_j = Σ_t max_b (s_{b,t,j}^hi − s_{b,t,y}^lo)`` of the module docstring per class
    (``M_y`` = 0), or None where the pass does not apply (a TA-LIF layer, a reachable wrap or
    saturation). ``window`` steps are enumerated jointly: step t starts from the union state
    after step ``t − window`` and carries the exact per-combination state through the
    window."""
    layers = _prepare(plan)
    if layers is None:
        return None
    fmt = plan.fixed_point
    weight = np.abs(layers[0].pos + layers[0].neg).sum(0)
    macs = window * sum(S.pos.size for S in layers)
    max_bits = min(max_bits, max(0, int(np.log2(max(STEP_MACS / macs, 1.0)))))
    after = {-1: _zero_state(layers)}            # union state after each step
    m = np.zeros(plan.layers[-1].out_size, dtype=np.int64)
    try:
        for t in range(lv.num_steps):
            first = max(0, t - window + 1)
            states = list(after[first - 1])
            for bits in _window_inputs(lv, range(first, t + 1), weight, max_bits):
                act = _first_synapse(layers[0], fmt, bits)
                for k, S in enumerate(layers):
                    lo, hi, states[k] = _neurons(S, fmt, states[k], *act)
                    if k + 1 < len(layers):
                        act = _synapse(layers[k + 1], fmt, lo, hi)
            after[t] = [_union(st) for st in states]
            m += np.rint((hi - lo[:, y:y + 1]).max(0)).astype(np.int64)
    except _Unprovable:
        return None
    m[y] = 0
    return m


def step_score(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
               window: int = WINDOW) -> float | None:
    """The bound in the search's units: ``max_{j≠y} (M_j + ½[j < y]) ≥ max_{j≠y} (c_j − c_y
    + ½[j < y])`` over every input of the ball; ``≤ 0`` is a proof (the readout's ties go to
    the lowest index, so a class below y needs ``c_j − c_y ≥ 0``, one above ``≥ 1``). None
    where the pass does not apply."""
    m = step_bound(plan, lv, y, max_bits, window)
    return None if m is None else score_of(m, y)


def score_of(m: np.ndarray, y: int) -> float:
    """``max_{j≠y} (m_j + ½[j < y])`` of a per-class bound ``m`` on ``c_j − c_y`` (≤ 0: no
    class can win, ties going to the lowest index)."""
    other = np.arange(m.size) != y
    return float((m + 0.5 * (np.arange(m.size) < y))[other].max())


def step_proves(plan: DeploymentPlan, lv: PixelLevels, y: int, max_bits: int = MAX_BITS,
                window: int = WINDOW) -> bool:
    """True when the step bound rules out every target class (a proof)."""
    score = step_score(plan, lv, y, max_bits, window)
    return score is not None and score <= 0
