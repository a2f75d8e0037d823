"""Equivalence verdicts: did accuracy survive deployment within a stated margin δ?

Absence of evidence is not evidence of absence: a change that is not significant at n = 20 is
not a survival. Every verdict is read off the paired 95 % interval ``[lo, hi]`` of
``Δ = acc(deployed) − acc(float)`` and a margin ``δ`` (default 5 points, ``--margin``):

- **survived** — ``lo ≥ −δ``: with 95 % confidence the deployed model lost less than δ
  (a non-inferiority statement, the two one-sided tests' lower half);
- **dropped by** — ``hi < 0``: the deployed model is worse (when also ``lo ≥ −δ`` the drop is
  within the margin and the verdict says both);
- **inconclusive** — otherwise: the interval reaches below −δ and above 0. The verdict then
  states the number of samples that would settle it and the smallest drop this n can detect;
- **better beyond the margin** — ``lo > 0`` and ``Δ > +δ``: the deployed side scores clearly
  higher than float. For robust accuracy that is a **masking suspect** (the attacks may be
  weaker on the deployed side), not good news.

Sample size at the observed discordance. Per example let ``D_i = o_i − b_i`` (−1, 0, 1 for 0/1
outcomes; a difference of survival rates under the unknown draw). If the true change is 0,
``Var(D) = E[D²] = m₂`` — for 0/1 pairs ``m₂`` is the discordance ``(b + c)/n``. A Wald test
of ``Δ ≥ −δ`` at one-sided level α/2 with power ``1 − β`` then needs::

    n* = ⌈(z_{1−α/2} + z_{1−β})² · m₂ / δ²⌉                    (α = 0.05, 1 − β = 0.8)

(raised to the smallest n whose interval at the expected counts clears −δ by ``z_{1−β}`` standard
errors, which matters when there is little discordance), and at the current n the smallest drop a "dropped" verdict
detects with that power is::

    d_min(n) = max((z_{1−α/2} + z_{1−β}) · √(m₂ / n), (z_{1−α/2} + z_{1−β})² / n)

Both are tested against a simulation of the audit's own interval (tests/test_audit_verdict.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_MARGIN = 0.05
ALPHA = 0.05
POWER = 0.8


def _z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def settling_n(second_moment: float, margin: float, alpha: float = ALPHA,
               power: float = POWER) -> int:
    """Samples ``n*`` for which "survived" (``lo ≥ −δ``) has power ``power`` when the true Δ
    is 0 and the per-example differences have second moment ``m₂`` (module docstring).

    The larger of the Wald size and the smallest n whose interval at the *expected* counts
    (``b = c = m₂n/2``) clears ``−δ + z_{1−β}·√(m₂/n)``: with little or no discordance the
    score interval keeps a width of order ``z²/n`` that the Wald formula does not see."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    wald = math.ceil(_z_sum(alpha, power) ** 2 * second_moment / margin**2)
    return max(1, wald, _expected_count_n(second_moment, margin, power))


def _expected_count_n(m2: float, margin: float, power: float = POWER) -> int:
    from scipy.stats import norm

    from neurodeploy.audit.stats import tango_paired

    zb = float(norm.ppf(power))

    def clears(n: int) -> bool:
        half = m2 * n / 2
        return tango_paired(half, half, n)[0] >= -margin + zb * math.sqrt(m2 / n)

    hi = 1
    while not clears(hi):
        hi *= 2
        if hi > 1 << 40:
            return hi
    lo = max(1, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if clears(mid) else (mid + 1, hi)
    return hi


def detectable_drop(second_moment: float, n: int, alpha: float = ALPHA,
                    power: float = POWER) -> float:
    """The smallest drop (a fraction) that ``n`` paired samples detect with power ``power``:
    ``max(z·√(m₂/n), z²/n)`` with ``z = z_{1−α/2} + z_{1−β}`` — a true drop d needs at least
    d·n discordant pairs, so ``m₂ ≥ d`` and the size cannot fall below ``z²/n``."""
    z = _z_sum(alpha, power)
    return max(z * math.sqrt(second_moment / n), z * z / n)


@dataclass(frozen=True)
class Equivalence:
    """The verdict on one paired comparison (fractions; ``words`` in points)."""

    outcome: str                    # survived / dropped / inconclusive / better beyond margin
    margin: float
    delta: float
    ci95: tuple[float, float]
    n: int
    second_moment: float
    n_to_settle: int | None
    detectable_drop: float | None
    words: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def judge(delta: float, ci95: tuple[float, float], n: int, second_moment: float,
          margin: float = DEFAULT_MARGIN, robust: bool = True) -> Equivalence:
    """The equivalence verdict of module docstring for ``Δ`` with paired interval ``ci95``."""
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    lo, hi = float(ci95[0]), float(ci95[1])
    m2 = float(second_moment)
    pts = f"Δ {_pts(delta)} points, 95 % CI [{_pts(lo)}, {_pts(hi)}], margin δ = {100 * margin:g}"
    need = mde = None
    if lo > 0 and delta > margin:
        outcome = "better beyond margin"
        what = ("masking suspect: the deployed side's attacks may be weaker than the float "
                "side's" if robust else "unexpected for a quantized model: check the deployment")
        words = f"deployed better than float beyond +δ ({pts} points) — {what}"
    elif lo >= -margin:
        outcome = "survived"
        words = f"survived (Δ ≥ −{100 * margin:g} points with 95 % confidence; {pts} points)"
        if hi < 0:
            words += f"; dropped by {abs(100 * delta):.1f} points, within the margin"
    elif hi < 0:
        outcome = "dropped"
        words = f"dropped by {abs(100 * delta):.1f} points ({pts} points)"
    else:
        outcome = "inconclusive"
        need = settling_n(m2, margin)
        mde = detectable_drop(m2, n)
        words = (f"inconclusive ({pts} points: the interval reaches below −δ and above 0); "
                 f"about {need} samples would settle it at the observed discordance "
                 f"({100 * POWER:.0f} % power), and these {n} detect drops of "
                 f"{100 * mde:.1f} points or more")
    return Equivalence(outcome, float(margin), float(delta), (lo, hi), int(n), m2, need, mde,
                       words)


def _pts(v: float) -> str:
    s = f"{100 * v:+.1f}"
    return "+0.0" if s == "-0.0" else s.replace("-", "−")
