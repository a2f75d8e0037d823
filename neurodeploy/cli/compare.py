"""``neurodeploy compare``: join several audits into one table and one plot — robust accuracy
of the deployed model against its estimated energy per inference, beside the float model's
robust accuracy, certified error float vs deployed, activity and chip fit::

    neurodeploy compare runs/plain/audit.json runs/certified/audit.json runs/talif/ --out cmp

Writes ``OUT/compare.json``, ``OUT/compare.md``, ``OUT/compare.html`` and
``OUT/compare.png``. Energy figures come from each audit's ``efficiency`` section (the
profile's per-operation figures, marked approximate); an audit without one is listed with
"–" and left out of the plot.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="join audit.json files: robust accuracy vs energy per inference",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audits", nargs="+", help="audit.json files (or folders holding one)")
    p.add_argument("--labels", default=None, help="comma-separated names, one per audit")
    p.add_argument("--eps", type=float, default=None,
                   help="ε of the robust accuracy (default: the largest ε every audit has)")
    p.add_argument("--threat", default="known draw", choices=("known draw", "unknown draw"),
                   help="threat model of the robust accuracy (default: known draw)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="(no progress to silence)")
    p.set_defaults(func=run)


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


def _acc(d: dict[str, Any], backend: str, eps: float | None, threat: str) -> float | None:
    for r in d.get("accuracy", []):
        if r.get("backend") != backend:
            continue
        if eps is None and r.get("attack") == "clean":
            return float(r["accuracy"])
        if (eps is not None and r.get("attack") == "worst" and abs(r["eps"] - eps) < 1e-12
                and r.get("threat_model", "known draw") == threat):
            return float(r["accuracy"])
    return None


def _eps_of(d: dict[str, Any], threat: str) -> set[float]:
    return {float(r["eps"]) for r in d.get("accuracy", [])
            if r.get("attack") == "worst" and r.get("threat_model", "known draw") == threat}


def compare_rows(audits: list[tuple[str, dict[str, Any]]], eps: float | None, threat: str
                 ) -> tuple[float | None, list[dict[str, Any]]]:
    """One row per audit (label, audit dict) at ``eps`` (default: the largest common ε)."""
    if eps is None:
        common = set.intersection(*[_eps_of(d, threat) for _, d in audits]) if audits else set()
        eps = max(common) if common else None
    rows = []
    for label, d in audits:
        eff = d.get("efficiency") or {}
        cost = eff.get("cost_clean") or {}
        cost_adv = eff.get("cost_adversarial") or {}
        dep = ((eff.get("clean") or {}).get("deployed") or {}).get("totals") or {}
        ratio = ((eff.get("ratio_adversarial_over_clean") or {}).get("deployed") or {})
        cert = d.get("certified") or {}
        dcert = cert.get("deployed") or {}
        fit = ((eff.get("clean") or {}).get("deployed") or {}).get("chip_fit") or {}
        rows.append({
            "label": label,
            "model": (d.get("model") or {}).get("arch"),
            "profile": (d.get("profile") or {}).get("name"),
            "clean_float": _acc(d, "float", None, threat),
            "clean_deployed": _acc(d, "deployed", None, threat),
            "robust_float": _acc(d, "float", eps, threat) if eps is not None else None,
            "robust_deployed": _acc(d, "deployed", eps, threat) if eps is not None else None,
            "verified_error_float": cert.get("verified_error"),
            "verified_error_deployed": dcert.get("verified_error"),
            "cert_eps": cert.get("eps"),
            "energy_nj": cost.get("energy_per_inference_nj"),
            "energy_adversarial_nj": cost_adv.get("energy_per_inference_nj"),
            "latency_us": cost.get("latency_per_inference_us"),
            "synops": dep.get("synaptic_operations"),
            "activation_sparsity": dep.get("activation_sparsity"),
            "synops_ratio_adversarial": ratio.get("synaptic_operations"),
            "cores_used": fit.get("cores_used") or (d.get("resources") or {}).get("cores_used"),
            "energy_source": cost.get("source"),
            "energy_approximate": cost.get("approximate"),
        })
    return eps, rows


def _fmt(v: Any, pct: bool = False, digits: int = 3) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e3 or abs(v) < 1e-2 else f"{v:.{digits}f}"
    return str(v)


COLUMNS = [
    ("label", "model", False), ("profile", "profile", False),
    ("clean_float", "clean float", True), ("clean_deployed", "clean deployed", True),
    ("robust_float", "robust float", True), ("robust_deployed", "robust deployed", True),
    ("verified_error_float", "verified err float", False),
    ("verified_error_deployed", "verified err deployed", False),
    ("energy_nj", "energy/inference (nJ, approx.)", False),
    ("latency_us", "latency/inference (µs, approx.)", False),
    ("synops", "synops/inference", False), ("activation_sparsity", "act. sparsity", False),
    ("synops_ratio_adversarial", "synops adv/clean", False), ("cores_used", "cores", False),
]


def render_markdown(eps: float | None, threat: str, rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(_fmt(r[k], pct) for k, _, pct in COLUMNS) + " |" for r in rows]
    src = sorted({r["energy_source"] for r in rows if r["energy_source"]})
    note = (f"Robust accuracy: worst case over the audit's attacks at ε = {eps} ({threat}). "
            f"Energy and latency are estimates from per-operation figures ({'; '.join(src) or 'none'}) "
            "and the emulator's activity on the clean inputs — approximate.")
    return "\n".join(["# neurodeploy compare", "", note, "", head, sep, *body, "",
                      "![robust accuracy vs energy](compare.png)", ""])


def plot(eps: float | None, threat: str, rows: list[dict[str, Any]], path: Path) -> bool:
    pts = [r for r in rows if r["energy_nj"] is not None and r["robust_deployed"] is not None]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurodeploy.atomicio import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in pts:
        x = r["energy_nj"]
        ax.scatter([x], [100 * r["robust_deployed"]], color="#d62728", zorder=3)
        if r["robust_float"] is not None:
            ax.scatter([x], [100 * r["robust_float"]], facecolors="none", edgecolors="#1f77b4",
                       zorder=3)
            ax.plot([x, x], [100 * r["robust_float"], 100 * r["robust_deployed"]], color="#999",
                    lw=0.8, zorder=2)
        ax.annotate(r["label"], (x, 100 * r["robust_deployed"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.scatter([], [], color="#d62728", label="deployed (emulator = Lava)")
    ax.scatter([], [], facecolors="none", edgecolors="#1f77b4", label="float model")
    ax.set_xscale("log")
    ax.set_xlabel("estimated energy per inference on the chip (nJ, approximate)")
    ax.set_ylabel(f"robust accuracy at ε = {eps} (%)")
    ax.set_title(f"Robustness vs energy ({threat})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return True


def render_html(md_table: str, png: Path | None) -> str:
    import html

    lines = md_table.splitlines()
    rows = [ln for ln in lines if ln.startswith("|") and not ln.startswith("|---")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]
    table = "<table>" + "".join(
        "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>"
                         for c in row) + "</tr>" for i, row in enumerate(cells)) + "</table>"
    note = next((ln for ln in lines if ln.startswith("Robust accuracy")), "")
    img = ""
    if png is not None and png.is_file():
        b64 = base64.b64encode(png.read_bytes()).decode("ascii")
        img = f'<img id="compare-plot" alt="robust accuracy vs energy" src="data:image/png;base64,{b64}">'
    return ("<!doctype html><html><head><meta charset='utf-8'><title>neurodeploy compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
            f"<h1>neurodeploy compare</h1><p>{html.escape(note)}</p>{table}{img}</body></html>")


def run(args: argparse.Namespace) -> int:
    from neurodeploy.atomicio import write_text_atomic
    from neurodeploy.errors import ConfigError

    loaded = [_load(a) for a in args.audits]
    if args.labels:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != len(loaded):
            raise ConfigError(f"--labels names {len(labels)} audits, {len(loaded)} given")
    else:
        labels = [p.parent.name or p.stem for p, _ in loaded]
    eps, rows = compare_rows([(lab, d) for lab, (_, d) in zip(labels, loaded, strict=True)],
                             args.eps, args.threat)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = render_markdown(eps, args.threat, rows)
    has_plot = plot(eps, args.threat, rows, out / "compare.png")
    write_text_atomic(out / "compare.json", json.dumps(
        {"eps": eps, "threat_model": args.threat, "rows": rows,
         "audits": [str(p) for p, _ in loaded]}, indent=2))
    write_text_atomic(out / "compare.md", md)
    write_text_atomic(out / "compare.html", render_html(md, out / "compare.png" if has_plot
                                                        else None))
    print("\n".join(ln for ln in md.splitlines() if ln.startswith("|")))
    print(f"wrote {out}/compare.{{json,md,html}}" + (" and compare.png" if has_plot else
                                                     " (no plot: no audit has energy figures)"))
    return 0
