"""Paired statistics of the audit against hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch

from neurodeploy.audit.stats import (
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_change,
    t_interval,
)


def test_mcnemar_b3_c10_by_hand():
    # n = 13 discordant pairs, P[X <= 3] = (1 + 13 + 78 + 286) / 2^13 = 378 / 8192
    assert mcnemar_exact(3, 10) == pytest.approx(2 * 378 / 8192, abs=0, rel=1e-15)
    assert mcnemar_exact(10, 3) == mcnemar_exact(3, 10)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0  # the two-sided p-value is capped at 1
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_mcnemar_matches_scipy_binomtest():
    from scipy.stats import binomtest

    for b in range(0, 15):
        for c in range(0, 15):
            if b + c == 0:
                continue
            assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_bootstrap_hand_cases():
    # every pair changes by the same amount: every resample gives that amount
    assert paired_bootstrap_ci(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1]), seed=3) == (1.0, 1.0)
    assert paired_bootstrap_ci(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]), seed=3) == (0.0, 0.0)
    # d = other − base = [0, 1]: resample means are 0, 1/2, 1 with probability 1/4, 1/2, 1/4, so
    # the 2.5 % and 97.5 % order statistics of 2000 resamples are 0 and 1 (a 2.5 % tail would
    # need fewer than 50 of the ~500 expected all-0 / all-1 resamples)
    assert paired_bootstrap_ci(torch.tensor([1, 0]), torch.tensor([1, 1]), seed=0) == (0.0, 1.0)
    # d = [0, 0, 1]: all-zero resamples have probability 8/27 > 2.5 %, all-one 1/27 > 2.5 %
    assert paired_bootstrap_ci(torch.tensor([1, 0, 0]), torch.tensor([1, 0, 1]), seed=7) == (0.0, 1.0)
    # seeded: same seed, same interval
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(60, generator=g) < 0.6).int()
    b = (torch.rand(60, generator=g) < 0.5).int()
    assert paired_bootstrap_ci(a, b, seed=11) == paired_bootstrap_ci(a, b, seed=11)


def test_paired_change_words():
    base = torch.tensor([1] * 50 + [0] * 50)
    same = base.clone()
    same[0], same[99] = 0, 1  # b = 1, c = 1
    ch = paired_change(base, same, seed=0)
    assert (ch.b, ch.c, ch.delta, ch.p_value, ch.significant) == (1, 1, 0.0, 1.0, False)
    assert ch.words.startswith("no detectable change (Δ +0.0 points, 95 % CI [")
    assert ch.words.endswith("McNemar p = 1)")
    drop = base.clone()
    drop[:12] = 0  # b = 12, c = 0: p = 2 / 2^12
    ch = paired_change(base, drop, seed=0)
    assert ch.b == 12 and ch.c == 0 and ch.p_value == pytest.approx(2 / 4096)
    assert ch.significant and ch.words.startswith("dropped by 12.0 points (95 % CI [−")
    assert ch.ci95[1] < 0
    # fractions (unknown draw: robust in k of d draws): bootstrap only
    fr = paired_change(torch.full((10,), 0.6), torch.full((10,), 0.4), seed=0)
    assert fr.p_value is None and fr.b is None and fr.significant
    assert fr.ci95 == pytest.approx((-0.2, -0.2)) and "paired bootstrap" in fr.words


def test_t_interval_by_hand():
    mean, ci = t_interval([0.5, 0.6, 0.7, 0.8, 0.9])
    sd = math.sqrt(0.1 / 4)  # Σ(v − 0.7)² = 0.1
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t_{0.975, 4}
    assert mean == pytest.approx(0.7)
    assert ci == pytest.approx((0.7 - half, 0.7 + half))
    assert t_interval([0.3]) == (0.3, None)
