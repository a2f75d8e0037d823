"""``neurodeploy compare``: joins audit.json files into tables (n, budget, threat model,
defense, robust accuracy with a 95 % interval) and a robust-accuracy plot with error bars."""

from __future__ import annotations

import json

import pytest

from neurodeploy.cli import main
from neurodeploy.cli.compare import compare_rows, figure, interval, threat_name, wilson


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _audit(acc_f: float, acc_d: float, energy: float | None, eps=(0.05, 0.1),
           unknown: bool = False, defense=None) -> dict:
    rows = [{"backend": b, "attack": "clean", "eps": 0.0, "accuracy": 0.9, "n": 10,
             "threat_model": "known draw"} for b in ("float", "deployed")]
    tms = ("known draw", "unknown draw") if unknown else ("known draw",)
    for tm in tms:
        for e in eps:
            extra = ({"draws": 5, "preset": "auto-demo:apgd-ce", "ci95": [0.25, 0.55]}
                     if tm == "unknown draw" else {"draws": 1, "preset": "auto"})
            rows += [{"backend": "float", "attack": "worst", "eps": e, "accuracy": acc_f, "n": 10,
                      "threat_model": tm, **extra},
                     {"backend": "deployed", "attack": "worst", "eps": e, "accuracy": acc_d,
                      "n": 10, "threat_model": tm, **extra}]
    d = {"format": "neurodeploy-audit", "meta": {"config": {"eot": 2, "attack_steps": 20}},
         "model": {"arch": "FC8-FC2"}, "profile": {"name": "loihi2"}, "accuracy": rows,
         "certified": {"eps": 0.05, "verified_error": 0.4,
                       "deployed": {"verified_error": 0.45}}}
    if defense is not None:
        d["model"]["defense"] = defense
    if energy is not None:
        d["efficiency"] = {
            "clean": {"deployed": {"totals": {"synaptic_operations": 123.0,
                                              "activation_sparsity": 0.8},
                                   "chip_fit": {"cores_used": 2}}},
            "ratio_adversarial_over_clean": {"deployed": {"synaptic_operations": 1.3}},
            "cost_clean": {"energy_per_inference_nj": energy, "latency_per_inference_us": 2.0,
                           "source": "Davies et al. 2018", "approximate": True}}
    return d


def _write(tmp_path, **audits) -> list[str]:
    paths = []
    for name, a in audits.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "audit.json").write_text(json.dumps(a))
        paths.append(str(tmp_path / name))
    return paths


def test_rows_pick_largest_common_eps_and_fields() -> None:
    prov = _audit(0.6, 0.6, 20.0, eps=(0.05,), defense="pgd-at")
    prov["model"]["defense_eps"] = 0.05
    eps, rows = compare_rows([("a", _audit(0.5, 0.4, 10.0, defense={"name": "fgsm-at",
                                                                     "eps": 2 / 255})),
                              ("b", _audit(0.6, 0.6, 20.0, eps=(0.05,))), ("c", prov)],
                             None, "known draw")
    assert eps == 0.05
    assert rows[0]["robust_deployed"] == 0.4 and rows[1]["robust_float"] == 0.6
    assert rows[0]["energy_nj"] == 10.0 and rows[0]["synops_ratio_adversarial"] == 1.3
    assert rows[0]["verified_error_deployed"] == 0.45 and rows[0]["cores_used"] == 2
    assert rows[0]["n"] == 10 and rows[0]["budget"] == "auto"
    assert rows[0]["defense"] == "fgsm-at (ε 0.00784 = 2/255)" and rows[1]["defense"] == "unknown"
    assert rows[2]["defense"] == "pgd-at (ε 0.05 = 12.8/255)"
    assert rows[0]["threat_model"] == "known draw"


def test_wilson_interval_values() -> None:
    """Wilson score intervals against published values (Newcombe 1998, Table I: 81/263 →
    0.2553–0.3662; 15/148 → 0.0624–0.1605) and the closed form at p̂ = 0."""
    lo, hi = wilson(81 / 263, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    lo, hi = wilson(15 / 148, 148)
    assert lo == pytest.approx(0.0624, abs=1e-4) and hi == pytest.approx(0.1605, abs=1e-4)
    z2 = 1.959963984540054 ** 2
    assert wilson(0.0, 20) == (0.0, pytest.approx(z2 / (20 + z2)))


def test_interval_prefers_the_audits_own() -> None:
    ci, how = interval({"accuracy": 0.4, "n": 10, "ci95": [0.25, 0.55],
                        "ci_method": "cluster bootstrap"})
    assert ci == [0.25, 0.55] and how == "cluster bootstrap"
    ci, how = interval({"accuracy": 0.5, "n": 10})
    assert ci == [pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4)]
    assert "Wilson" in how


@pytest.mark.parametrize("spelling", ["unknown", "unknown draw", "Unknown  Draw", "unknown-draw"])
def test_threat_spellings(spelling) -> None:
    assert threat_name(spelling) == "unknown draw"


