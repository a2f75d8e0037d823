"""The hardware robustness audit report: data first (JSON), rendered to Markdown and HTML.

:class:`AuditReport` is the one document an audit produces. It is saved as JSON (machine
diff-able) and rendered to a Markdown summary and a self-contained HTML page with embedded
PNG plots (accuracy vs ε per backend, per-layer spike agreement and quantization error,
threshold traces float vs fixed point, resource use per core). Verdict lines are derived from
the numbers by :func:`verdicts`, never written by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.training.metrics import write_text_atomic

REPORT_FORMAT = "neurodeploy-audit"
REPORT_VERSION = 1

BACKEND_LABELS = {
    "float": "float (snntorch)",
    "twin": "hardware twin",
    "emulator": "fixed-point emulator",
    "lava": "Lava fixed_pt",
}


@dataclass
class AccuracyRow:
    """Accuracy of one backend under one attack at one ε (``attack = "clean"`` at ε = 0,
    ``attack = "worst"`` for the per-example worst case over all attacks)."""

    backend: str
    attack: str
    eps: float
    accuracy: float
    n: int
    ci95: float | None = None
    note: str = ""


@dataclass
class LayerRow:
    """Per-layer deployment fidelity: spike agreement with the float model and quantization."""

    layer: str
    neurons: int
    agreement_emulator: float | None = None
    agreement_lava: float | None = None
    rate_float: float | None = None
    rate_emulator: float | None = None
    weight_error: float | None = None
    threshold_error: float | None = None
    cores: int | None = None


@dataclass
class ThresholdTrace:
    """Mean adaptive threshold over neurons per step, float vs fixed point (θ in float units)."""

    layer: str
    float_trace: list[float]
    fixed_trace: list[float]


@dataclass
class Check:
    """One gradient-masking (or other) check: pass/fail with the numbers behind it."""

    name: str
    passed: bool
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    backend: str = "float"


@dataclass
class AuditReport:
    meta: dict[str, Any]
    model: dict[str, Any]
    profile: dict[str, Any]
    accuracy: list[AccuracyRow] = field(default_factory=list)
    certified: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerRow] = field(default_factory=list)
    thresholds: list[ThresholdTrace] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    attacks: list[dict[str, Any]] = field(default_factory=list)
    replay: dict[str, Any] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ queries
    def backends(self) -> list[str]:
        seen: list[str] = []
        for r in self.accuracy:
            if r.backend not in seen:
                seen.append(r.backend)
        return seen

    def epsilons(self) -> list[float]:
        return sorted({r.eps for r in self.accuracy if r.attack != "clean"})

    def lookup(self, backend: str, attack: str, eps: float) -> AccuracyRow | None:
        for r in self.accuracy:
            if r.backend == backend and r.attack == attack and abs(r.eps - eps) < 1e-12:
                return r
        return None

    def clean(self, backend: str) -> AccuracyRow | None:
        for r in self.accuracy:
            if r.backend == backend and r.attack == "clean":
                return r
        return None

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d = {"format": REPORT_FORMAT, "version": REPORT_VERSION, **d}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditReport:
        if d.get("format") != REPORT_FORMAT:
            raise ValueError(f"not an audit report (format {d.get('format')!r})")
        return cls(
            meta=d["meta"],
            model=d["model"],
            profile=d["profile"],
            accuracy=[AccuracyRow(**r) for r in d.get("accuracy", [])],
            certified=d.get("certified", {}),
            layers=[LayerRow(**r) for r in d.get("layers", [])],
            thresholds=[ThresholdTrace(**r) for r in d.get("thresholds", [])],
            checks=[Check(**r) for r in d.get("checks", [])],
            resources=d.get("resources", {}),
            attacks=d.get("attacks", []),
            replay=d.get("replay", {}),
            verdicts=d.get("verdicts", []),
        )

    def save(self, folder: str | os.PathLike, stem: str = "audit") -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` atomically into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not self.verdicts:
            self.verdicts = verdicts(self)
        paths = {
            "json": folder / f"{stem}.json",
            "markdown": folder / f"{stem}.md",
            "html": folder / f"{stem}.html",
        }
        write_text_atomic(paths["json"], json.dumps(self.to_dict(), indent=2, default=_jsonable))
        write_text_atomic(paths["markdown"], render_markdown(self))
        write_text_atomic(paths["html"], render_html(self))
        return paths


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------- verdicts


def _pct(v: float) -> str:
    return f"{100.0 * v:.1f} %"


def _label(backend: str, report: AuditReport) -> str:
    if backend in ("emulator", "lava", "twin"):
        name = report.profile.get("display_name") or report.profile.get("name", "chip")
        return f"{name} fixed point ({BACKEND_LABELS.get(backend, backend)})"
    return BACKEND_LABELS.get(backend, backend)


def verdicts(report: AuditReport, tolerance: float = 0.02) -> list[str]:
    """Sentences that say whether robustness survived deployment, derived from the numbers.

    For each ε, the worst-case robust accuracy of the float model is compared with that of the
    deployed model (Lava when measured, else the emulator). A change within ``tolerance``
    (absolute) counts as "survived".
    """
    lines: list[str] = []
    # Compare like with like: Lava is the deployed row only when it saw every sample; else the
    # bit-exact emulator stands for the chip (its agreement with Lava is stated below).
    c_float, c_lava = report.clean("float"), report.clean("lava")
    full_lava = c_lava is not None and c_float is not None and c_lava.n == c_float.n
    deployed = "lava" if full_lava else "emulator"
    c_f, c_d = report.clean("float"), report.clean(deployed)
    if c_f and c_d:
        lines.append(
            f"Clean accuracy {'fell' if c_d.accuracy < c_f.accuracy else 'went'} from "
            f"{_pct(c_f.accuracy)} ({_label('float', report)}) to {_pct(c_d.accuracy)} "
            f"({_label(deployed, report)})."
        )
    for eps in report.epsilons():
        f = report.lookup("float", "worst", eps)
        d = report.lookup(deployed, "worst", eps)
        if not (f and d):
            continue
        delta = d.accuracy - f.accuracy
        status = "survived deployment" if abs(delta) <= tolerance or delta > 0 else (
            "did NOT fully survive deployment")
        if delta == 0:
            change = (f"was {_pct(f.accuracy)} both on the {_label('float', report)} model and "
                      f"on {_label(deployed, report)}")
        else:
            verb = "fell" if delta < 0 else "rose"
            change = (f"{verb} from {_pct(f.accuracy)} ({_label('float', report)}) to "
                      f"{_pct(d.accuracy)} ({_label(deployed, report)})")
        lines.append(f"Robust accuracy at ε={eps:g} {change}: {delta * 100:+.1f} points — "
                     f"robustness {status}.")
    mism = report.replay.get("lava_vs_emulator_spike_mismatches")
    if c_lava is not None and mism is not None:
        lines.append(
            f"Lava replay of {c_lava.n} samples (clean and every adversarial input): "
            f"{mism} spikes differ from the emulator"
            + (" — the emulator is bit-exact with Lava here." if mism == 0 else
               " — emulator and Lava DISAGREE.")
        )
    if report.certified.get("verified_error") is not None:
        lines.append(
            f"Certified (verified) robust error of the float model at ε={report.certified.get('eps')}: "
            f"{_pct(report.certified['verified_error'])} ({report.certified.get('method', '')})."
        )
    failed = [c for c in report.checks if not c.passed]
    if report.checks:
        if failed:
            lines.append(
                "Gradient-masking checks FAILED: " + ", ".join(f"{c.name} ({c.backend})" for c in failed)
                + " — robust accuracies above may be overestimates."
            )
        else:
            lines.append(f"All {len(report.checks)} gradient-masking checks passed.")
    return lines


# ---------------------------------------------------------------------- plots


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(report: AuditReport) -> dict[str, str]:
    """Base64 PNGs keyed by plot name (only the plots the data supports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    eps_list = report.epsilons()
    if eps_list:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for b in report.backends():
            xs, ys = [], []
            c = report.clean(b)
            if c:
                xs.append(0.0)
                ys.append(100 * c.accuracy)
            for e in eps_list:
                r = report.lookup(b, "worst", e)
                if r:
                    xs.append(e)
                    ys.append(100 * r.accuracy)
            if xs:
                ax.plot(xs, ys, marker="o", label=_label(b, report))
        ax.set_xlabel("ε (ℓ∞)")
        ax.set_ylabel("accuracy under worst-case attack (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Robust accuracy vs ε per backend")
        out["accuracy_vs_eps"] = _figure_png(fig)
    if report.layers:
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
        names = [r.layer for r in report.layers]
        xs = range(len(names))
        ag_e = [100 * (r.agreement_emulator or 0) for r in report.layers]
        ag_l = [100 * r.agreement_lava if r.agreement_lava is not None else 0 for r in report.layers]
        axes[0].bar([x - 0.2 for x in xs], ag_e, width=0.4, label="float ↔ emulator")
        if any(r.agreement_lava is not None for r in report.layers):
            axes[0].bar([x + 0.2 for x in xs], ag_l, width=0.4, label="float ↔ Lava")
        axes[0].set_xticks(list(xs), names, rotation=30, fontsize=8)
        axes[0].set_ylabel("spike agreement (%)")
        axes[0].set_ylim(min([90.0, *ag_e]) - 1, 100.5)
        axes[0].legend(fontsize=8)
        axes[0].set_title("Per-layer spike agreement")
        we = [r.weight_error or 0 for r in report.layers]
        te = [r.threshold_error or 0 for r in report.layers]
        axes[1].bar([x - 0.2 for x in xs], we, width=0.4, label="weight (rel. to max|W|)")
        axes[1].bar([x + 0.2 for x in xs], te, width=0.4, label="threshold (relative)")
        axes[1].set_xticks(list(xs), names, rotation=30, fontsize=8)
        axes[1].set_ylabel("max quantization error")
        axes[1].legend(fontsize=8)
        axes[1].set_title("Per-layer quantization error")
        out["layers"] = _figure_png(fig)
    if report.thresholds:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for tr in report.thresholds:
            line = ax.plot(tr.float_trace, label=f"{tr.layer} float")[0]
            ax.plot(tr.fixed_trace, linestyle="--", color=line.get_color(),
                    label=f"{tr.layer} fixed point")
        ax.set_xlabel("time step")
        ax.set_ylabel("mean threshold θ")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Adaptive threshold traces (TA-LIF)")
        out["thresholds"] = _figure_png(fig)
    per_layer = report.resources.get("layers") or []
    if per_layer:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        names, used = [], []
        for r in per_layer:
            for c, n in enumerate(r.get("neurons_per_core", [])):
                names.append(f"{r.get('token', r.get('layer'))}\ncore {c}")
                used.append(float(n))
        ax.bar(range(len(used)), used, color="#4c72b0", label="neurons used")
        ax.set_xticks(range(len(used)), names, fontsize=7)
        cap = (report.resources.get("limits") or {}).get("neurons_per_core")
        if cap:
            ax.axhline(cap, color="#c44e52", linestyle="--", label=f"limit {cap} per core")
            ax.set_yscale("log")
        ax.set_ylabel("neurons per core")
        ax.legend(fontsize=8)
        used_c = report.resources.get("cores_used")
        avail = report.resources.get("cores_available")
        ax.set_title(f"Resource use per core ({used_c} of {avail} cores)" if used_c else
                     "Resource use per core")
        out["resources"] = _figure_png(fig)
    return out


# ---------------------------------------------------------------------- renderers


def _table_rows(report: AuditReport) -> tuple[list[str], list[list[str]]]:
    attacks = []
    for r in report.accuracy:
        if r.attack not in attacks and r.attack != "clean":
            attacks.append(r.attack)
    header = ["backend", "clean"] + [
        f"{a} ε={e:g}" for e in report.epsilons() for a in attacks
        if any(r.attack == a and abs(r.eps - e) < 1e-12 for r in report.accuracy)
    ]
    rows = []
    for b in report.backends():
        c = report.clean(b)
        row = [_label(b, report), _pct(c.accuracy) if c else "–"]
        for e in report.epsilons():
            for a in attacks:
                if not any(r.attack == a and abs(r.eps - e) < 1e-12 for r in report.accuracy):
                    continue
                r = report.lookup(b, a, e)
                row.append(_pct(r.accuracy) if r else "–")
        rows.append(row)
    return header, rows


def render_markdown(report: AuditReport) -> str:
    m = report.meta
    lines = [
        "# Hardware robustness audit",
        "",
        f"- model: `{report.model.get('arch', '?')}` ({report.model.get('neuron', 'lif')}, "
        f"T = {report.model.get('num_steps', '?')}, defense: {report.model.get('defense', 'none')})",
        f"- profile: **{report.profile.get('name', '?')}**",
        f"- samples: {m.get('samples', '?')}, seed: {m.get('seed', '?')}, git: `{m.get('git_sha', '?')}`,"
        f" created {m.get('created', '?')}",
        "",
        "## Verdict",
        "",
        *[f"- {v}" for v in (report.verdicts or verdicts(report))],
        "",
        "## Accuracy per backend",
        "",
    ]
    header, rows = _table_rows(report)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if report.layers:
        lines += ["", "## Per-layer deployment fidelity", "",
                  "| layer | neurons | agreement emulator | agreement Lava | weight err | threshold err |",
                  "|---|---|---|---|---|---|"]
        for r in report.layers:
            lines.append(
                f"| {r.layer} | {r.neurons} | {_fmt_pct(r.agreement_emulator)} | "
                f"{_fmt_pct(r.agreement_lava)} | {_fmt(r.weight_error)} | {_fmt(r.threshold_error)} |"
            )
    if report.checks:
        lines += ["", "## Gradient-masking checks", "", "| check | backend | result | details |",
                  "|---|---|---|---|"]
        for c in report.checks:
            lines.append(f"| {c.name} | {c.backend} | {'pass' if c.passed else 'FAIL'} | {c.message} |")
    if report.certified:
        lines += ["", "## Certification", "", "```", json.dumps(report.certified, indent=2,
                                                               default=_jsonable), "```"]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()), ""]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def _fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem;border-bottom:3px solid #4c72b0;padding-bottom:.3rem}
