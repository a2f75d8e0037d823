"""Equivalence verdicts with a margin, the intervals behind them and the sample-size
computation — against hand-worked cases and simulations (issue 20, points 1, 2, 5, 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm

from neurodeploy.audit.provenance import checkpoint_provenance, eps_words
from neurodeploy.audit.report import AccuracyRow, AuditReport, Check, checks_cell, verdicts
from neurodeploy.audit.stats import (
    clopper_pearson,
    clustered_proportion_ci,
    effective_n,
    paired_change,
    tango_paired,
)
from neurodeploy.audit.verdict import detectable_drop, judge, settling_n

Z = norm.ppf(0.975)


def test_issue_example_twenty_samples_is_inconclusive_not_survived():
    """The issue's 20-sample audit: float 85 %, chip 75 % (b = 3, c = 1, McNemar p = 0.625) was
    called "survived"; with δ = 5 points it is inconclusive and says what would settle it."""
    base = torch.tensor([1] * 17 + [0] * 3)
    other = base.clone()
    other[[0, 1, 2]] = 0
    other[17] = 1
    ch = paired_change(base, other, margin=0.05)
    eq = ch.equivalence
    assert (ch.b, ch.c, ch.delta) == (3, 1, pytest.approx(-0.1))
    assert eq["outcome"] == "inconclusive" and ch.ci95[0] < -0.05 < 0 < ch.ci95[1]
    assert eq["n_to_settle"] == settling_n(0.2, 0.05) > 20
    zz = Z + norm.ppf(0.8)  # at n = 20 the z²/n floor (a drop needs its discordant pairs) rules
    assert eq["detectable_drop"] == pytest.approx(max(zz * math.sqrt(0.2 / 20), zz**2 / 20))
    assert eq["detectable_drop"] == pytest.approx(zz**2 / 20)
    assert ch.words.startswith("inconclusive (Δ −10.0 points, 95 % CI [")
    assert f"about {eq['n_to_settle']} samples would settle it" in ch.words
    assert "survived" not in ch.words


@pytest.mark.parametrize("delta, ci, robust, outcome, phrase", [
    (0.0, (-0.03, 0.03), True, "survived", "survived (Δ ≥ −5 points with 95 % confidence"),
    (-0.02, (-0.04, -0.005), True, "survived", "dropped by 2.0 points, within the margin"),
    (-0.1, (-0.15, -0.05), True, "dropped", "dropped by 10.0 points (Δ −10.0 points"),
    (-0.03, (-0.07, 0.01), True, "inconclusive", "inconclusive"),
    (0.1, (0.06, 0.14), True, "better beyond margin", "masking suspect"),
    (0.1, (0.06, 0.14), False, "better beyond margin", "check the deployment"),
    (0.04, (0.01, 0.07), True, "survived", "survived"),  # better, but not beyond +δ
])
def test_judge_rules(delta, ci, robust, outcome, phrase):
    eq = judge(delta, ci, 100, 0.1, 0.05, robust=robust)
    assert eq.outcome == outcome and phrase in eq.words
    assert (eq.n_to_settle is None) == (outcome != "inconclusive")


def test_margin_changes_the_verdict():
    assert judge(-0.03, (-0.07, 0.01), 100, 0.1, 0.05).outcome == "inconclusive"
    assert judge(-0.03, (-0.07, 0.01), 100, 0.1, 0.08).outcome == "survived"
    with pytest.raises(ValueError):
        judge(0.0, (0.0, 0.0), 10, 0.0, 0.0)


def test_tango_hand_cases():
    """No discordant pair: Z(d) = −√(n d / (1 − d)), so the bounds are ±z²/(n + z²) — not a
    point, whatever the accuracies (the interval depends on b, c, n only)."""
    lo, hi = tango_paired(0, 0, 73)
    assert lo == pytest.approx(-Z**2 / (73 + Z**2), rel=1e-9) and hi == pytest.approx(Z**2 / (73 + Z**2))
    # all n pairs discordant one way: Δ = −1 is inside, the upper bound solves Z(d) = z
    lo, hi = tango_paired(10, 0, 10)
    assert lo == -1.0 and -1 < hi < 0
    # symmetric: swapping b and c mirrors the interval
    a, b = tango_paired(7, 2, 40), tango_paired(2, 7, 40)
    assert a == pytest.approx((-b[1], -b[0]))
    with pytest.raises(ValueError):
        tango_paired(5, 6, 10)


@pytest.mark.parametrize("n, p10, p01", [(20, 0.1, 0.05), (24, 0.05, 0.0), (60, 0.05, 0.05),
                                         (200, 0.08, 0.02), (30, 0.0, 0.0), (40, 0.02, 0.0)])
def test_tango_coverage_simulation(n, p10, p01):
    """Including few discordant pairs (p01 = 0: many samples have b = c = 0), where a
    correlation-adjusted Wilson hybrid collapses to a point and under-covers."""
    rng = np.random.default_rng(1)
    truth = p01 - p10
    hits = 0
    for _ in range(800):
        a, b, c, d = rng.multinomial(n, [0.8 - p10, p10, p01, 0.2 - p01])
        lo, hi = tango_paired(int(b), int(c), n)
        hits += lo - 1e-9 <= truth <= hi + 1e-9
    assert hits / 800 >= 0.93


@pytest.mark.parametrize("m2, pb", [(0.02, 0.9), (0.1, 0.8), (0.3, 0.5), (0.05, 0.95)])
def test_settling_n_has_its_power_in_simulation(m2, pb):
    """At n* the audit's own interval clears −δ in about 80 % of simulated audits whose true
    change is 0 with discordance m₂."""
    n = settling_n(m2, 0.05)
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(300):
        a, b, c, d = rng.multinomial(n, [pb - m2 / 2, m2 / 2, m2 / 2, 1 - pb - m2 / 2])
        hits += tango_paired(int(b), int(c), n)[0] >= -0.05
    assert 0.72 <= hits / 300 <= 0.92, (n, hits / 300)


def test_detectable_drop_has_its_power_in_simulation():
    n, m2 = 400, 0.3
    d = detectable_drop(m2, n)
    p10, p01 = (m2 + d) / 2, (m2 - d) / 2
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(300):
        a, b, c, dd = rng.multinomial(n, [0.6 - p10, p10, p01, 0.4 - p01])
        hits += tango_paired(int(b), int(c), n)[1] < 0
    assert 0.75 <= hits / 300 <= 0.95
    assert detectable_drop(0.0, 100) == pytest.approx((Z + norm.ppf(0.8)) ** 2 / 100)


def test_clopper_pearson_matches_scipy_and_hand_cases():
    for k, n in [(0, 20), (20, 20), (7, 24), (13, 100)]:
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert clopper_pearson(0, 20)[1] == pytest.approx(1 - 0.025 ** (1 / 20))


def test_effective_n_between_examples_and_examples_times_draws():
    per = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    same = per.repeat(5, 1)                      # every draw repeats the example: n_eff = N
    assert effective_n(same) == pytest.approx(6)
    assert effective_n(torch.ones(5, 6)) == 6    # nothing varies: the conservative N
    g = torch.Generator().manual_seed(0)
    iid = (torch.rand(20, 400, generator=g) < 0.6).float()  # no clustering: ≈ N·H
    assert effective_n(iid) > 0.7 * iid.numel()


def test_clustered_interval_coverage_simulation():
    """Examples with their own survival rate p_i ~ Beta(2, 1), H = 5 draws each."""
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(400):
        p = rng.beta(2, 1, size=40)
        ok = torch.from_numpy(rng.random((5, 40)) < p).float()
        lo, hi = clustered_proportion_ci(ok)
        hits += lo <= 2 / 3 <= hi
    assert hits / 400 >= 0.92


def test_checks_count_only_on_the_row_they_ran_on():
    """Checks that ran on (known draw, ε = 0.1) back only that row: the others say "not run"
    and their robust accuracies are upper bounds, however well the checks went."""
    rows = [AccuracyRow("float", "clean", 0.0, 0.9, 100), AccuracyRow("deployed", "clean", 0.0, 0.9, 100)]
    comps = [{"threat_model": "known draw", "eps": 0.0, "delta": 0.0, "ci95": [-0.02, 0.02],
              "n": 100, "b": 1, "c": 1, "p_value": 1.0}]
    for tm in ("known draw", "unknown draw"):
        for e in (0.05, 0.1):
            rows += [AccuracyRow(s, "worst", e, 0.6, 100, threat_model=tm, preset="auto")
                     for s in ("float", "deployed")]
            comps.append({"threat_model": tm, "eps": e, "delta": 0.0, "ci95": [-0.02, 0.02],
                          "n": 100, "b": 1, "c": 1, "p_value": 1.0})
    checks = [Check("unbounded_attack_succeeds", True, "ok", {}, s, threat_model="known draw",
                    eps=0.1) for s in ("float", "deployed")]
    rep = AuditReport(meta={"samples": 100}, model={}, profile={"name": "loihi2"}, accuracy=rows,
                      checks=checks, comparisons=comps)
    assert checks_cell(checks, "known draw", 0.1) == "float: 1/1 passed; deployed: 1/1 passed"
    assert checks_cell(checks, "unknown draw", 0.1) == "float: not run; deployed: not run"
    robust = [v for v in verdicts(rep) if v.startswith("Robust accuracy")]
    judged = [v for v in robust if "robustness survived" in v]
    assert len(robust) == 4 and len(judged) == 1 and "ε=0.1 (known draw" in judged[0]
    assert all("(upper bound)" in v and "no gradient-masking checks ran on this row" in v
               for v in robust if v not in judged)


def test_checkpoint_provenance_of_an_fgsm_at_checkpoint_is_not_none():
    from neurodeploy.training.defense import make_defense

    d = make_defense("fgsm-at")
    prov = checkpoint_provenance({"extra": {"defense": d.checkpoint_extra(), "epoch": 3,
                                            "train_config": {"epochs": 3}}})
    assert prov["defense"] == "fgsm-at" and prov["epochs"] == 3
    assert prov["defense_eps"] == pytest.approx(2 / 255)
    assert checkpoint_provenance(None) == {} and checkpoint_provenance({"extra": {}}) == {}
    assert eps_words(2 / 255) == "0.00784314 (≈ 2/255)" and eps_words(0.05) == "0.05 (≈ 12.8/255)"


def test_audit_margin_out_of_range_exits_2(tmp_path, capsys):
    from neurodeploy.cli import main

    rc = main(["audit", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"),
               "--margin", "0", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --margin must be in (0, 100)")
    assert not (tmp_path / "o").exists()


def test_exact_stage_is_an_optional_slot(monkeypatch):
    """Without a verifier the results' ``exact`` stays None; a registered one fills it."""
    from types import SimpleNamespace

    from neurodeploy.audit import flow

    run = SimpleNamespace(exact=None, timed=lambda name, t0: None)
    flow.exact_stage(run)
    assert run.exact is None and flow.exact_stage in flow.STAGES
    monkeypatch.setattr(flow, "EXACT_VERIFIER", lambda r: {"verified": 3, "of": 4})
    flow.exact_stage(run)
    assert run.exact == {"verified": 3, "of": 4}
    rep = AuditReport(meta={}, model={}, profile={}, exact=run.exact)
    assert AuditReport.from_dict(rep.to_dict()).exact == {"verified": 3, "of": 4}