def test_compare_cli_writes_tables_and_plot(tmp_path, capsys) -> None:
    paths = _write(tmp_path, plain=_audit(0.2, 0.1, 50.0), certified=_audit(0.6, 0.55, 80.0),
                   old=_audit(0.3, 0.3, None))
    out = tmp_path / "cmp"
    code, err = _cli(["compare", paths[0], paths[1] + "/audit.json", paths[2],
                      "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert [row["label"] for row in data["rows"]] == ["plain", "certified", "old"]
    assert data["eps"] == 0.1 and data["rows"][2]["energy_nj"] is None
    assert (out / "compare.png").stat().st_size > 1000
    html = (out / "compare.html").read_text()
    assert 'id="compare-plot"' in html and "certified" in html
    md = (out / "compare.md").read_text()
    assert "approximate" in md
    head = "| audit | model | defense | profile | threat model | n | attack budget |\n"
    assert head in md
    # 0.55 of 10 has the Wilson interval [27.4, 79.9] (computed by compare: no ci95 given)
    assert "| 55.0 % [27.4, 79.9] |" in md


def test_compare_repeated_label_and_unknown_draw(tmp_path, capsys) -> None:
    paths = _write(tmp_path, a=_audit(0.5, 0.4, 10.0, unknown=True),
                   b=_audit(0.6, 0.6, None, unknown=True))
    out = tmp_path / "cmp"
    code, err = _cli(["compare", *paths, "--label", "plain", "--label", "at", "--threat",
                      "unknown draw", "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in data["rows"]] == ["plain", "at"]
    assert data["threat_model"] == "unknown draw"
    row = data["rows"][0]
    assert row["robust_deployed_ci95"] == [0.25, 0.55]  # the audit's own interval
    assert row["budget"] == "auto-demo:apgd-ce (reduced), EoT 2, 5 draws"
    md = (out / "compare.md").read_text()
    assert "| plain |" in md and "| unknown draw |" in md and "40.0 % [25.0, 55.0]" in md
    code, err = _cli(["compare", *paths, "--threat", "unknown", "--out", str(out)], capsys)
    assert code == 0, err


def test_compare_eps_missing_is_exit_2_and_writes_nothing(tmp_path, capsys) -> None:
    paths = _write(tmp_path, a=_audit(0.5, 0.4, 10.0), b=_audit(0.6, 0.6, 20.0, eps=(0.05,)))
    out = tmp_path / "cmp"
    code, err = _cli(["compare", *paths, "--eps", "0.1", "--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --eps 0.1 (known draw): not in audit b")
    assert not out.exists()
    code, err = _cli(["compare", *paths, "--eps", "0.2", "--out", str(out)], capsys)
    assert code == 2 and "not in audit a, b" in err and not out.exists()
    # an audit without the unknown draw: no common ε under it
    code, err = _cli(["compare", *paths, "--threat", "unknown", "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error: no ε common to every audit under the unknown")
    code, err = _cli(["compare", *paths, "--threat", "sometimes", "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--threat 'sometimes'" in err


def test_figure_has_ci_error_bars_on_a_0_to_100_axis() -> None:
    import matplotlib.pyplot as plt

    for energies in ((10.0, 20.0), (None, None)):  # energy axis / one column per audit
        eps, rows = compare_rows([("a", _audit(0.5, 0.4, energies[0])),
                                  ("b", _audit(0.6, 0.55, energies[1]))], 0.1, "known draw")
        fig = figure(eps, "known draw", rows)
        ax = fig.axes[0]
        assert ax.get_ylim() == (0.0, 100.0)
        bars = ax.containers
        assert len(bars) == 2  # float and deployed, each an ErrorbarContainer
        for c, side in zip(bars, ("float", "deployed"), strict=True):
            segs = c.lines[2][0].get_segments()
            got = sorted((round(s[0][1], 1), round(s[1][1], 1)) for s in segs)
            want = sorted((round(100 * r[f"robust_{side}_ci95"][0], 1),
                           round(100 * r[f"robust_{side}_ci95"][1], 1)) for r in rows)
            assert got == want
        plt.close(fig)


def test_compare_refuses_what_is_not_an_audit(tmp_path, capsys) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{\"a\": 1}")
    code, err = _cli(["compare", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not an audit report" in err
    code, err = _cli(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("opt", [["--labels", "one"], ["--label", "one"],
                                 ["--label", "a", "--labels", "a,b"]])
def test_compare_labels_must_match(tmp_path, opt, capsys) -> None:
    for n in ("a", "b"):
        (tmp_path / f"{n}.json").write_text(json.dumps(_audit(0.5, 0.5, 1.0)))
    code, err = _cli(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), *opt,
                      "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--label" in err and err.count("\n") == 1


@pytest.mark.browser
def test_compare_html_fits_800_and_1280_px(tmp_path, capsys) -> None:
    """The tables fit a narrow window and a laptop screen, no word or number broken."""
    from browser_probe import chromium, probe

    if chromium() is None:
        pytest.skip("chromium not installed (scripts/install_browser.sh installs Debian's chromium)")
    paths = _write(tmp_path, plain=_audit(0.2, 0.1, 50.0, unknown=True),
                   **{"certified-training": _audit(0.6, 0.55, 80.0, unknown=True,
                                                   defense={"name": "certified", "eps": 0.05})},
                   old=_audit(0.3, 0.3, None, unknown=True))
    code, err = _cli(["compare", *paths, "--threat", "unknown", "--out", str(tmp_path / "c")],
                     capsys)
    assert code == 0, err
    for width in (800, 1280):
        got = probe(tmp_path / "c" / "compare.html", width, tmp_path / "profile")
        assert got["broken"] == [] and got["wide"] == [] and got["page"] <= width, (width, got)
        assert set(got["tables"]) == {"compare-audits", "compare-robust", "compare-cost"}
