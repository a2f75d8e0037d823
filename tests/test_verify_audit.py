"""The exact verifier inside the audit (issue 22): certified ≤ exact ≤ attack per side and ε,
the exact figure used when every example is decided, the attacks' completeness, unknowns and
soundness violations never reported as robust, the options validated and fingerprinted."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit import flow
from neurodeploy.audit.exact import exact_row, side_summary
from neurodeploy.audit.report import verdict_is_bad, verdicts
from neurodeploy.audit.run import AuditConfig
from neurodeploy.audit.stats import clopper_pearson
from neurodeploy.cli import main
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError

EPS = 0.05


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A tiny digits model audited with FGSM only (a weak attack: it misses a counterexample
    the verifier finds) and the exact stage; the run object kept for the row tests."""
    torch.manual_seed(0)
    clf = train_digits_snn(encoding="bernoulli", arch="FC16-FC10", num_steps=4, epochs=2,
                           readout="rate")
    test = load_digits_split().test
    cfg = AuditConfig(eps=(EPS,), attacks=("fgsm",), threat_models=("known",), samples=16,
                      lava_samples=0, certify=False, masking_checks=False, exact=True,
                      exact_timeout=5.0, seed=1)
    out = tmp_path_factory.mktemp("exact_audit")
    run = flow.prepare(clf.model.eval(), test.x, test.y, "loihi2", cfg, out, None, None, True,
                       None)
    for stage in flow.STAGES:
        stage(run)
    report = flow.finish(run, flow.now())
    return run, report, out


def test_exact_figure_replaces_the_attack_bound(audited) -> None:
    run, report, out = audited
    n = run.n
    for side in ("float", "deployed"):
        ex = exact_row(run.exact, side, EPS)
        st = [r["status"] for r in ex["examples"]]
        assert len(st) == n and ex["decided_fraction"] == 1.0 and "unknown" not in st
        k = st.count("robust")
        attack = run.evals[side].flags[EPS].all(0)
        # the sandwich on the audit's own maps: certified ≤ exact ≤ attack, consistent
        assert ex["certified"] <= k / n <= ex["attack"] == float(attack.float().mean())
        assert ex["sound"] and ex["use_exact"] and ex["exact"] == k / n
        row = report.lookup(side, "worst", EPS, "known draw")
        assert row.exact and not row.upper_bound and row.accuracy == k / n
        assert row.ci95 == list(clopper_pearson(k, n))  # only the sampling interval
        # every counterexample is inside the ε-ball and misclassified
        for r, x in zip(ex["examples"], run.x.reshape(n, -1).numpy(), strict=True):
            if r["status"] == "non_robust" and r["how"] != "clean":
                img = np.asarray(r["counterexample"], np.float32)
                assert np.abs(img - x).max() <= EPS + 1e-6 and r["predicted"] != r["label"]
    lines = [v for v in report.verdicts if v.startswith("Robust accuracy")]
    assert len(lines) == 1 and lines[0].count("(exact)") == 2 and "upper bound" not in lines[0]
    # the comparison pairs the exact per-example verdicts
    flags = {s: torch.tensor([r["status"] == "robust" for r in
                              exact_row(run.exact, s, EPS)["examples"]]) for s in ("float",
                                                                                     "deployed")}
    cmp = report.comparison("known draw", EPS)
    assert cmp["b"] == int((flags["float"] & ~flags["deployed"]).sum())
    assert cmp["c"] == int((~flags["float"] & flags["deployed"]).sum())


def test_completeness_counts_what_the_attack_missed(audited) -> None:
    run, report, _ = audited
    missed_somewhere = False
    for side in ("float", "deployed"):
        ex = exact_row(run.exact, side, EPS)
        st = np.array([r["status"] for r in ex["examples"]])
        att = run.evals[side].flags[EPS].all(0).numpy()
        non_robust = st == "non_robust"
        found = int((non_robust & ~att).sum())
        c = ex["completeness"]
        assert c["non_robust"] == int(non_robust.sum()) and c["found_by_attack"] == found
        assert c["fraction"] == pytest.approx(found / non_robust.sum())
        assert c["missed_by_attack"] == np.nonzero(non_robust & att)[0].tolist()
        missed_somewhere |= bool(c["missed_by_attack"])
    assert missed_somewhere, "FGSM alone should miss a verified counterexample here"
    text = "\n".join(report.verdicts)
    assert "attack completeness" in text and "non-robust found" in text


