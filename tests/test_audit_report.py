"""The audit report: JSON round trip, verdicts derived from numbers, HTML rendered in a real
headless browser with its plots visible."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from browser_probe import chromium, probe

from neurodeploy.audit.report import (
    AccuracyRow,
    AuditReport,
    Check,
    LayerRow,
    ThresholdTrace,
    verdicts,
)

CHECK_NAMES = ("iterative_beats_single_step", "whitebox_beats_blackbox", "accuracy_falls_with_eps",
               "unbounded_attack_succeeds", "gradient_matches_finite_differences",
               "nonzero_gradients_eval")


def _report(drop: float = 0.072, significant: bool = True, failing: tuple = ()) -> AuditReport:
    """A report of 100 samples, ε ∈ {0.05, 0.1}, both threat models; ``failing``: (side, check)
    pairs whose check fails."""
    n = 100
    rows = [AccuracyRow("float", "clean", 0.0, 0.95, n), AccuracyRow("deployed", "clean", 0.0, 0.94, n)]
    comparisons = [{"threat_model": "known draw", "eps": 0.0, "delta": -0.01, "ci95": [-0.03, 0.01],
                    "b": 2, "c": 1, "p_value": 1.0, "significant": False,
                    "words": "no detectable change (Δ −1.0 points, 95 % CI [−3.0, +1.0], McNemar p = 1)"}]
    for tm in ("known draw", "unknown draw"):
        for eps, acc in ((0.05, 0.80), (0.1, 0.712)):
            ci = None if tm == "known draw" else [acc - 0.02, acc + 0.02]
            draws = 1 if tm == "known draw" else 5
            rows.append(AccuracyRow("float", "worst", eps, acc, n, ci95=ci, threat_model=tm,
                                    preset="auto", draws=draws, checks="6/6 passed"))
            rows.append(AccuracyRow("deployed", "worst", eps, acc - drop, n, ci95=ci,
                                    threat_model=tm, preset="auto", draws=draws, checks="6/6 passed"))
            comparisons.append({"threat_model": tm, "eps": eps, "delta": -drop,
                                "ci95": [-drop - 0.03, -drop + 0.03], "b": 9, "c": 2,
                                "p_value": 0.0327 if significant else 0.4,
                                "significant": significant, "words": "WORDS"})
    checks = [Check(name, (side, name) not in failing, f"{name} numbers", {"x": 1}, side)
              for side in ("float", "deployed") for name in CHECK_NAMES]
    return AuditReport(
        meta={"seed": 0, "samples": n, "git_sha": "abc1234", "versions": {"torch": "x"},
              "budget": "auto", "threat_models": ["known draw", "unknown draw"]},
        model={"arch": "FC64-FC10", "num_steps": 10},
        profile={"name": "loihi2", "display_name": "Loihi 2"},
        accuracy=rows,
        layers=[LayerRow("layer1", 64, 0.991, 0.991, 0.1, 0.1, 0.004, 0.001),
                LayerRow("layer2", 10, 0.985, 0.985, 0.2, 0.21, 0.003, 0.002)],
        thresholds=[ThresholdTrace("layer1", [0.25 + 0.01 * t for t in range(10)],
                                   [0.25 + 0.0099 * t for t in range(10)])],
        checks=checks,
        resources={"layers": [{"layer": 1, "token": "FC64", "neurons_per_core": [64]},
                              {"layer": 2, "token": "FC10", "neurons_per_core": [10]}],
                   "limits": {"neurons_per_core": 8192}, "cores_used": 2, "cores_available": 128},
        comparisons=comparisons,
        replay={"lava_samples": 10, "replays": 30, "agree": 30,
                "lava_vs_emulator_spike_mismatches": 0,
                "per_input": {"clean": {"agree": 10, "replays": 10},
                              "eps=0.05": {"agree": 10, "replays": 10},
                              "eps=0.1": {"agree": 10, "replays": 10}}},
    )


def test_verdict_lines_follow_the_numbers():
    text = "\n".join(verdicts(_report()))
    # Δ −7.2 with the interval [−10.2, −4.2] wholly below 0: dropped (the margin is 5 points)
    assert ("Robust accuracy at ε=0.1 (known draw, auto): float (snntorch) 71.2 %, Loihi 2 fixed "
            "point (bit-exact emulator) 64.0 %: robustness dropped by 7.2 points (Δ −7.2 points, "
            "95 % CI [−10.2, −4.2], margin δ = 5 points) (McNemar p = 0.033)") in text
    assert "(unknown draw, auto): float (snntorch) 71.2 % [69.2, 73.2]" in text
    assert "upper bound" not in text and "inconclusive" not in text
    ok = "\n".join(verdicts(_report(drop=0.0, significant=False)))
    # Δ 0 with [−3, +3]: the lower end is above −δ = −5 points
    assert "dropped" not in ok and ok.count(
        "robustness survived (Δ ≥ −5 points with 95 % confidence; Δ +0.0 points, 95 % CI "
        "[−3.0, +3.0], margin δ = 5 points)") == 4
    assert "equivalence margin δ = 5 points" in ok
    assert "emulator ≡ Lava on 30 of 30 replays" in ok
    assert "Attacks (per-example worst case of the cascade): auto; the same 100 samples" in ok


@pytest.mark.parametrize("float_fail", [(), *[(n,) for n in CHECK_NAMES]])
@pytest.mark.parametrize("dep_fail", [(), *[(n,) for n in CHECK_NAMES], CHECK_NAMES[:3]])
@pytest.mark.parametrize("significant", [False, True])
def test_verdict_gating_failing_check_never_survives(float_fail, dep_fail, significant):
    """Every combination of one failing check (or none, or several) per side: "survived" only
    when no check failed; otherwise every robust-accuracy line is inconclusive, names each
    failing check and side, and calls its accuracies upper bounds."""
    failing = tuple(("float", c) for c in float_fail) + tuple(("deployed", c) for c in dep_fail)
    lines = verdicts(_report(drop=0.0 if not significant else 0.072, significant=significant,
                             failing=failing))
    robust = [v for v in lines if v.startswith("Robust accuracy")]
    assert len(robust) == 4
    if not failing:
        assert all("inconclusive" not in v and "upper bound" not in v for v in robust)
        want = "robustness dropped by 7.2" if significant else "robustness survived (Δ ≥ −5"
        assert all(want in v for v in robust)
        return
    for v in robust:
        assert "survived" not in v
        assert "inconclusive: " in v and v.count("(upper bound)") == 2
        for side, name in failing:
            assert f"check {name} failed on side {side} ({name} numbers)" in v
    assert any(v.startswith("Gradient-masking checks FAILED") for v in lines)


def test_verdict_inconclusive_without_checks_on_a_side():
    rep = _report(drop=0.0, significant=False)
    rep.checks = [c for c in rep.checks if c.backend == "float"]
    robust = [v for v in verdicts(rep) if v.startswith("Robust accuracy")]
    assert len(robust) == 4 and all(
        "inconclusive: no gradient-masking checks ran on this row" in v and "on side deployed" in v
        for v in robust)
    rep.checks = []
    lines = verdicts(rep)
    assert all("survived" not in v for v in lines if v.startswith("Robust accuracy"))
    assert any(v.startswith("No gradient-masking checks ran on known draw ε=0.05") for v in lines)


def test_latest_escalation_round_decides():
    """A check that failed in round 0 and passed after escalation no longer blocks."""
    rep = _report(drop=0.0, significant=False)
    old = Check("whitebox_beats_blackbox", False, "square won", {}, "deployed", round=0)
    rep.checks = [Check(c.name, c.passed, c.message, c.numbers, c.backend, round=1)
                  if c.backend == "deployed" else c for c in rep.checks]
    rep.checks.append(old)
    rep.escalation = [{"round": 1, "trigger": {"deployed": ["whitebox_beats_blackbox"]},
                       "check_gradient": {"grad_mode": "bptt:rect:1.0"}, "check_iterations": 100}]
    text = "\n".join(verdicts(rep))
    assert "inconclusive" not in text and "robustness survived (Δ ≥" in text
    assert "gradient-masking checks passed after 1 escalation round" in text


def test_json_roundtrip_and_files(tmp_path):
    rep = _report()
    paths = rep.save(tmp_path)
    d = json.loads(paths["json"].read_text())
    again = AuditReport.from_dict(d)
    assert again.to_dict() == rep.to_dict()
    md = paths["markdown"].read_text()
    assert "| ε | threat model | float | deployed |" in md and "64.0 %" in md
    # ε as rows: clean + 2 ε × 2 threat models, each naming its preset and threat model
    table = [ln for ln in md.splitlines() if ln.startswith("| 0.")]
    assert len(table) == 4 and all("| auto |" in ln and "draw" in ln for ln in table)
    assert "| 0 (clean) |" in md
    # Lava is replay agreement, never an accuracy row
    assert "Lava" not in "\n".join(table) and "10 of 10 replays" in md
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 4
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def _chromium() -> str | None:
    return chromium()


@pytest.mark.browser
def test_html_renders_with_visible_plots(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (scripts/install_browser.sh installs Debian's chromium)")
    rep = _report(failing=(("float", "whitebox_beats_blackbox"), ("deployed", "nonzero_gradients_eval"),
                           ("deployed", "gradient_matches_finite_differences")))
    paths = rep.save(tmp_path / "rep")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    # a narrow window and a laptop screen: the page and every table fit, measured on the
    # rendered layout, and no word or number is broken across lines
    for width in (800, 1280):
        got = probe(paths["html"], width, tmp_path / "profile")
        assert got["broken"] == [] and got["wide"] == [], (width, got)
        assert got["page"] <= width and 300 < got["tables"]["accuracy"] <= width, (width, got)
    shot = tmp_path / "shot.png"
    cmd = [*base, "--window-size=1100,2600", f"--screenshot={shot}", paths["html"].as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    nonwhite = (img < 0.95).any(axis=-1).mean()
    assert nonwhite > 0.05, f"page looks blank ({nonwhite:.3%} non-white pixels)"
    # matplotlib's default first line colour (tab:blue #1f77b4) only appears inside the plots.
    blue = np.array([0x1F, 0x77, 0xB4]) / 255.0
    n_blue = (np.abs(img - blue).max(axis=-1) < 0.06).sum()
    assert n_blue > 500, f"plots not visible: only {n_blue} plot-coloured pixels"


def _efficiency_blocks():
    """A real efficiency section and deployed certificate (tiny compiled model)."""
    import torch

    from neurodeploy.efficiency import audit_blocks
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC8-FC3", (1, 2, 2), num_steps=4, readout="rate")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    plan = compile_model(model, profile="loihi2")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 2, 2, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    cert, eff = audit_blocks(model, plan, x, y, torch.arange(10), 0, 0.05,
                             adversarial=(x + 0.1).clamp(0, 1))
    certified = {"eps": 0.05, "deployed": cert["deployed"], "deployed_verdict": cert["verdict"],
                 "float_known_draw": cert["float"]}
    return certified, eff


def test_efficiency_and_deployed_certificate_sections(tmp_path):
    rep = _report()
    rep.certified, rep.efficiency = _efficiency_blocks()
    paths = rep.save(tmp_path / "rep")
    md = paths["markdown"].read_text()
    assert "## Certified robustness, float vs deployed" in md and "(Loihi 2)" in md
    assert "## Efficiency and chip cost" in md and "APPROXIMATE" in md
    html = paths["html"].read_text()
    assert "id='certified'" in html and "id='efficiency'" in html
    assert html.count("data:image/png;base64,") == 5  # the four plots + synops per layer
    back = AuditReport.from_dict(json.loads(paths["json"].read_text()))
    assert back.efficiency["cost_clean"]["energy_per_inference_nj"] == pytest.approx(
        rep.efficiency["cost_clean"]["energy_per_inference_nj"])


@pytest.mark.browser
def test_html_efficiency_section_visible_in_browser(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (scripts/install_browser.sh installs Debian's chromium)")
    rep = _report()
    rep.certified, rep.efficiency = _efficiency_blocks()
    paths = rep.save(tmp_path / "rep")
    probe = tmp_path / "rep" / "probe_eff.html"
    probe.write_text(paths["html"].read_text().replace(
        "</body>",
        "<script>const i = document.getElementById('plot-efficiency');"
        "const r = i.getBoundingClientRect();"
        "const t = document.getElementById('efficiency').getBoundingClientRect();"
        "const c = document.getElementById('certified').getBoundingClientRect();"
        "document.body.setAttribute('data-eff', [i.complete && i.naturalWidth, r.width, r.height,"
        " t.width, t.height, c.height].join(','));</script></body>"))
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--window-size=1280,900", "--dump-dom", probe.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    import re

    vals = [float(v) for v in re.search(r'data-eff="([^"]+)"', dom).group(1).split(",")]
    natural_w, img_w, img_h, tab_w, tab_h, cert_h = vals
    assert natural_w > 300 and img_w > 300 and img_h > 150, vals  # the plot is decoded and shown
    assert 300 < tab_w <= 1280 and tab_h > 60 and cert_h > 40, vals


@pytest.mark.browser
def test_browser_probe_sees_broken_words_and_overflow(tmp_path):
    """The probe of the test above can fail: the same page with words allowed to break
    anywhere (the old style sheet) and with a table wider than the window."""
    if _chromium() is None:
        pytest.skip("chromium not installed (scripts/install_browser.sh installs Debian's chromium)")
    paths = _report().save(tmp_path / "rep")
    page = paths["html"].read_text()
    bad = tmp_path / "rep" / "bad.html"
    bad.write_text(page.replace("</style>", "td,th{overflow-wrap:anywhere}.nw{white-space:normal}"
                                "</style>"))
    got = probe(bad, 800, tmp_path / "profile")
    assert "deployed" in got["broken"], got
    bad.write_text(page.replace("<table id='accuracy'>", "<table id='accuracy' style='width:"
                                "1500px'>"))
    got = probe(bad, 1280, tmp_path / "profile")
    assert any(w.startswith("TABLE#accuracy") for w in got["wide"]) and got["page"] > 1280, got


def test_markdown_has_no_raw_json_and_words_certification(tmp_path):
    rep = _report()
    rep.certified = {"eps": 0.05, "verified_error": 0.4, "ibp_verified_error": 0.45,
                     "crown_verified_error": 0.4, "method": "best of S-IBP, S-CROWN"}
    md = rep.save(tmp_path)["markdown"].read_text()
    assert "```" not in md and '"verified_error"' not in md
    assert ("- float model, verified (certified) robust error at ε = 0.05: 40.0 % (best of "
            "S-IBP, S-CROWN; S-IBP 45.0 %, S-CROWN 40.0 %)") in md


def test_keep_words_whole_rules():
    from neurodeploy.audit.html_text import keep_words_whole

    doc = ("<style>a-b{}</style><title>x-y</title><p title='a-b'>FC64-FC10 at 64.0 % "
           "[55.0, 72.0], ≤ 3.0 and 12.8/255 at p = 0.03</p>")
    out = keep_words_whole(doc)
    assert out.startswith("<style>a-b{}</style><title>x-y</title><p title='a-b'>")
    assert "<span class='nw'>FC64-FC10</span>" in out and "64.0\u00a0%" in out
    assert "<span class='nw'>[55.0, 72.0]</span>" in out and "≤\u00a03.0" in out
    assert "<span class='nw'>12.8/255</span>" in out and "p\u00a0=\u00a00.03" in out


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_accuracy_figure_legend_names_sides_and_threat_models():
    import matplotlib.pyplot as plt

    from neurodeploy.audit.report_plots import accuracy_figure

    fig = accuracy_figure(_report())
    ax = fig.axes[0]
    leg = ax.get_legend()
    texts = [t.get_text() for t in leg.get_texts()]
    assert texts == ["float (snntorch)", "Loihi 2 fixed point (bit-exact emulator)",
                     "known draw", "unknown draw"]
    styles = {h.get_label(): (h.get_linestyle(), h.get_marker()) for h in leg.legend_handles}
    assert styles["known draw"] != styles["unknown draw"]
    # one line per side and threat model, drawn in that threat model's style
    drawn = {(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()
             if len(ln.get_xdata()) > 1 and ln.get_linestyle() != "None"}  # not the caps
    assert drawn == {(c, ls, m) for c in ("#1f77b4", "#d62728") for ls, m in (("-", "o"),
                                                                               ("--", "s"))}
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert leg.get_window_extent(r).y1 < ax.get_window_extent(r).y0  # under the axes
    assert ax.get_ylim() == (0.0, 100.0)
    plt.close(fig)


def test_layers_figure_legends_are_not_over_the_bars():
    import matplotlib.pyplot as plt

    from neurodeploy.audit.report_plots import layers_figure

    fig = layers_figure(_report())
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        from matplotlib.transforms import Bbox

        box, frame = ax.get_legend().get_window_extent(r), ax.get_window_extent(r)
        bars = [Bbox.intersection(p.get_window_extent(r), frame) for p in ax.patches]  # drawn
        assert len(bars) == 4 and not any(_overlaps(box, b) for b in bars), ax.get_title()
        assert box.y1 < frame.y0
    assert "axis starts at 89 %" in fig.axes[0].get_ylabel()
    plt.close(fig)
