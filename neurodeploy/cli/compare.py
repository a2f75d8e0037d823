"""``neurodeploy compare``: join several audits into two tables and one plot — robust accuracy
of the float and the deployed model (with its 95 % interval, n, attack budget, threat model and
defense), and beside it certified error, activity, chip fit and the estimated energy per
inference::

    neurodeploy compare runs/plain/audit.json runs/certified/ --label plain --label certified \\
        --eps 0.1 --threat unknown --out cmp

Writes ``OUT/compare.json``, ``OUT/compare.md``, ``OUT/compare.html`` and ``OUT/compare.png``.
Every robust accuracy is shown with a 95 % interval: the audit's own (``ci95``) where it has
one, otherwise the Wilson score interval computed here from the accuracy p̂ and n,

    (p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n),   z = 1.96,

which for the unknown draw counts only the spread over examples, not over draws (said in the
table's note). The plot's y axis is 0–100 %. Energy figures come from each audit's
``efficiency`` section (the profile's per-operation figures, marked approximate); an audit
without one is listed with "–" and plotted on a categorical axis instead (or left out of the
energy plot, named in its caption). An ε or threat model that some audit lacks is exit 2.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from neurodeploy.audit.html_text import NOWRAP_CSS, keep_words_whole

#: spellings of ``--threat`` → the threat-model name the audit rows carry
THREATS = {"known": "known draw", "known draw": "known draw", "known-draw": "known draw",
           "unknown": "unknown draw", "unknown draw": "unknown draw",
           "unknown-draw": "unknown draw"}
Z95 = 1.959963984540054


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="join audit.json files: robust accuracy (95 %% CI) vs energy per inference",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audits", nargs="+", help="audit.json files (or folders holding one)")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="name of the next audit, in order (repeat once per audit; default: "
                   "the audit's folder name)")
    p.add_argument("--labels", default=None,
                   help="comma-separated names, one per audit (the same as repeating --label)")
    p.add_argument("--eps", type=float, default=None,
                   help="ε of the robust accuracy (default: the largest ε every audit has); "
                   "an ε some audit lacks is an error (exit 2)")
    p.add_argument("--threat", default="known draw", metavar="THREAT",
                   help="threat model of the robust accuracy: known, unknown, 'known draw' or "
                   "'unknown draw' (default: known draw)")
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="accepted for symmetry with the other commands (compare shows no "
                   "progress bars)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------- reading audits


def _load(path: str) -> tuple[Path, dict[str, Any]]:
    from neurodeploy.errors import ConfigError, DataError

    p = Path(path)
    if p.is_dir():
        p = p / "audit.json"
    if not p.is_file():
        raise ConfigError(f"audit {path!r}: no such file (expected an audit.json or its folder)")
    from neurodeploy.safeload import load_json

    d = load_json(p, "audit", DataError)  # depth-limited: a 100 000-deep file is exit 2
    if not isinstance(d, dict) or "accuracy" not in d or "profile" not in d:
        raise DataError(f"{p}: not an audit report (no accuracy/profile sections)")
    return p, d


def threat_name(text: str) -> str:
    """``known``/``unknown`` (or the full names) → ``known draw``/``unknown draw``."""
    from neurodeploy.errors import ConfigError

    key = " ".join(text.strip().lower().split())
    if key not in THREATS:
        raise ConfigError(f"--threat {text!r}: expected known, unknown, 'known draw' or "
                          f"'unknown draw'")
    return THREATS[key]


def _tm(r: dict[str, Any]) -> str:
    return r.get("threat_model", "known draw")


def _row(d: dict[str, Any], backend: str, eps: float | None, threat: str
         ) -> dict[str, Any] | None:
    """The audit's accuracy row of ``backend``: the clean one (``eps=None``; the threat
    model's own clean row when the audit has one, else its clean row) or the per-example worst
    case at ``eps`` under ``threat``."""
    rows = [r for r in d.get("accuracy", []) if r.get("backend") == backend]
    if eps is None:
        clean = [r for r in rows if r.get("attack") == "clean"]
        return next((r for r in clean if _tm(r) == threat), clean[0] if clean else None)
    return next((r for r in rows if r.get("attack") == "worst" and _tm(r) == threat
                 and abs(float(r["eps"]) - eps) < 1e-12), None)


def eps_of(d: dict[str, Any], threat: str) -> set[float]:
    """The ε of the audit's worst-case rows under ``threat``."""
    return {float(r["eps"]) for r in d.get("accuracy", [])
            if r.get("attack") == "worst" and _tm(r) == threat}