def test_report_files_and_compare(audited, tmp_path) -> None:
    _, report, out = audited
    rec = json.loads((Path(out) / "audit.json").read_text())
    rows = rec["exact"]["rows"]
    assert {(r["side"], r["eps"]) for r in rows} == {("float", EPS), ("deployed", EPS)}
    assert rec["exact"]["lava_replay"]["run"] is False
    assert all(r["lava_replayed"] is False for r in rows[1]["examples"])
    assert "Exact verification (known draw)" in (Path(out) / "audit.md").read_text()
    assert "id='exact'" in (Path(out) / "audit.html").read_text()
    assert main(["compare", str(out), str(out), "--label", "a", "--label", "b",
                 "--out", str(tmp_path / "cmp"), "-q"]) == 0


def _rerow(run, side: str, status: list[str]):
    """``run`` with (side, ε)'s verdicts replaced by ``status`` and the rows rebuilt."""
    r2 = copy.copy(run)
    r2.exact = copy.deepcopy(run.exact)
    ex = exact_row(r2.exact, side, EPS)
    for rec, s in zip(ex["examples"], status, strict=True):
        rec["status"] = s
    ex.update(side_summary(status, None, run.evals[side].flags[EPS].all(0).numpy()))
    r2.rows, r2.comparisons = [], []
    flow.rows_stage(r2)
    return r2


def test_unknowns_never_count_robust(audited) -> None:
    run, report, _ = audited
    st = [r["status"] for r in exact_row(run.exact, "deployed", EPS)["examples"]]
    i = st.index("non_robust")
    st[i] = "unknown"
    r2 = _rerow(run, "deployed", st)
    ex = exact_row(r2.exact, "deployed", EPS)
    k = st.count("robust")
    assert ex["exact"] is None and not ex["use_exact"]
    assert ex["exact_interval"] == [k / run.n, (k + 1) / run.n]
    row = next(r for r in r2.rows if r.backend == "deployed" and r.eps == EPS)
    attack = float(run.evals["deployed"].flags[EPS].all(0).float().mean())
    assert not row.exact and row.accuracy == attack and row.upper_bound  # the attack's bound
    assert row.exact_interval == ex["exact_interval"]
    rep = copy.copy(report)
    rep.accuracy, rep.exact, rep.comparisons = r2.rows, r2.exact, r2.comparisons
    text = "\n".join(verdicts(rep))
    assert "1 undecided (never counted robust)" in text and "upper bound; exact [" in text


def test_soundness_violation_is_reported_not_used(audited) -> None:
    run, report, _ = audited
    att = run.evals["deployed"].flags[EPS].all(0).numpy()
    st = [r["status"] for r in exact_row(run.exact, "deployed", EPS)["examples"]]
    j = int(np.nonzero(~att)[0][0])  # an example the attack broke, claimed robust
    st[j] = "robust"
    r2 = _rerow(run, "deployed", st)
    ex = exact_row(r2.exact, "deployed", EPS)
    assert not ex["sound"] and ex["violations"]["robust_but_attacked"] == [j]
    row = next(r for r in r2.rows if r.backend == "deployed" and r.eps == EPS)
    assert not row.exact
    rep = copy.copy(report)
    rep.accuracy, rep.exact, rep.comparisons = r2.rows, r2.exact, r2.comparisons
    lines = verdicts(rep)
    assert any("SOUNDNESS VIOLATION" in v and f"[{j}]" in v for v in lines)
    assert verdict_is_bad(lines)


def test_side_summary_arithmetic() -> None:
    st = ["robust", "non_robust", "unknown", "non_robust", "robust"]
    att = np.array([True, False, True, True, True])
    cert = np.array([True, False, False, False, False])
    s = side_summary(st, cert, att)
    assert s["exact"] is None and s["exact_interval"] == [0.4, 0.6]
    assert s["decided_fraction"] == 0.8 and s["certified"] == 0.2 and s["attack"] == 0.8
    assert s["completeness"] == {"found_by_attack": 1, "non_robust": 2, "fraction": 0.5,
                                 "missed_by_attack": [3]}
    assert s["sound"] and not s["use_exact"]


