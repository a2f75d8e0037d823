"""The audit report's figures (PNG, base64 for the self-contained HTML): accuracy vs ε per
side and threat model, per-layer spike agreement and quantization error, threshold traces,
resource use per core. Legends sit under the axes, never over bars or lines."""

from __future__ import annotations

import base64
import io
from typing import Any

from neurodeploy.audit.report import AuditReport, _label


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _legend_below(ax: Any, ncol: int = 1, y: float = -0.2) -> None:
    """The legend under the axes, ``y`` axes heights down (never over bars or lines)."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, y), ncol=ncol,
              frameon=False)


def layers_figure(report: AuditReport) -> Any:
    """Per-layer spike agreement (float ↔ emulator, float ↔ Lava) and quantization error,
    legends under the axes; the agreement axis is truncated and says where it starts."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    fig.subplots_adjust(wspace=0.38)  # room for the right panel's y label
    names = [r.layer for r in report.layers]
    xs = range(len(names))
    ag_e = [100 * (r.agreement_emulator or 0) for r in report.layers]
    ag_l = [100 * r.agreement_lava if r.agreement_lava is not None else 0 for r in report.layers]
    axes[0].bar([x - 0.2 for x in xs], ag_e, width=0.4, label="float ↔ emulator")
    if any(r.agreement_lava is not None for r in report.layers):
        axes[0].bar([x + 0.2 for x in xs], ag_l, width=0.4, label="float ↔ Lava")
    axes[0].set_xticks(list(xs), names, rotation=30, fontsize=8)
    low = min([90.0, *ag_e, *(100 * r.agreement_lava for r in report.layers
                              if r.agreement_lava is not None)]) - 1
    axes[0].set_ylabel(f"spike agreement (%; axis starts at {low:.0f} %)")
    axes[0].set_ylim(low, 100.5)
    _legend_below(axes[0])
    axes[0].set_title("Per-layer spike agreement")
    we = [r.weight_error or 0 for r in report.layers]
    te = [r.threshold_error or 0 for r in report.layers]
    axes[1].bar([x - 0.2 for x in xs], we, width=0.4, label="weight (rel. to max|W|)")
    axes[1].bar([x + 0.2 for x in xs], te, width=0.4, label="threshold (relative)")
    axes[1].set_xticks(list(xs), names, rotation=30, fontsize=8)
    axes[1].set_ylabel("max quantization error")
    _legend_below(axes[1])
    axes[1].set_title("Per-layer quantization error")
    return fig


def accuracy_figure(report: AuditReport) -> Any:
    """Accuracy vs ε per side (colour) and threat model (line style and marker), with the
    rows' 95 % intervals as error bars; the legend, below the axes, names both."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    upper = any(r.upper_bound for r in report.accuracy)
    styles = {"known draw": ("-", "o"), "unknown draw": ("--", "s")}
    colours = {"float": "#1f77b4", "deployed": "#d62728"}
    handles = []
    for tm in report.threat_models():
        ls, mk = styles.get(tm, (":", "^"))
        for b in ("float", "deployed"):
            xs, ys, err = _accuracy_points(report, b, tm)
            if len(xs) > 1:
                ax.errorbar(xs, ys, yerr=err, marker=mk, capsize=3, linestyle=ls,
                            color=colours[b], mfc="white" if tm == "unknown draw" else None)
        handles.append(Line2D([], [], color="#444", linestyle=ls, marker=mk,
                              mfc="white" if tm == "unknown draw" else None, label=tm))
    handles += _exact_points(ax, report, colours)
    handles = [Line2D([], [], color=colours[b], lw=3, label=_label(b, report))
               for b in ("float", "deployed")] + handles
    ax.set_xlabel("ε (ℓ∞)")
    ax.set_ylabel("robust accuracy (%)" + (" — upper bounds" if upper else ""))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=2, frameon=False)
    n = report.meta.get("samples", "?")
    ax.set_title(f"Robust accuracy vs ε, float vs deployed (the same {n} samples)")
    return fig


def _exact_points(ax: Any, report: AuditReport, colours: dict[str, str]) -> list[Any]:
    """The exact verifier's robust accuracy per (side, ε) (:mod:`neurodeploy.audit.exact`):
    a diamond at ``robust/n`` and a pale bar up to ``(robust + unknown)/n``; its legend entry."""
    from matplotlib.lines import Line2D

    rows = [r for r in (report.exact or {}).get("rows", []) if r.get("run")]
    for r in rows:
        lo, hi = (100 * v for v in r["exact_interval"])
        c = colours.get(r["side"], "#444")
        if hi > lo:
            ax.plot([r["eps"], r["eps"]], [lo, hi], color=c, lw=6, alpha=0.3,
                    solid_capstyle="butt")
        ax.plot([r["eps"]], [lo], marker="D", color=c, mec="black", linestyle="none")
    if not rows:
        return []
    return [Line2D([], [], color="#444", marker="D", mec="black", linestyle="none",
                   label="exact, known draw (bar: undecided)")]


def _accuracy_points(report: AuditReport, backend: str, tm: str
                     ) -> tuple[list[float], list[float], list[list[float]]]:
    """(ε, accuracy %, [below, above] error lengths) of one side under one threat model, the
    clean accuracy at ε = 0 first."""
    xs, ys, lo, hi = [], [], [], []
    clean = next((r for r in report.accuracy if r.backend == backend and r.attack == "clean"
                  and r.threat_model == tm), report.clean(backend))
    rows = [clean] + [report.lookup(backend, "worst", e, tm) for e in report.epsilons()]
    for r in rows:
        if r is None:
            continue
        xs.append(0.0 if r.attack == "clean" else r.eps)
        ys.append(100 * r.accuracy)
        lo.append(max(0.0, 100 * (r.accuracy - r.ci95[0])) if r.ci95 else 0.0)
        hi.append(max(0.0, 100 * (r.ci95[1] - r.accuracy)) if r.ci95 else 0.0)
    return xs, ys, [lo, hi]


def plots(report: AuditReport) -> dict[str, str]:
    """Base64 PNGs keyed by plot name (only the plots the data supports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    if report.epsilons():
        out["accuracy_vs_eps"] = _figure_png(accuracy_figure(report))
    if report.layers:
        out["layers"] = _figure_png(layers_figure(report))
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
        _legend_below(ax, ncol=2, y=-0.16)
        used_c = report.resources.get("cores_used")
        avail = report.resources.get("cores_available")
        ax.set_title(f"Resource use per core ({used_c} of {avail} cores)" if used_c else
                     "Resource use per core")
        out["resources"] = _figure_png(fig)
    return out