def pick_eps(audits: list[tuple[str, dict[str, Any]]], eps: float | None, threat: str) -> float:
    """``eps`` when every audit has it under ``threat`` (default: the largest common ε);
    otherwise a ConfigError naming what each audit has."""
    from neurodeploy.errors import ConfigError

    have = [(label, eps_of(d, threat)) for label, d in audits]
    listing = "; ".join(f"{label}: {', '.join(f'{e:g}' for e in sorted(s)) or 'none'}"
                        for label, s in have)
    common = set.intersection(*[s for _, s in have])
    if eps is None:
        if not common:
            raise ConfigError(f"no ε common to every audit under the {threat} "
                              f"(ε per audit — {listing})")
        return max(common)
    if not any(abs(eps - e) < 1e-12 for e in common):
        lacking = [label for label, s in have if not any(abs(eps - e) < 1e-12 for e in s)]
        raise ConfigError(f"--eps {eps:g} ({threat}): not in audit {', '.join(lacking)} "
                          f"(ε per audit — {listing})")
    return eps


# ---------------------------------------------------------------------- intervals


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` from ``n`` trials (equation in the module
    docstring); ``(0, 1)`` when ``n < 1``."""
    if n < 1:
        return 0.0, 1.0
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def interval(r: dict[str, Any] | None) -> tuple[list[float] | None, str]:
    """The 95 % interval of an accuracy row and where it comes from."""
    if r is None:
        return None, ""
    if r.get("ci95"):
        lo, hi = (float(v) for v in r["ci95"])
        return [lo, hi], str(r.get("ci_method") or r.get("ci95_method") or "the audit's")
    lo, hi = wilson(float(r["accuracy"]), int(r.get("n") or 0))
    return [lo, hi], "Wilson (from n, computed by compare)"


# ---------------------------------------------------------------------- rows


def _defense(model: dict[str, Any]) -> str:
    """The training defense as the audit records it (``model.defense``, its training ε in
    ``model.defense_eps``); "unknown" where the audit does not say."""
    d = model.get("defense")
    eps = model.get("defense_eps")
    if isinstance(d, dict):  # {"name": …, "eps": …}
        d, eps = d.get("name"), d.get("eps", eps)
    name = str(d) if d else "unknown"
    if isinstance(eps, (int, float)) and not isinstance(eps, bool) and name not in (
            "none", "unknown"):
        return f"{name} (ε {eps:.3g} = {255 * eps:.3g}/255)"
    return name


def _budget(d: dict[str, Any], r: dict[str, Any] | None, threat: str) -> str:
    """The attack budget of a robust row: its preset (``auto``, ``auto-demo`` = reduced) or
    single attacks with their iterations, and EoT × draws under the unknown draw."""
    cfg = (d.get("meta") or {}).get("config") or {}
    label = (r or {}).get("preset") or (d.get("meta") or {}).get("budget") or "?"
    parts = [label]
    if "demo" in label:
        parts[0] += " (reduced)"
    singles = [a for a in label.split("+") if not a.startswith("auto")]
    if singles and cfg.get("attack_steps"):
        parts.append(f"{cfg['attack_steps']} it.")
    if threat == "unknown draw" and r is not None:
        if cfg.get("eot"):
            parts.append(f"EoT {cfg['eot']}")
        parts.append(f"{r.get('draws', 1)} draws")
    return ", ".join(parts)


def _robust(d: dict[str, Any], eps: float, threat: str, side: str) -> dict[str, Any]:
    r = _row(d, side, eps, threat)
    ci, how = interval(r)
    return {f"robust_{side}": None if r is None else float(r["accuracy"]),
            f"robust_{side}_ci95": ci, f"robust_{side}_ci_source": how,
            f"robust_{side}_upper_bound": bool(r and r.get("upper_bound"))}


def _cost(d: dict[str, Any]) -> dict[str, Any]:
    eff = d.get("efficiency") or {}
    cost = eff.get("cost_clean") or {}
    dep = (eff.get("clean") or {}).get("deployed") or {}
    cert = d.get("certified") or {}
    return {
        "verified_error_float": cert.get("verified_error"),
        "verified_error_deployed": (cert.get("deployed") or {}).get("verified_error"),
        "cert_eps": cert.get("eps"),
        "energy_nj": cost.get("energy_per_inference_nj"),
        "energy_adversarial_nj": (eff.get("cost_adversarial") or {}).get(
            "energy_per_inference_nj"),
        "latency_us": cost.get("latency_per_inference_us"),
        "synops": (dep.get("totals") or {}).get("synaptic_operations"),
        "activation_sparsity": (dep.get("totals") or {}).get("activation_sparsity"),
        "synops_ratio_adversarial": ((eff.get("ratio_adversarial_over_clean") or {}).get(
            "deployed") or {}).get("synaptic_operations"),
        "cores_used": (dep.get("chip_fit") or {}).get("cores_used")
        or (d.get("resources") or {}).get("cores_used"),
        "energy_source": cost.get("source"),
        "energy_approximate": cost.get("approximate"),
    }


def compare_rows(audits: list[tuple[str, dict[str, Any]]], eps: float | None, threat: str
                 ) -> tuple[float, list[dict[str, Any]]]:
    """One row per audit (label, audit dict) at ``eps`` (default: the largest common ε) under
    ``threat`` (``known draw`` / ``unknown draw``)."""
    eps = pick_eps(audits, eps, threat)
    rows = []
    for label, d in audits:
        robust = _row(d, "deployed", eps, threat) or _row(d, "float", eps, threat)
        clean_f, clean_d = _row(d, "float", None, threat), _row(d, "deployed", None, threat)
        rows.append({
            "label": label,
            "model": (d.get("model") or {}).get("arch"),
            "profile": (d.get("profile") or {}).get("name"),
            "defense": _defense(d.get("model") or {}),
            "threat_model": threat,
            "n": int(robust["n"]) if robust and robust.get("n") is not None else None,
            "budget": _budget(d, robust, threat),
            "clean_float": None if clean_f is None else float(clean_f["accuracy"]),
            "clean_deployed": None if clean_d is None else float(clean_d["accuracy"]),
            **_robust(d, eps, threat, "float"), **_robust(d, eps, threat, "deployed"),
            **_cost(d),
        })
    return eps, rows


# ---------------------------------------------------------------------- rendering


def _fmt(v: Any, pct: bool = False, digits: int = 3) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):  # three significant digits, thousands as 12,300
        return f"{v:,.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"
    return str(v)


def _acc_ci(r: dict[str, Any], side: str) -> str:
    v, ci = r[f"robust_{side}"], r[f"robust_{side}_ci95"]
    if v is None:
        return "–"
    text = f"{'≤ ' if r[f'robust_{side}_upper_bound'] else ''}{100 * v:.1f} %"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


#: (header, cell) of the three tables: what was audited, accuracy, certification and cost
AUDIT_COLUMNS = [
    ("audit", lambda r: str(r["label"])), ("model", lambda r: _fmt(r["model"])),
    ("defense", lambda r: r["defense"]), ("profile", lambda r: _fmt(r["profile"])),
    ("threat model", lambda r: r["threat_model"]), ("n", lambda r: _fmt(r["n"])),
    ("attack budget", lambda r: r["budget"]),
]
ROBUST_COLUMNS = [
    ("audit", lambda r: str(r["label"])),
    ("clean float", lambda r: _fmt(r["clean_float"], True)),
    ("clean deployed", lambda r: _fmt(r["clean_deployed"], True)),
    ("robust float (95 % CI)", lambda r: _acc_ci(r, "float")),
    ("robust deployed (95 % CI)", lambda r: _acc_ci(r, "deployed")),
]
COST_COLUMNS = [
    ("audit", lambda r: str(r["label"])),
    ("verified error float → deployed", lambda r: f"{_fmt(r['verified_error_float'])} → "
     f"{_fmt(r['verified_error_deployed'])}"),
    ("energy per inference (nJ, approx.)", lambda r: _fmt(r["energy_nj"])),
    ("latency per inference (µs, approx.)", lambda r: _fmt(r["latency_us"])),
    ("synops per inference", lambda r: _fmt(r["synops"])),
    ("activation sparsity", lambda r: _fmt(r["activation_sparsity"])),
    ("synops adversarial / clean", lambda r: _fmt(r["synops_ratio_adversarial"])),
    ("cores", lambda r: _fmt(r["cores_used"])),
]
#: (id, title, columns) of each table
TABLES = [("compare-audits", "Audits compared", AUDIT_COLUMNS),
          ("compare-robust", "Robust accuracy", ROBUST_COLUMNS),
          ("compare-cost", "Certified error and chip cost", COST_COLUMNS)]


def tables(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The tables as (id, title, header, cells)."""
    return [(tid, title, [h for h, _ in cols], [[f(r) for _, f in cols] for r in rows])
            for tid, title, cols in TABLES]


def notes(eps: float, threat: str, rows: list[dict[str, Any]]) -> list[str]:
    """What the numbers are, in words (shared by the Markdown and the HTML)."""
    sources = sorted({r[f"robust_{s}_ci_source"] for r in rows for s in ("float", "deployed")
                      if r[f"robust_{s}_ci_source"]})
    src = sorted({r["energy_source"] for r in rows if r["energy_source"]})
    out = [f"Robust accuracy: per-example worst case over each audit's attacks at ε = {eps:g} "
           f"({eps * 255:.1f}/255), {threat}; an attack's number is an upper bound on the true "
           f"robust accuracy (≤: a gradient-masking check failed or did not run). 95 % "
           f"intervals: {'; '.join(sources) or 'none'}."]
    if threat == "unknown draw" and any("Wilson" in s for s in sources):
        out.append("A Wilson interval computed from n covers the spread over examples only, "
                   "not over draws.")
    out.append(f"Energy and latency are estimates from per-operation figures "
               f"({'; '.join(src) or 'none'}) and the emulator's activity on the clean inputs — "
               f"approximate.")
    return out


def render_markdown(eps: float, threat: str, rows: list[dict[str, Any]], has_plot: bool) -> str:
    lines = ["# neurodeploy compare", "", *notes(eps, threat, rows)]
    for _, title, head, body in tables(rows):
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head), *["| " + " | ".join(c) + " |" for c in body]]
    if has_plot:
        lines += ["", "![robust accuracy with 95 % intervals](compare.png)"]
    return "\n".join([*lines, ""])


_CSS = ("body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;"
        "padding:0 1rem;color:#222}table{border-collapse:collapse;margin:.5rem 0;"
        "font-size:.85rem}td,th{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;"
        "vertical-align:top}th{background:#eef2f8}td:first-child,th:first-child{text-align:left}"
        "#compare-audits td,#compare-audits th{text-align:left}"
        "img{max-width:100%;height:auto}p{max-width:60rem}"
        "@media (max-width:900px){table{font-size:.78rem}td,th{padding:.2rem .3rem}}")


def _cell(text: str) -> str:
    return html.escape(text, quote=False)


def render_html(eps: float, threat: str, rows: list[dict[str, Any]], png: Path | None) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width'>",
             f"<title>neurodeploy compare</title><style>{_CSS}{NOWRAP_CSS}</style></head><body>",
             "<h1>neurodeploy compare</h1>",
             *[f"<p>{_cell(n)}</p>" for n in notes(eps, threat, rows)]]
    for tid, title, head, body in tables(rows):
        parts.append(f"<h2>{title}</h2><table id='{tid}'><tr>"
                     + "".join(f"<th>{_cell(h)}</th>" for h in head) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>"
                               for row in body) + "</table>")
    if png is not None and png.is_file():
        b64 = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append('<img id="compare-plot" alt="robust accuracy with 95 % intervals" '
                     f'src="data:image/png;base64,{b64}">')
    return keep_words_whole("\n".join([*parts, "</body></html>"]))


# ---------------------------------------------------------------------- plot


def _yerr(rows: list[dict[str, Any]], side: str) -> list[list[float]]:
    """Error-bar lengths (below, above) in percent points from each row's interval."""
    lo = [100 * max(0.0, r[f"robust_{side}"] - r[f"robust_{side}_ci95"][0]) for r in rows]
    hi = [100 * max(0.0, r[f"robust_{side}_ci95"][1] - r[f"robust_{side}"]) for r in rows]
    return [lo, hi]


def _draw_side(ax: Any, xs: list[float], rows: list[dict[str, Any]], side: str) -> None:
    pts = [(x, r) for x, r in zip(xs, rows, strict=True) if r[f"robust_{side}"] is not None]
    if not pts:
        return
    style = ({"color": "#d62728", "fmt": "o", "label": "deployed (bit-exact emulator)"}
             if side == "deployed" else
             {"color": "#1f77b4", "fmt": "s", "mfc": "none", "label": "float model"})
    px, pr = [p[0] for p in pts], [p[1] for p in pts]
    ax.errorbar(px, [100 * r[f"robust_{side}"] for r in pr], yerr=_yerr(pr, side), capsize=4,
                elinewidth=1.2, zorder=3, **style)


def figure(eps: float, threat: str, rows: list[dict[str, Any]]) -> Any:
    """Robust accuracy float and deployed with 95 % error bars, y axis 0–100 %: against the
    estimated energy per inference when an audit has energy figures, else one column per
    audit. ``None`` when no audit has a robust accuracy at ``eps``."""
    rows = [r for r in rows if r["robust_deployed"] is not None or r["robust_float"] is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on_energy = [r for r in rows if r["energy_nj"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if on_energy:
        xs = [float(r["energy_nj"]) for r in on_energy]
        for side, f in (("float", 0.96), ("deployed", 1.04)):  # side by side on a log axis
            _draw_side(ax, [x * f for x in xs], on_energy, side)
        for x, r in zip(xs, on_energy, strict=True):
            y = r["robust_deployed"] if r["robust_deployed"] is not None else r["robust_float"]
            ax.annotate(r["label"], (x, 100 * y), textcoords="offset points", xytext=(6, 4),
                        fontsize=8)
        ax.set_xscale("log")
        from matplotlib.ticker import LogFormatter

        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
        ax.set_xlabel("estimated energy per inference on the chip (nJ, approximate)")
        left = [r["label"] for r in rows if r["energy_nj"] is None]
        if left:
            ax.text(0.0, -0.2, f"not plotted (no energy figures): {', '.join(left)}",
                    transform=ax.transAxes, fontsize=7, va="top")
    else:
        xs = list(range(len(rows)))
        for side, dx in (("float", -0.1), ("deployed", 0.1)):
            _draw_side(ax, [x + dx for x in xs], rows, side)
        ax.set_xticks(xs, [r["label"] for r in rows], fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"robust accuracy at ε = {eps:g} (%, 95 % CI)")
    ax.set_title(f"Robust accuracy, float vs deployed ({threat})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot(eps: float, threat: str, rows: list[dict[str, Any]], path: Path) -> bool:
    """Write :func:`figure` as a PNG to ``path``; False when there is nothing to plot."""
    fig = figure(eps, threat, rows)
    if fig is None:
        return False
    import io

    import matplotlib.pyplot as plt

    from neurodeploy.atomicio import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return True


# ---------------------------------------------------------------------- command


def _labels(args: argparse.Namespace, loaded: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    from neurodeploy.errors import ConfigError

    if args.label and args.labels:
        raise ConfigError("give the names with --label (repeated) or --labels, not both")
    labels = list(args.label) or ([s.strip() for s in args.labels.split(",")]
                                  if args.labels else [])
    if not labels:
        return [p.parent.name or p.stem for p, _ in loaded]
    if len(labels) != len(loaded):
        opt = "--label" if args.label else "--labels"
        raise ConfigError(f"{opt} names {len(labels)} audit(s), {len(loaded)} given")
    return labels


def run(args: argparse.Namespace) -> int:
    from neurodeploy.atomicio import write_text_atomic

    threat = threat_name(args.threat)
    loaded = [_load(a) for a in args.audits]
    labels = _labels(args, loaded)
    eps, rows = compare_rows([(lab, d) for lab, (_, d) in zip(labels, loaded, strict=True)],
                             args.eps, threat)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    has_plot = plot(eps, threat, rows, out / "compare.png")
    md = render_markdown(eps, threat, rows, has_plot)
    write_text_atomic(out / "compare.json", json.dumps(
        {"eps": eps, "threat_model": threat, "rows": rows,
         "audits": [str(p) for p, _ in loaded]}, indent=2))
    write_text_atomic(out / "compare.md", md)
    write_text_atomic(out / "compare.html", render_html(eps, threat, rows, out / "compare.png"
                                                        if has_plot else None))
    print("\n".join(ln for ln in md.splitlines() if ln.startswith("|")))
    print(f"wrote {out}/compare.{{json,md,html}}" + (" and compare.png" if has_plot else ""))
    return 0
