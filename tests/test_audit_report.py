"""The audit report: JSON round trip, verdicts derived from numbers, HTML rendered in a real
headless browser with its plots visible."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from neurodeploy.audit.report import (
    AccuracyRow,
    AuditReport,
    Check,
    LayerRow,
    ThresholdTrace,
    verdicts,
)


def _report(lava_drop: float = 0.072) -> AuditReport:
    rows = [AccuracyRow("float", "clean", 0.0, 0.95, 100), AccuracyRow("lava", "clean", 0.0, 0.94, 100)]
    for eps, acc in ((0.05, 0.80), (0.1, 0.712)):
        rows.append(AccuracyRow("float", "pgd", eps, acc + 0.01, 100))
        rows.append(AccuracyRow("float", "worst", eps, acc, 100))
        rows.append(AccuracyRow("lava", "worst", eps, acc - lava_drop, 100))
    return AuditReport(
        meta={"seed": 0, "samples": 100, "git_sha": "abc1234", "versions": {"torch": "x"}},
        model={"arch": "FC64-FC10", "num_steps": 10},
        profile={"name": "loihi2", "display_name": "Loihi 2"},
        accuracy=rows,
        layers=[LayerRow("layer1", 64, 0.991, 0.991, 0.1, 0.1, 0.004, 0.001),
                LayerRow("layer2", 10, 0.985, 0.985, 0.2, 0.21, 0.003, 0.002)],
        thresholds=[ThresholdTrace("layer1", [0.25 + 0.01 * t for t in range(10)],
                                   [0.25 + 0.0099 * t for t in range(10)])],
        checks=[Check("iterative_beats_single_step", True, "PGD 71.2 % ≤ FGSM 80 %")],
        resources={"layers": [{"layer": 1, "token": "FC64", "neurons_per_core": [64]},
                              {"layer": 2, "token": "FC10", "neurons_per_core": [10]}],
                   "limits": {"neurons_per_core": 8192}, "cores_used": 2, "cores_available": 128},
    )


def test_verdict_lines_follow_the_numbers():
    lines = verdicts(_report())
    text = "\n".join(lines)
    assert "Robust accuracy at ε=0.1 fell from 71.2 % (float (snntorch)) to 64.0 % (Loihi 2" in text
    assert "did NOT fully survive" in text
    ok = "\n".join(verdicts(_report(lava_drop=0.0)))
    assert "did NOT" not in ok and "survived deployment" in ok


def test_json_roundtrip_and_files(tmp_path):
    rep = _report()
    paths = rep.save(tmp_path)
    d = json.loads(paths["json"].read_text())
    again = AuditReport.from_dict(d)
    assert again.to_dict() == rep.to_dict()
    md = paths["markdown"].read_text()
    assert "| backend | clean |" in md and "64.0 %" in md
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 4
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@pytest.mark.browser
def test_html_renders_with_visible_plots(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (scripts/install_browser.sh installs Debian's chromium)")
    paths = _report().save(tmp_path / "rep")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
           "--window-size=1100,2600", f"--screenshot={shot}", paths["html"].as_uri()]
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


def test_verdict_compares_like_with_like_when_lava_saw_a_subset():
    rep = _report()
    rep.accuracy = [r for r in rep.accuracy if r.backend != "lava"]
    rep.accuracy += [AccuracyRow("emulator", "clean", 0.0, 0.95, 100),
                     AccuracyRow("emulator", "worst", 0.1, 0.70, 100),
                     AccuracyRow("lava", "clean", 0.0, 1.0, 10),
                     AccuracyRow("lava", "worst", 0.1, 0.2, 10)]
    rep.replay = {"lava_vs_emulator_spike_mismatches": 0}
    text = "\n".join(verdicts(rep))
    assert "71.2 % (float (snntorch)) to 70.0 % (Loihi 2 fixed point (fixed-point emulator))" in text
    assert "Lava replay of 10 samples" in text and "bit-exact" in text