def test_exact_options_validated_and_fingerprinted(tmp_path, capsys) -> None:
    from neurodeploy.audit.sides import fingerprint

    for bad in (dict(exact_timeout=0), dict(exact_timeout=float("nan")),
                dict(exact_timeout=True), dict(exact="yes")):
        with pytest.raises(ConfigError, match="exact"):
            AuditConfig(**bad)
    rc = main(["audit", "--model", str(tmp_path / "none.pt"), "--exact", "--exact-timeout",
               "-1", "--out", str(tmp_path / "a")])
    assert rc == 2 and not (tmp_path / "a").exists()
    assert capsys.readouterr().err.strip().startswith(("error:", "usage:"))
    from neurodeploy.models import ModelConfig, build_model
    from neurodeploy.sims.emulator import random_fc_plan

    model = build_model(ModelConfig("FC4-FC3", (5,), num_steps=2))
    plan = random_fc_plan(np.random.default_rng(0), (5, 4, 3), num_steps=2)
    x, y = torch.zeros(2, 5), torch.zeros(2, dtype=torch.long)
    keys = {fingerprint(model, plan, AuditConfig(**kw), x, y)
            for kw in (dict(), dict(exact=True), dict(exact=True, exact_timeout=3.0))}
    assert len(keys) == 3


def test_verify_draws_reports_a_ci(tmp_path) -> None:
    """``verify --draws K``: the unknown-draw lower bound with its 95 % Wilson interval."""
    from neurodeploy.cli.verify import wilson
    from neurodeploy.sims.emulator import random_fc_plan

    plan = random_fc_plan(np.random.default_rng(3), (64, 8, 10), num_steps=3)
    plan.save(tmp_path / "p.npz")
    out = tmp_path / "v.json"
    assert main(["verify", "--plan", str(tmp_path / "p.npz"), "--eps", "0.02", "--samples", "3",
                 "--timeout", "5", "--draws", "2", "--no-lava", "--out", str(out), "-q"]) == 0
    ud = json.loads(out.read_text())["unknown_draw"]
    assert ud["pairs"] == 6 and ud["lower_bound"] == ud["robust_pairs"] / 6
    assert ud["ci95"] == list(wilson(ud["robust_pairs"], 6))
    assert ud["ci95"][0] <= ud["lower_bound"] <= ud["ci95"][1]


@pytest.mark.parametrize("lines", ['exact = "yes"', "exact = true\nexact_timeout = -3"])
def test_pipeline_config_exact_keys_checked_before_work(tmp_path, capsys, lines) -> None:
    """``[audit] exact`` / ``exact_timeout`` in a pipeline config: bad values exit 2 before
    the first stage."""
    src = (Path(__file__).resolve().parents[1] / "configs" / "digits.toml").read_text()
    cfg = tmp_path / "c.toml"
    cfg.write_text(src.replace("\n[audit]\n", f"\n[audit]\n{lines}\n"))
    assert main(["pipeline", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "exact" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_resumed_audit_reuses_the_exact_verdicts(audited, monkeypatch) -> None:
    """The verdicts are kept in the audit's state folder: a resumed audit (same config, data
    and out folder) reads them back instead of solving again, with the same report rows."""
    import neurodeploy.verify as V
    from neurodeploy.verify import float_milp

    run, report, out = audited

    def boom(*a, **k):
        raise AssertionError("solved again instead of reading the state folder")

    monkeypatch.setattr(V, "verify_plan", boom)
    monkeypatch.setattr(float_milp, "verify_float_example", boom)
    run2 = flow.prepare(run.model, run.x, run.y, "loihi2", run.config, out, None, None, True,
                        None)
    assert run2.state_dir == run.state_dir
    for stage in flow.STAGES:
        stage(run2)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(run2.exact["rows"]) == strip(json.loads(json.dumps(run.exact["rows"])))
    assert [(r.backend, r.accuracy, r.exact) for r in run2.rows] == \
        [(r.backend, r.accuracy, r.exact) for r in run.rows]


@pytest.mark.browser
def test_exact_table_fits_the_window(audited, tmp_path) -> None:
    """The exact section keeps words whole and fits an 800 px and a 1280 px window."""
    from browser_probe import chromium, probe

    if chromium() is None:
        pytest.skip("chromium not installed")
    _, _, out = audited
    for width in (800, 1280):
        got = probe(Path(out) / "audit.html", width, tmp_path / f"profile{width}")
        assert "exact" in got["tables"] and got["tables"]["exact"] <= width
        assert got["broken"] == [] and got["wide"] == [], (width, got)