h2{font-size:1.2rem;margin-top:2rem;color:#333}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#eef2f8} td:first-child,th:first-child{text-align:left}
.verdict{background:#f4f8f4;border-left:4px solid #55a868;padding:.5rem 1rem}
.verdict.bad{background:#fbf1f1;border-left-color:#c44e52}
.fail{color:#c44e52;font-weight:bold}.pass{color:#2d7a3e}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0}
.meta{color:#555;font-size:.9rem}
"""


def render_html(report: AuditReport) -> str:
    e = html.escape
    m = report.meta
    pics = plots(report)
    vlines = report.verdicts or verdicts(report)
    bad = any("NOT" in v or "FAILED" in v for v in vlines)
    header, rows = _table_rows(report)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>neurodeploy audit</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Hardware robustness audit</h1>",
        f"<p class='meta'>model <code>{e(str(report.model.get('arch', '?')))}</code> · neuron "
        f"{e(str(report.model.get('neuron', 'lif')))} · defense {e(str(report.model.get('defense', 'none')))}"
        f" · profile <b>{e(str(report.profile.get('name', '?')))}</b> · samples {e(str(m.get('samples', '?')))}"
        f" · seed {e(str(m.get('seed', '?')))} · git {e(str(m.get('git_sha', '?')))}</p>",
        f"<div class='verdict{' bad' if bad else ''}'><ul>"
        + "".join(f"<li>{e(v)}</li>" for v in vlines) + "</ul></div>",
        "<h2>Accuracy per backend</h2><table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>",
    ]
    titles = {
        "accuracy_vs_eps": "Accuracy vs ε",
        "layers": "Per-layer spike agreement and quantization error",
        "thresholds": "Threshold traces, float vs fixed point",
        "resources": "Resource use per core",
    }
    for key, title in titles.items():
        if key in pics:
            parts.append(f"<h2>{e(title)}</h2><img id='plot-{key}' alt='{e(title)}' "
                         f"src='data:image/png;base64,{pics[key]}'>")
    if report.checks:
        parts.append("<h2>Gradient-masking checks</h2><table><tr><th>check</th><th>backend</th>"
                     "<th>result</th><th>details</th></tr>")
        for c in report.checks:
            cls, word = ("pass", "pass") if c.passed else ("fail", "FAIL")
            parts.append(f"<tr><td>{e(c.name)}</td><td>{e(c.backend)}</td>"
                         f"<td class='{cls}'>{word}</td><td>{e(c.message)}</td></tr>")
        parts.append("</table>")
    if report.layers:
        parts.append("<h2>Per-layer table</h2><table><tr><th>layer</th><th>neurons</th>"
                     "<th>agreement emulator</th><th>agreement Lava</th><th>rate float</th>"
                     "<th>rate emulator</th><th>weight err</th><th>threshold err</th></tr>")
        for r in report.layers:
            parts.append(
                f"<tr><td>{e(r.layer)}</td><td>{r.neurons}</td><td>{_fmt_pct(r.agreement_emulator)}"
                f"</td><td>{_fmt_pct(r.agreement_lava)}</td><td>{_fmt(r.rate_float)}</td>"
                f"<td>{_fmt(r.rate_emulator)}</td><td>{_fmt(r.weight_error)}</td>"
                f"<td>{_fmt(r.threshold_error)}</td></tr>")
        parts.append("</table>")
    vers = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    parts.append(f"<p class='meta'>versions: {e(vers)}</p></body></html>")
    return "\n".join(parts)
