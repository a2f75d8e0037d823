"""The hardware robustness audit report: data first (JSON), rendered to Markdown and HTML.

:class:`AuditReport` is the one document an audit produces. It is saved as JSON (machine
diff-able) and rendered to a Markdown summary and a self-contained HTML page with embedded
PNG plots (accuracy vs ε per backend, per-layer spike agreement and quantization error,
threshold traces float vs fixed point, resource use per core; drawn by
:mod:`neurodeploy.audit.report_plots`). Verdict lines are derived from the numbers by
:func:`verdicts`, never written by hand. The HTML keeps words and numbers whole
(:mod:`neurodeploy.audit.html_text`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.audit.html_text import NOWRAP_CSS, keep_words_whole
from neurodeploy.jsonable import jsonable

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
    """Accuracy of one side (``float`` or ``deployed``) under one attack at one ε
    (``attack = "clean"`` at ε = 0, ``attack = "worst"`` for the per-example worst case over the
    cascade). ``threat_model`` is ``known draw`` or ``unknown draw``; under the unknown draw
    ``accuracy`` is the mean over examples of the survival rate on ``draws`` held-out draws.
    ``ci95`` is the 95 % interval named by ``ci_method`` (Clopper–Pearson for the known draw's
    k of n, Wilson on the effective sample size of examples × draws for the unknown draw). ``preset``
    names the attack cascade, ``checks`` the gradient-masking outcome of the checks that ran
    on this row ("not run" otherwise), and ``upper_bound`` is true when a check of this row
    failed or did not run (the attacks may have been too weak). ``exact``: the accuracy is the
    exact verifier's (every example decided; not an upper bound); ``exact_interval``: the
    verifier's ``[robust, robust + unknown] / n`` beside the attack's number."""

    backend: str
    attack: str
    eps: float
    accuracy: float
    n: int
    ci95: list[float] | None = None
    note: str = ""
    threat_model: str = "known draw"
    preset: str = ""
    draws: int = 1
    checks: str = ""
    upper_bound: bool = False
    ci_method: str = ""
    exact: bool = False
    exact_interval: list[float] | None = None


@dataclass
class LayerRow:
    """Per-layer deployment fidelity: spike agreement with the float model and quantization.

    ``agreement_*`` is over all entries (time × sample × neuron); ``fired_agreement_*`` over
    fired spikes, ``|a ∧ b| / |a ∨ b|``; ``mismatches_*`` counts differing entries. Lava runs
    on the first ``lava_samples`` samples; ``agreement_emulator_lava_samples`` is the emulator
    on exactly those samples, so emulator and Lava are compared on the same inputs."""

    layer: str
    neurons: int
    agreement_emulator: float | None = None
    agreement_lava: float | None = None
    rate_float: float | None = None
    rate_emulator: float | None = None
    weight_error: float | None = None
    threshold_error: float | None = None
    cores: int | None = None
    fired_agreement_emulator: float | None = None
    mismatches_emulator: int | None = None
    fired_agreement_lava: float | None = None
    mismatches_lava: int | None = None
    agreement_emulator_lava_samples: float | None = None
    lava_samples: int | None = None


@dataclass
class ThresholdTrace:
    """Mean adaptive threshold over neurons per step, float vs fixed point (θ in float units)."""

    layer: str
    float_trace: list[float]
    fixed_trace: list[float]


@dataclass
class Check:
    """One gradient-masking (or other) check: pass/fail with the numbers behind it, for one
    side (``backend``), ``threat_model`` and ``eps`` (``None``: a report from before checks ran
    per row — it then stands for every row)."""

    name: str
    passed: bool
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    backend: str = "float"
    round: int = 0
    grad_mode: str = "bptt"
    threat_model: str = "known draw"
    eps: float | None = None


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
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    escalation: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] = field(default_factory=dict)
    #: issue 15: NeuroBench-style activity float vs deployed, clean vs adversarial, and the
    #: chip cost estimate (neurodeploy.efficiency.efficiency_section)
    efficiency: dict[str, Any] = field(default_factory=dict)
    #: exact verification of the deployed plan (None: no exact stage ran)
    exact: dict[str, Any] | None = None

    # ------------------------------------------------------------------ queries
    def backends(self) -> list[str]:
        seen: list[str] = []
        for r in self.accuracy:
            if r.backend not in seen:
                seen.append(r.backend)
        return seen

    def epsilons(self) -> list[float]:
        return sorted({r.eps for r in self.accuracy if r.attack != "clean"})

    def lookup(self, backend: str, attack: str, eps: float,
               threat_model: str | None = None) -> AccuracyRow | None:
        for r in self.accuracy:
            if (r.backend == backend and r.attack == attack and abs(r.eps - eps) < 1e-12
                    and (threat_model is None or r.threat_model == threat_model)):
                return r
        return None

    def threat_models(self) -> list[str]:
        seen: list[str] = []
        for r in self.accuracy:
            if r.attack != "clean" and r.threat_model not in seen:
                seen.append(r.threat_model)
        return seen

    def comparison(self, threat_model: str, eps: float) -> dict[str, Any] | None:
        for c in self.comparisons:
            if c.get("threat_model") == threat_model and abs(float(c["eps"]) - eps) < 1e-12:
                return c
        return None

    def clean(self, backend: str, threat_model: str | None = None) -> AccuracyRow | None:
        """The clean row of ``backend`` (the first one, the known draw's, by default)."""
        for r in self.accuracy:
            if r.backend == backend and r.attack == "clean" and (
                    threat_model is None or r.threat_model == threat_model):
                return r
        return None

    def clean_threat_models(self) -> list[str]:
        return list(dict.fromkeys(r.threat_model for r in self.accuracy if r.attack == "clean"))

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
            comparisons=d.get("comparisons", []),
            escalation=d.get("escalation", []),
            robustness=d.get("robustness", {}),
            efficiency=d.get("efficiency", {}),
            exact=d.get("exact"),
        )

    def to_json(self) -> str:
        """The JSON document (what ``<stem>.json`` holds)."""
        return json.dumps(jsonable(self.to_dict()), indent=2)

    def save(self, folder: str | os.PathLike, stem: str = "audit") -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` into ``folder``, published
        together (all three are written in full before the first one is renamed into place,
        ``<stem>.json`` last; :func:`~neurodeploy.atomicio.publish_files`)."""
        from neurodeploy.atomicio import publish_files

        folder = Path(folder)
        if not self.verdicts:
            self.verdicts = verdicts(self)
        paths = {  # renamed in this order where the folder is shared: the json, the
            "markdown": folder / f"{stem}.md",  # record of a whole report, last
            "html": folder / f"{stem}.html",
            "json": folder / f"{stem}.json",
        }
        texts = {"json": self.to_json(), "markdown": render_markdown(self),
                 "html": render_html(self)}
        publish_files(folder, {paths[k].name: (lambda p, t=texts[k]: p.write_text(
            t, encoding="utf-8")) for k in paths})
        return paths


# ---------------------------------------------------------------------- verdicts


def _pct(v: float) -> str:
    return f"{100.0 * v:.1f} %"


def _label(backend: str, report: AuditReport) -> str:
    if backend in ("emulator", "lava", "twin", "deployed"):
        name = report.profile.get("display_name") or report.profile.get("name", "chip")
        what = "bit-exact emulator" if backend == "deployed" else BACKEND_LABELS.get(backend, backend)
        return f"{name} fixed point ({what})"
    if backend == "float" and report.model.get("nir"):  # a NIR file's float side
        return "float (NIR interpreter)"
    return BACKEND_LABELS.get(backend, backend)


def nir_lines(report: AuditReport) -> list[str]:
    """What a NIR model's audit assumed (semantics, input coding, threat models), in words."""
    nir = report.model.get("nir")
    if not nir:
        return []
    out = [f"NIR model `{nir.get('path')}`: {nir.get('semantics')}; deployed side: "
           f"{nir.get('plan')}; float side: the NIR interpreter (surrogate "
           f"{nir.get('surrogate')})",
           f"input: {nir.get('input')}", f"threat models: {nir.get('threat_models')}"]
    if nir.get("data_reshape"):
        out.append(f"input: {nir['data_reshape']}")
    out += [f"assumed: {n}" for n in nir.get("notes", [])]
    out += [f"chip: {n}" for n in nir.get("chip_notes", [])]
    out += [f"not run: {n}" for n in nir.get("not_run", [])]
    return out


from neurodeploy.audit.verdict_text import (  # noqa: E402 - after the dataclasses it uses
    accuracy_cell,
    checks_cell,
    checks_on_row,
    checks_summary,
    comparison_words,
    provenance_lines,
    row_checks,
    verdict_is_bad,
    verdicts,
)

__all__ = ["AccuracyRow", "AuditReport", "Check", "LayerRow", "ThresholdTrace", "accuracy_cell",
           "checks_cell",
           "checks_on_row", "checks_summary", "comparison_words", "provenance_lines",
           "row_checks", "verdict_is_bad", "verdicts", "render_html", "render_markdown"]


# ---------------------------------------------------------------------- renderers


def _table_rows(report: AuditReport) -> tuple[list[str], list[list[str]]]:
    """One row per (ε, threat model): float / deployed (with 95 % CIs) / Δ and its verdict /
    threat model / attack / the checks that ran on that row ("not run" where none did)."""
    header = ["ε", "threat model", "float", "deployed", "Δ deployed − float (95 % CI)",
              "attack", "checks"]
    rows: list[list[str]] = []
    for tm in report.clean_threat_models():
        c_f, c_d = report.clean("float", tm), report.clean("deployed", tm)
        if c_f and c_d:
            rows.append(["0 (clean)", _tm_cell(tm, c_f), accuracy_cell(c_f, False), accuracy_cell(c_d, False),
                         _delta_cell(report.comparison(tm, 0.0)), "none", "–"])
    for e in report.epsilons():
        for tm in report.threat_models():
            f = report.lookup("float", "worst", e, tm)
            d = report.lookup("deployed", "worst", e, tm)
            if not (f or d):
                continue
            rows.append([
                f"{e:g}", _tm_cell(tm, f or d),
                accuracy_cell(f, f.upper_bound) if f else "–",
                accuracy_cell(d, d.upper_bound) if d else "–",
                _delta_cell(report.comparison(tm, e)), (f or d).preset or "–",
                checks_cell(report.checks, tm, e),
            ])
    return header, rows


def _tm_cell(tm: str, r: AccuracyRow) -> str:
    return tm + (f" ({r.draws} held-out draws)" if r.draws > 1 else "")


def cascade_rows(report: AuditReport) -> list[list[str]]:
    """Per (side/threat model, ε): how many examples each attack of the cascade broke first
    (from the engine's records, every round)."""
    out = []
    for key, records in report.robustness.items():
        for rec in records:
            for pe in rec.get("per_eps", []):
                counts = {a: c for a, c in (pe.get("broken_by_counts") or {}).items() if c}
                text = ", ".join(f"{a} {c}" for a, c in counts.items()) or "none"
                side, _, threat = key.partition("/")
                if rec.get("round") == "held-out":  # unknown draw: where the kept input came from
                    text = f"kept: {text}"
                out.append([f"{side}, {threat} draw", str(rec.get("round", 0)),
                            f"{pe['eps']:g}", text])
    return out


def _grad_words(rnd: dict[str, Any]) -> str:
    g = rnd.get("check_gradient") or {}
    return ", ".join(f"{k}={v}" for k, v in g.items()) or str(rnd.get("check_grad_mode", "?"))


def _delta_cell(c: dict[str, Any] | None) -> str:
    """``−2.0 [−6.1, +1.9], p = 0.5: inconclusive`` — Δ in points, its interval, the verdict."""
    if not c:
        return "–"
    lo, hi = c["ci95"]
    p = f", p = {c['p_value']:.2g}" if c.get("p_value") is not None else ""
    eq = c.get("equivalence") or {}
    what = f": {eq['outcome']}" if eq.get("outcome") else ""
    return f"{100 * c['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{p}{what}"


def render_markdown(report: AuditReport) -> str:
    m = report.meta
    lines = [
        "# Hardware robustness audit",
        "",
        f"- model: `{report.model.get('arch', '?')}` ({report.model.get('neuron', 'lif')}, "
        f"T = {report.model.get('num_steps', '?')}, defense: {report.model.get('defense', 'unknown')})",
        f"- profile: **{report.profile.get('name', '?')}**",
        f"- samples: {m.get('samples', '?')}, seed: {m.get('seed', '?')}, git: `{m.get('git_sha', '?')}`,"
        f" created {m.get('created', '?')}",
        f"- attack budget: **{m.get('budget', '?')}**; threat models: "
        f"{', '.join(m.get('threat_models', [])) or '?'}",
        *[f"- {v}" for v in provenance_lines(report)],
        *[f"- {v}" for v in nir_lines(report)],
        "",
        "## Verdict",
        "",
        *[f"- {v}" for v in (report.verdicts or verdicts(report))],
        "",
        "## Accuracy (every number on the same samples)",
        "",
    ]
    header, rows = _table_rows(report)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += _exact_markdown(report)
    if report.layers:
        lines += ["", "## Per-layer deployment fidelity", "",
                  "| layer | neurons | " + " | ".join(LAYER_AGREEMENT_HEADER)
                  + " | weight err | threshold err |", "|---|---|---|---|---|---|---|"]
        for r in report.layers:
            lines.append(
                f"| {r.layer} | {r.neurons} | " + " | ".join(layer_agreement_cells(r))
                + f" | {_fmt(r.weight_error)} | {_fmt(r.threshold_error)} |"
            )
    if report.replay.get("replays"):
        lines += ["", "## Lava replay agreement", "",
                  "| input | emulator ≡ Lava |", "|---|---|"]
        for name, v in (report.replay.get("per_input") or {}).items():
            lines.append(f"| {name} | {v['agree']} of {v['replays']} replays |")
    if report.checks:
        lines += ["", "## Gradient-masking checks", "",
                  "| check | side | round | gradient | result | details |", "|---|---|---|---|---|---|"]
        for c in report.checks:
            lines.append(f"| {c.name} | {c.backend} | {c.round} | {c.grad_mode} | "
                         f"{'pass' if c.passed else 'FAIL'} | {c.message} |")
    casc = cascade_rows(report)
    if casc:
        lines += ["", "## Cascade: examples broken first by each attack", "",
                  "| side, threat model | round | ε | broken by |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in casc]
    if report.meta.get("escalation_budget"):
        lines += ["", f"Escalation budget: {report.meta['escalation_budget']}."]
    for rnd in report.escalation:
        lines += ["", f"Escalation round {rnd['round']}: triggered by {rnd['trigger']}; checks "
                  f"re-run with {_grad_words(rnd)}, {rnd['check_iterations']} iterations."]
    cert = certification_lines(report.certified)
    if cert:
        lines += ["", "## Certification", "", *[f"- {v}" for v in cert]]
    from neurodeploy.efficiency import efficiency_markdown

    lines += efficiency_markdown(report.efficiency, report.certified)
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()), ""]
    return "\n".join(lines)


EXACT_TITLE = "Exact verification (known draw): certified ≤ exact ≤ attack"


def _exact_markdown(report: AuditReport) -> list[str]:
    """The exact stage's table (:mod:`neurodeploy.audit.exact_text`); empty without it."""
    from neurodeploy.audit.exact_text import HEADER, table_rows

    rows = table_rows(report)
    if not rows:
        return []
    what = (report.exact or {}).get("what", "")
    return ["", f"## {EXACT_TITLE}", "", f"{what}.", "", "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER), *["| " + " | ".join(r) + " |" for r in rows]]


def _exact_html(report: AuditReport) -> str:
    from neurodeploy.audit.exact_text import HEADER, table_rows

    e = html.escape
    rows = table_rows(report)
    if not rows:
        return ""
    what = (report.exact or {}).get("what", "")
    return (f"<h2>{e(EXACT_TITLE)}</h2><p class='meta'>{e(what)}.</p><table id='exact'><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


LAYER_AGREEMENT_HEADER = ("agreement emulator (fired spikes; mismatches)",
                          "agreement Lava (fired spikes; mismatches)",
                          "emulator on Lava's samples")


def layer_agreement_cells(r: LayerRow) -> list[str]:
    """Float ↔ emulator and float ↔ Lava agreement over all entries, on fired spikes and the
    count of mismatching entries; the emulator on exactly the samples Lava ran."""
    def cell(all_: float | None, fired: float | None, mism: int | None) -> str:
        if all_ is None:
            return "–"
        extra = [f"fired {_fmt_pct(fired)}"] if fired is not None else []
        extra += [f"{mism} mismatches"] if mism is not None else []
        return _fmt_pct(all_) + (f" ({'; '.join(extra)})" if extra else "")

    same = ("–" if r.agreement_emulator_lava_samples is None else
            f"{_fmt_pct(r.agreement_emulator_lava_samples)} ({r.lava_samples} samples)")
    return [cell(r.agreement_emulator, r.fired_agreement_emulator, r.mismatches_emulator),
            cell(r.agreement_lava, r.fired_agreement_lava, r.mismatches_lava), same]


#: certification keys that :func:`certification_lines` words itself or that the "Certified
#: robustness, float vs deployed" section shows (neurodeploy.efficiency)
_CERT_SHOWN = {"eps", "verified_error", "method", "ibp_verified_error", "crown_verified_error",
               "deployed", "deployed_verdict", "deployed_threat_model", "float_known_draw"}


def certification_lines(cert: dict[str, Any]) -> list[str]:
    """The certification block in words (no raw JSON): the float model's verified error per
    bound and any other scalar the audit recorded (float vs deployed has its own section)."""
    out: list[str] = []
    if cert.get("verified_error") is not None:
        per = [f"{name} {_pct(cert[key])}" for name, key in
               (("S-IBP", "ibp_verified_error"), ("S-CROWN", "crown_verified_error"))
               if cert.get(key) is not None]
        out.append(f"float model, verified (certified) robust error at ε = {cert.get('eps')}: "
                   f"{_pct(cert['verified_error'])} ({cert.get('method', 'bound')}"
                   + (f"; {', '.join(per)}" if per else "") + ")")
    out += [f"{k}: {v}" for k, v in cert.items()
            if k not in _CERT_SHOWN and isinstance(v, (str, int, float, bool))]
    return out


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
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:right;vertical-align:top}
th{background:#eef2f8;vertical-align:bottom} td:first-child,th:first-child{text-align:left}
@media (max-width:900px){table{font-size:.8rem}td,th{padding:.2rem .3rem}}
#checks td,#checks th,#cascade td,#cascade th,#accuracy td:last-child,#accuracy th:last-child{
text-align:left}
.verdict{background:#f4f8f4;border-left:4px solid #55a868;padding:.5rem 1rem}
.verdict.bad{background:#fbf1f1;border-left-color:#c44e52}
.fail{color:#c44e52;font-weight:bold}.pass{color:#2d7a3e}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0}
.meta{color:#555;font-size:.9rem}
""" + NOWRAP_CSS


def render_html(report: AuditReport) -> str:
    e = html.escape
    m = report.meta
    from neurodeploy.audit.report_plots import plots

    pics = plots(report)
    vlines = report.verdicts or verdicts(report)
    bad = verdict_is_bad(vlines)
    header, rows = _table_rows(report)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>neurodeploy audit</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Hardware robustness audit</h1>",
        f"<p class='meta'>model <code>{e(str(report.model.get('arch', '?')))}</code> · neuron "
        f"{e(str(report.model.get('neuron', 'lif')))} · defense {e(str(report.model.get('defense', 'unknown')))}"
        f" · profile <b>{e(str(report.profile.get('name', '?')))}</b> · samples {e(str(m.get('samples', '?')))}"
        f" · seed {e(str(m.get('seed', '?')))} · git {e(str(m.get('git_sha', '?')))}"
        f" · attack budget <b>{e(str(m.get('budget', '?')))}</b></p>",
        "".join(f"<p class='meta'>{e(v)}</p>" for v in provenance_lines(report)),
        "".join(f"<p class='meta'>{e(v)}</p>" for v in nir_lines(report)),
        f"<div class='verdict{' bad' if bad else ''}'><ul>"
        + "".join(f"<li>{e(v)}</li>" for v in vlines) + "</ul></div>",
        "<h2>Accuracy (every number on the same samples)</h2><table id='accuracy'><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>",
        _exact_html(report),
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
    if report.replay.get("replays"):
        parts.append("<h2>Lava replay agreement</h2><table><tr><th>input</th>"
                     "<th>emulator ≡ Lava</th></tr>")
        for name, v in (report.replay.get("per_input") or {}).items():
            parts.append(f"<tr><td>{e(name)}</td><td>{v['agree']} of {v['replays']} replays"
                         f"</td></tr>")
        parts.append("</table>")
    if report.checks:
        parts.append("<h2>Gradient-masking checks</h2><table id='checks'><tr><th>check</th><th>side</th>"
                     "<th>round</th><th>gradient</th><th>result</th><th>details</th></tr>")
        for c in report.checks:
            cls, word = ("pass", "pass") if c.passed else ("fail", "FAIL")
            parts.append(f"<tr><td>{e(c.name)}</td><td>{e(c.backend)}</td><td>{c.round}</td>"
                         f"<td>{e(c.grad_mode)}</td>"
                         f"<td class='{cls}'>{word}</td><td>{e(c.message)}</td></tr>")
        parts.append("</table>")
    casc = cascade_rows(report)
    if casc:
        parts.append("<h2>Cascade: examples broken first by each attack</h2><table id='cascade'><tr>"
                     "<th>side, threat model</th><th>round</th><th>ε</th><th>broken by</th></tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in casc]
        parts.append("</table>")
    if report.meta.get("escalation_budget"):
        parts.append(f"<p class='meta'>Escalation budget: {e(report.meta['escalation_budget'])}.</p>")
    for rnd in report.escalation:
        parts.append(f"<p class='meta'>Escalation round {rnd['round']}: triggered by "
                     f"{e(str(rnd['trigger']))}; both sides re-attacked; checks re-run with "
                     f"{e(_grad_words(rnd))}, {rnd['check_iterations']} iterations.</p>")
    if report.layers:
        parts.append("<h2>Per-layer table</h2><table><tr><th>layer</th><th>neurons</th>"
                     + "".join(f"<th>{e(h)}</th>" for h in LAYER_AGREEMENT_HEADER)
                     + "<th>rate float</th>"
                     "<th>rate emulator</th><th>weight err</th><th>threshold err</th></tr>")
        for r in report.layers:
            parts.append(
                f"<tr><td>{e(r.layer)}</td><td>{r.neurons}</td>"
                + "".join(f"<td>{e(c)}</td>" for c in layer_agreement_cells(r))
                + f"<td>{_fmt(r.rate_float)}</td>"
                f"<td>{_fmt(r.rate_emulator)}</td><td>{_fmt(r.weight_error)}</td>"
                f"<td>{_fmt(r.threshold_error)}</td></tr>")
        parts.append("</table>")
    from neurodeploy.efficiency import efficiency_html

    parts += efficiency_html(report.efficiency, report.certified)
    vers = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    parts.append(f"<p class='meta'>versions: {e(vers)}</p></body></html>")
    return keep_words_whole("\n".join(parts))
