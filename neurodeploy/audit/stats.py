"""Paired statistics of the audit: float vs deployed model on the same samples.

Both sides classify the *same* examples, so their per-example outcomes (correct / robust) are
paired. The change from float to chip is judged on the pairs:

- **exact McNemar test** — only the discordant pairs carry information: ``b`` examples the
  float model gets right and the chip wrong, ``c`` the other way round. Under "no change" each
  discordant pair is equally likely to go either way, so ``b ~ Binomial(b + c, 1/2)`` and the
  two-sided exact p-value is ``min(1, 2·P[X ≤ min(b, c)])`` (the binomial is symmetric, so this
  equals ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``; tested);
- **the interval of** ``Δ = acc(chip) − acc(float)``: for 0/1 outcomes Tango's score
  interval for paired proportions (:func:`tango_paired`, good coverage at small n and with
  few discordant pairs); for the unknown draw's outcomes ``[H, N]`` (paired by example and
  held-out draw) Tango's interval on the effective number of pairs (:func:`clustered_paired`,
  Rao–Scott: the examples are the independent units); for other per-example fractions the
  paired bootstrap over examples (seeded, 2.5 / 97.5 percentiles).

The verdict is not "no significant change" but an equivalence statement with a margin δ
(:mod:`neurodeploy.audit.verdict`): "survived" only when the interval's lower end is ≥ −δ.
Robust accuracies carry their own intervals: Clopper–Pearson for the known draw's k of n,
Wilson on the effective sample size of examples × draws for the unknown draw
(:func:`clustered_proportion_ci`).
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
    second_moment: float = 0.0         # E[D²] of the per-example differences (discordance)
    interval: str = "paired bootstrap over examples"
    equivalence: dict[str, Any] | None = None  # verdict.judge(...).to_dict() with the margin

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d

    @property
    def words(self) -> str:
        """``no detectable change (Δ +1.0 points, 95 % CI [−3.0, +5.0], McNemar p = 0.62)`` or
        ``dropped by 6.0 points (95 % CI [−9.0, −3.0], McNemar p = 0.0010)``."""
        if self.equivalence is not None:
            return str(self.equivalence["words"]) + (
                f" (McNemar p = {_p(self.p_value)})" if self.p_value is not None else "")
        ci = f"95 % CI [{_signed(self.ci95[0])}, {_signed(self.ci95[1])}]"
        tail = f", McNemar p = {_p(self.p_value)}" if self.p_value is not None else \
            ", paired bootstrap over examples"
        if not self.significant:
            return f"no detectable change (Δ {_signed(self.delta)} points, {ci}{tail})"
        verb = "dropped" if self.delta < 0 else "rose"
        return f"{verb} by {abs(100 * self.delta):.1f} points ({ci}{tail})"


def paired_change(base: torch.Tensor, other: torch.Tensor, seed: int = 0,
                  resamples: int = BOOTSTRAP_RESAMPLES, margin: float | None = None,
                  robust: bool = True) -> PairedChange:
    """Compare per-example outcomes ``other`` with ``base`` (module docstring).

    1-D 0/1 outcomes get the exact McNemar test and Tango's interval; 2-D 0/1 outcomes
    ``[H, N]`` (examples × held-out draws, paired by example and draw) Tango's interval on
    the effective number of pairs (:func:`clustered_paired`); 1-D fractions in [0, 1] the
    paired bootstrap. With ``margin`` δ the change carries its equivalence verdict
    (:func:`neurodeploy.audit.verdict.judge`) and :attr:`PairedChange.words` are its words;
    the second moment it plans with is that of the per-example differences."""
    a = torch.as_tensor(base).double()
    o = torch.as_tensor(other).double()
    if a.shape != o.shape:
        raise ValueError(f"paired outcomes differ in shape: {tuple(a.shape)} vs {tuple(o.shape)}")
    binary = bool((((a == 0) | (a == 1)) & ((o == 0) | (o == 1))).all())
    b = c = p = None
    if a.dim() == 2 and binary:
        ci, ne = clustered_paired(a, o)
        how = (f"Tango score interval on the effective number of example × draw pairs "
               f"(n_eff = {ne:.1f} of {a.numel()}, Rao–Scott)")
        a, o = a.mean(0), o.mean(0)
    else:
        a, o = a.flatten(), o.flatten()
        if binary:
            ab, ob = a.bool(), o.bool()
            b, c = int((ab & ~ob).sum()), int((~ab & ob).sum())
            p = mcnemar_exact(b, c)
            ci = tango_paired(b, c, a.numel())
            how = "Tango score interval for paired proportions"
        else:
            ci = paired_bootstrap_ci(a, o, resamples=resamples, seed=seed)
            how = "paired bootstrap over examples"
    n = int(a.numel())
    delta = float(o.mean() - a.mean())
    sig = p < ALPHA if p is not None else (ci[0] > 0 or ci[1] < 0)
    m2 = float(((o - a) ** 2).mean())
    eq = None
    if margin is not None:
        from neurodeploy.audit.verdict import judge

        eq = judge(delta, ci, n, m2, margin, robust=robust).to_dict()
    return PairedChange(n=n, base_accuracy=float(a.mean()), other_accuracy=float(o.mean()),
                        delta=delta, ci95=ci, b=b, c=c, p_value=p, significant=sig,
                        second_moment=m2, interval=how, equivalence=eq)


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


# ---------------------------------------------------------------------- intervals (issue 20)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a proportion ``k / n`` (Clopper–Pearson).

    ``lo = Beta⁻¹(α/2; k, n − k + 1)``, ``hi = Beta⁻¹(1 − α/2; k + 1, n − k)`` with ``α = 1 − level``
    (``lo = 0`` at ``k = 0``, ``hi = 1`` at ``k = n``). Coverage is at least ``level`` for every
    true proportion."""
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k / n``: ``(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def tango_paired(b: float, c: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Tango's score interval (1998) of a paired difference of proportions ``Δ = (c − b)/n``.

    ``b`` pairs base right / other wrong, ``c`` the other way round. For a candidate
    ``d = P(b-type) − P(c-type)`` the constrained maximum-likelihood ``q = P(c-type)`` solves
    ``2n q² − W q − c·d(1 − d) = 0`` with ``W = b + c − d(2n − b + c)``, and the score is::

        Z(d) = (b − c − n d) / √(n (2q + d − d²))

    The interval of ``d`` is ``{d : |Z(d)| ≤ z_{1−α/2}}`` (found by bisection; Z falls with d),
    and the interval of Δ is its mirror image. It depends on ``b``, ``c`` and ``n`` only, keeps
    its coverage at small n and with few discordant pairs (with none it is
    ``±z²/(n + z²)``, not a point), and is the interval Fagerland et al. (2014) recommend for
    paired proportions; tested against a simulation. ``b``, ``c``, ``n`` may be effective
    (non-integer) counts."""
    from scipy.stats import norm

    if n <= 0 or b < 0 or c < 0 or b + c > n * (1 + 1e-12):
        raise ValueError(f"inconsistent paired counts: n={n}, b={b}, c={c}")
    z = float(norm.ppf(0.5 + level / 2))

    def score(d: float) -> float:
        w = b + c - d * (2 * n - b + c)
        q = (w + math.sqrt(max(0.0, w * w + 8 * n * c * d * (1 - d)))) / (4 * n)
        var = n * (2 * q + d - d * d)
        diff = b - c - n * d
        if var <= 1e-300:
            return math.copysign(math.inf, diff) if diff else 0.0
        return diff / math.sqrt(var)

    def solve(lo: float, hi: float, target: float) -> float:
        for _ in range(64):  # score(lo) ≥ target ≥ score(hi); 2⁻⁶⁴ of the range
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if score(mid) > target else (lo, mid)
        return (lo + hi) / 2

    est = (b - c) / n
    d_lo = -1.0 if score(-1.0 + 1e-12) <= z else solve(-1.0 + 1e-12, est, z)
    d_hi = 1.0 if score(1.0 - 1e-12) >= -z else solve(est, 1.0 - 1e-12, -z)
    return -d_hi, -d_lo


# ---------------------------------------------------------------------- clustered outcomes


def effective_n(values: torch.Tensor, centre: float | None = None) -> float:
    """Kish effective sample size of a mean over examples × draws ``values`` ``[H, N]``.

    With per-example means ``v̄_i`` and the pooled mean ``v̄``::

        Var_cluster = Σ_i (v̄_i − v̄)² / (N (N − 1))      (examples are the independent units)
        Var_pooled  = (E[v²] − v̄²) / (N H)              (as if all N·H outcomes were independent)
        n_eff = N H · Var_pooled / Var_cluster = (E[v²] − v̄²) / Var_cluster

    clamped to ``[N, N·H]`` (a design effect between 1 and H); ``N`` when either variance is 0
    (nothing is known about the within-example correlation: the conservative choice). This
    is the Rao–Scott adjustment: a binomial interval on ``n_eff`` trials has the coverage of
    the clustered mean, and unlike a bootstrap it does not collapse to a point when every
    example agrees."""
    v = torch.as_tensor(values).double()
    if v.dim() == 1:
        v = v.unsqueeze(0)
    h, n = v.shape
    per = v.mean(0)
    mean = float(per.mean()) if centre is None else centre
    pooled = float((v**2).mean()) - mean**2
    if n < 2:
        return float(n)
    var_c = float(((per - per.mean()) ** 2).sum()) / (n * (n - 1))
    if pooled <= 1e-15 or var_c <= 1e-15:
        return float(n)
    return float(min(max(pooled / var_c, n), n * h))


def clustered_proportion_ci(ok: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """95 % interval of a survival rate over examples × draws ``ok`` ``[H, N]`` (0/1): the
    Wilson interval of ``p̂`` on the effective sample size of :func:`effective_n`."""
    v = torch.as_tensor(ok).double()
    ne = effective_n(v)
    p = float(v.mean())
    return wilson(p * ne, ne, level)


def clustered_paired(base: torch.Tensor, other: torch.Tensor, level: float = 0.95
                     ) -> tuple[tuple[float, float], float]:
    """Tango's paired interval for 0/1 outcomes ``[H, N]`` paired by example *and* draw (both
    sides see the same held-out draws), on the effective number of pairs of
    :func:`effective_n` applied to the differences; returns ``(interval, n_eff)``."""
    a = torch.as_tensor(base).double()
    o = torch.as_tensor(other).double()
    d = o - a
    ne = effective_n(d, centre=float(d.mean()))
    scale = ne / d.numel()
    b = float(((a == 1) & (o == 0)).sum()) * scale
    c = float(((a == 0) & (o == 1)).sum()) * scale
    return tango_paired(b, c, ne, level), ne
