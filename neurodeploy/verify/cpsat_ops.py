"""Integer operations of the plan's step as CP-SAT constraints, each with a sound interval.

A :class:`Val` is an integer quantity of the step: a Python int (decided), or a CP-SAT linear
expression with an interval ``[lo, hi]`` that contains every value it can take (interval
arithmetic through the same operations). Every operation below is encoded *exactly* — the
constraint admits precisely the kernel's result — and folds to a constant, or to the identity,
where the interval decides it (a wrap the interval proves unreachable adds nothing). The
intervals only shrink the search; they never replace a constraint by a relaxation.

Equations (``tz`` rounds toward zero, ``m = 2^bits``, ``h`` = half of a wrap period)::

    floor_shift(x, k):   2^k·q ≤ x ≤ 2^k·q + 2^k − 1
    decay(x, f, D):      q = tz(x·f / D):  x ≥ 0 ⇒ 0 ≤ x·f − D·q ≤ D − 1,
                                           x < 0 ⇒ −(D − 1) ≤ x·f − D·q ≤ 0
    wrap(x, bits):       w = x − m·k,  −m/2 ≤ w ≤ m/2 − 1,  k integer
    wrap_once(x, h):     b⁺ ⇔ x > h,  b⁻ ⇔ x ≤ −h,  w = x − 2h·b⁺ + 2h·b⁻
    saturate(x, L):      w = min(L, max(−L, x))
    fire(v, θ):          s ⇔ v − θ ≥ 1   (``>=``: v − θ ≥ 0)
    reset zero:          s ⇒ r = 0,      ¬s ⇒ r = v
    reset subtract:      s ⇒ r = v − θ,  ¬s ⇒ r = v
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model


@dataclass(frozen=True)
class Val:
    """An integer of the step: ``expr`` (int or CP-SAT linear expression) within ``[lo, hi]``."""

    expr: Any
    lo: int
    hi: int

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi


def const(c: int) -> Val:
    return Val(int(c), int(c), int(c))


def tz_div(a: int, d: int) -> int:
    """``a / d`` rounded toward zero (d > 0)."""
    q = abs(a) // d
    return q if a >= 0 else -q


class Ops:
    """A CP-SAT model plus the operations of the integer step (module docstring)."""

    def __init__(self) -> None:
        self.model = cp_model.CpModel()
        self.n_free_spikes = 0

    # ------------------------------------------------------------------ basics
    def var(self, lo: int, hi: int) -> Any:
        return self.model.new_int_var(int(lo), int(hi), "")

    def boolean(self) -> Any:
        return self.model.new_bool_var("")

    def _defined(self, expr: Any, lo: int, hi: int) -> Val:
        """A fresh variable equal to ``expr`` (keeps expressions short)."""
        if lo == hi:
            return const(lo)
        z = self.var(lo, hi)
        self.model.add(z == expr)
        return Val(z, lo, hi)

    def add(self, *xs: Val | int) -> Val:
        vals = [x if isinstance(x, Val) else const(x) for x in xs]
        lo = sum(v.lo for v in vals)
        hi = sum(v.hi for v in vals)
        if lo == hi:
            return const(lo)
        return Val(sum(v.expr for v in vals), lo, hi)

    def scale(self, x: Val, c: int) -> Val:
        if x.fixed:
            return const(x.lo * c)
        a, b = x.lo * c, x.hi * c
        return Val(x.expr * c, min(a, b), max(a, b))

    def linear(self, coeffs: list[int], terms: list[Val], offset: int = 0) -> Val:
        """``offset + Σ c_i·x_i`` of free terms (one fresh variable)."""
        lo = hi = int(offset)
        for c, x in zip(coeffs, terms, strict=True):
            lo += min(c * x.lo, c * x.hi)
            hi += max(c * x.lo, c * x.hi)
        if lo == hi:
            return const(lo)
        expr = cp_model.LinearExpr.weighted_sum([x.expr for x in terms], coeffs) + int(offset)
        return self._defined(expr, lo, hi)

    # ------------------------------------------------------------------ roundings
    def floor_shift(self, x: Val, k: int) -> Val:
        """``floor(x / 2^k)`` (an arithmetic right shift, k ≥ 1)."""
        d = 1 << k
        if x.fixed:
            return const(x.lo // d)
        q = self.var(x.lo // d, x.hi // d)
        self.model.add(d * q <= x.expr)
        self.model.add(x.expr <= d * q + (d - 1))
        return Val(q, x.lo // d, x.hi // d)

    def decay(self, x: Val, f: int, d: int) -> Val:
        """``tz(x·f / d)`` (the decay's ``>>₀``)."""
        if f == 0:
            return const(0)
        if f == d:
            return x
        if x.fixed:
            return const(tz_div(x.lo * f, d))
        a, b = tz_div(x.lo * f, d), tz_div(x.hi * f, d)
        lo, hi = min(a, b), max(a, b)
        if lo == hi:
            return const(lo)
        q = self.var(lo, hi)
        z = x.expr * f
        if x.lo >= 0:      # z ≥ 0: d·q ≤ z ≤ d·q + d − 1
            self.model.add_linear_constraint(z - d * q, 0, d - 1)
        elif x.hi <= 0:    # z ≤ 0: d·q − (d − 1) ≤ z ≤ d·q
            self.model.add_linear_constraint(z - d * q, -(d - 1), 0)
        else:
            neg = self.boolean()
            self.model.add(x.expr <= -1).only_enforce_if(neg)
            self.model.add(x.expr >= 0).only_enforce_if(~neg)
            self.model.add_linear_constraint(z - d * q, 0, d - 1).only_enforce_if(~neg)
            self.model.add_linear_constraint(z - d * q, -(d - 1), 0).only_enforce_if(neg)
        return Val(q, lo, hi)

    # ------------------------------------------------------------------ overflow
    def wrap(self, x: Val, bits: int) -> Val:
        """Two's-complement wrap to ``bits`` signed bits."""
        m = 1 << bits
        half = m >> 1
        kmin, kmax = (x.lo + half) // m, (x.hi + half) // m
        if kmin == kmax:
            return x if kmin == 0 else self.add(x, -m * kmin)
        k = self.var(kmin, kmax)
        w = self.var(-half, half - 1)
        self.model.add(w == x.expr - m * k)
        return Val(w, -half, half - 1)

    def wrap_once(self, x: Val, half: int) -> Val:
        """Lava's single conditional wrap: ``x − 2h`` if ``x > h``, ``x + 2h`` if ``x ≤ −h``."""
        up, down = x.hi > half, x.lo <= -half
        if not up and not down:
            return x
        if x.lo > half:
            return self.add(x, -2 * half)
        if x.hi <= -half:
            return self.add(x, 2 * half)
        terms: list[Val] = [x]
        pieces = [(max(x.lo, -half + 1), min(x.hi, half))]
        if up:
            b = self.boolean()
            self.model.add(x.expr >= half + 1).only_enforce_if(b)
            self.model.add(x.expr <= half).only_enforce_if(~b)
            terms.append(Val(b * (-2 * half), -2 * half, 0))
            pieces.append((max(x.lo, half + 1) - 2 * half, x.hi - 2 * half))
        if down:
            b = self.boolean()
            self.model.add(x.expr <= -half).only_enforce_if(b)
            self.model.add(x.expr >= -half + 1).only_enforce_if(~b)
            terms.append(Val(b * (2 * half), 0, 2 * half))
            pieces.append((x.lo + 2 * half, min(x.hi, -half) + 2 * half))
        lo = min(p[0] for p in pieces if p[0] <= p[1])
        hi = max(p[1] for p in pieces if p[0] <= p[1])
        return self._defined(sum(t.expr for t in terms), lo, hi)

    def saturate(self, x: Val, lim: int) -> Val:
        """Clip to ``[−lim, lim]``."""
        if -lim <= x.lo and x.hi <= lim:
            return x
        if x.hi <= -lim:
            return const(-lim)
        if x.lo >= lim:
            return const(lim)
        lo, hi = max(x.lo, -lim), min(x.hi, lim)
        t = self.var(lo, x.hi)
        self.model.add_max_equality(t, [x.expr, -lim])
        w = self.var(lo, hi)
        self.model.add_min_equality(w, [t, lim])
        return Val(w, lo, hi)

    def overflow(self, x: Val, rule: str, state_bits: int) -> Val:
        """The format's ``u_overflow`` / ``v_overflow`` rule on ``state_bits``."""
        half = 1 << (state_bits - 1)
        if rule == "wrap_once":
            return self.wrap_once(x, half)
        if rule == "saturate":
            return self.saturate(x, half - 1)
        return self.wrap(x, state_bits)

    # ------------------------------------------------------------------ spikes
    def fire(self, v: Val, theta: Val, inclusive: bool) -> Val:
        """The spike ``v > θ`` (``v ≥ θ`` when ``inclusive``) as a 0/1 :class:`Val`."""
        need = 0 if inclusive else 1
        d_lo, d_hi = v.lo - theta.hi, v.hi - theta.lo
        if d_lo >= need:
            return const(1)
        if d_hi < need:
            return const(0)
        s = self.boolean()
        diff = v.expr - theta.expr
        self.model.add(diff >= need).only_enforce_if(s)
        self.model.add(diff <= need - 1).only_enforce_if(~s)
        self.n_free_spikes += 1
        return Val(s, 0, 1)

    def reset(self, v: Val, s: Val, theta: Val, subtract: bool, inclusive: bool) -> Val:
        """``v`` after spike ``s``: 0 (zero reset) or ``v − θ`` (subtract) where it fired."""
        if s.fixed:
            if s.lo == 0:
                return v
            return self.add(v, self.scale(theta, -1)) if subtract else const(0)
        need = 0 if inclusive else 1
        quiet = (v.lo, min(v.hi, theta.hi + need - 1))          # no spike: v − θ < need
        if subtract:
            fired = (max(v.lo, theta.lo + need) - theta.hi, v.hi - theta.lo)
            fired_expr = v.expr - theta.expr
        else:
            fired, fired_expr = (0, 0), 0
        lo, hi = min(quiet[0], fired[0]), max(quiet[1], fired[1])
        r = self.var(lo, hi)
        self.model.add(r == fired_expr).only_enforce_if(s.expr)
        self.model.add(r == v.expr).only_enforce_if(~s.expr)
        return Val(r, lo, hi)
