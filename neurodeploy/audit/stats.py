"""Paired statistics of the audit: float vs deployed model on the same samples.

Both sides classify the *same* examples, so their per-example outcomes (correct / robust) are
paired. The change from float to chip is judged on the pairs:

- **exact McNemar test** — only the discordant pairs carry information: ``b`` examples the
  float model gets right and the chip wrong, ``c`` the other way round. Under "no change" each
  discordant pair is equally likely to go either way, so ``b ~ Binomial(b + c, 1/2)`` and the
  two-sided exact p-value is ``min(1, 2·P[X ≤ min(b, c)])`` (the binomial is symmetric, so this
  equals ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``; tested);
- **paired bootstrap** of ``Δ = acc(chip) − acc(float)``: resample the example indices with
  replacement (the pairs stay together), seeded, and take the 2.5 / 97.5 percentiles.

The words of a verdict follow :func:`paired_change`: "no detectable change" when the exact
test does not reject at 5 % (and the interval then contains 0 or touches it), else "dropped by"
/ "rose by" with the interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (module docstring).

    ``b = c = 0`` (no discordant pair) gives 1.0."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # P[X <= k] for X ~ Binomial(n, 1/2), summed exactly in integers
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


def paired_bootstrap_ci(
    base: torch.Tensor, other: torch.Tensor, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``mean(other) − mean(base)`` over paired resamples.

    ``base`` and ``other`` are per-example 0/1 outcomes of one length N; each resample draws N
    indices with replacement from ``torch.Generator().manual_seed(seed)`` and applies them to
    both. The percentiles are the order statistics at ``⌊q·(R−1)⌉`` (no interpolation)."""
    a = torch.as_tensor(base).flatten().double()
    o = torch.as_tensor(other).flatten().double()
    if a.shape != o.shape or a.numel() == 0:
        raise ValueError(f"paired outcomes need one non-empty length, got {tuple(a.shape)} "
                         f"and {tuple(o.shape)}")
    n = a.numel()
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n, (int(resamples), n), generator=g)
    deltas = (o[idx] - a[idx]).mean(1).sort().values
    q = (1.0 - level) / 2.0
    lo = deltas[int(round(q * (resamples - 1)))]
    hi = deltas[int(round((1.0 - q) * (resamples - 1)))]
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedChange:
    """``other`` vs ``base`` on the same N examples (accuracies in [0, 1], Δ as a fraction).

    ``b``, ``c`` and the McNemar p-value exist for 0/1 outcomes; for per-example fractions
    (robust in k of d unknown draws) only the paired bootstrap applies, and the change counts as
    detected when its interval excludes 0."""

    n: int
    base_accuracy: float
    other_accuracy: float
    delta: float                       # other − base, fraction
    ci95: tuple[float, float]          # paired bootstrap, fraction
    b: int | None                      # base right, other wrong
    c: int | None                      # base wrong, other right
    p_value: float | None              # exact McNemar
    significant: bool                  # p < ALPHA (0/1) or 0 outside the interval (fractions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d

    @property
    def words(self) -> str:
        """``no detectable change (Δ +1.0 points, 95 % CI [−3.0, +5.0], McNemar p = 0.62)`` or
        ``dropped by 6.0 points (95 % CI [−9.0, −3.0], McNemar p = 0.0010)``."""
        ci = f"95 % CI [{_signed(self.ci95[0])}, {_signed(self.ci95[1])}]"
        tail = f", McNemar p = {_p(self.p_value)}" if self.p_value is not None else \
            ", paired bootstrap over examples"
        if not self.significant:
            return f"no detectable change (Δ {_signed(self.delta)} points, {ci}{tail})"
        verb = "dropped" if self.delta < 0 else "rose"
        return f"{verb} by {abs(100 * self.delta):.1f} points ({ci}{tail})"


def paired_change(base: torch.Tensor, other: torch.Tensor, seed: int = 0,
                  resamples: int = BOOTSTRAP_RESAMPLES) -> PairedChange:
    """Compare per-example outcomes ``other`` with ``base`` (module docstring): 0/1 outcomes
    get the exact McNemar test and the bootstrap interval; fractions in [0, 1] the interval."""
    a = torch.as_tensor(base).flatten().double()
    o = torch.as_tensor(other).flatten().double()
    if a.shape != o.shape:
        raise ValueError(f"paired outcomes differ in length: {a.numel()} vs {o.numel()}")
    n = int(a.numel())
    ci = paired_bootstrap_ci(a, o, resamples=resamples, seed=seed)
    delta = float(o.mean() - a.mean())
    binary = bool((((a == 0) | (a == 1)) & ((o == 0) | (o == 1))).all())
    if binary:
        ab, ob = a.bool(), o.bool()
        b, c = int((ab & ~ob).sum()), int((~ab & ob).sum())
        p: float | None = mcnemar_exact(b, c)
        sig = p < ALPHA
    else:
        b = c = p = None
        sig = ci[0] > 0 or ci[1] < 0
    return PairedChange(n=n, base_accuracy=float(a.mean()), other_accuracy=float(o.mean()),
                        delta=delta, ci95=ci, b=b, c=c, p_value=p, significant=sig)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean and Student-t interval of independent values (None for fewer than 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy.stats import t  # scipy ships with scikit-learn, a dependency

    half = float(t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def _signed(v: float) -> str:
    s = f"{100 * v:+.1f}"
    return s.replace("-", "−")


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.01 else f"{p:.1e}" if p < 1e-4 else f"{p:.4f}"
