"""The exact stage in words: verdict lines and the table of the report (from ``report.exact``,
:mod:`neurodeploy.audit.exact`), never written by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurodeploy.audit.report import AuditReport

HEADER = ["side", "ε", "certified (lower bound)", "exact", "attack (upper bound)", "decided",
          "attack completeness", "soundness", "seconds"]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100.0 * v:.1f} %"


def exact_words(row: dict[str, Any]) -> str:
    """``52.0 %`` when every example is decided, else ``[48.0, 56.0] %``."""
    if row.get("exact") is not None:
        return _pct(row["exact"])
    lo, hi = row["exact_interval"]
    return f"[{100 * lo:.1f}, {100 * hi:.1f}] %"


def completeness_words(row: dict[str, Any]) -> str:
    """``11 of 12 non-robust found (91.7 %)``; ``no non-robust example`` when there is none."""
    c = row["completeness"]
    if not c["non_robust"]:
        return "no non-robust example"
    return (f"{c['found_by_attack']} of {c['non_robust']} non-robust found "
            f"({_pct(c['fraction'])})")


def _soundness(row: dict[str, Any]) -> str:
    if row["sound"]:
        return "consistent"
    v = row["violations"]
    parts = [f"{k.replace('_', ' ')} {idx}" for k, idx in v.items() if idx]
    return "VIOLATION: " + "; ".join(parts)


def table_rows(report: AuditReport) -> list[list[str]]:
    """One row per (side, ε) of the exact stage (``not run`` rows say why)."""
    from neurodeploy.audit.report import _label

    out = []
    for r in (report.exact or {}).get("rows", []):
        side = _label(r["side"], report)
        if not r.get("run"):
            out.append([side, f"{r['eps']:g}", "–", f"not run: {r['why']}", "–", "–", "–", "–",
                        "–"])
            continue
        c = r["counts"]
        out.append([side, f"{r['eps']:g}", _pct(r["certified"]), exact_words(r),
                    _pct(r["attack"]),
                    f"{c['robust'] + c['non_robust']} of {r['n']} ({_pct(r['decided_fraction'])})",
                    completeness_words(r), _soundness(r), f"{r['seconds']:.1f}"])
    return out


def exact_lines(report: AuditReport) -> list[str]:
    """Verdict sentences of the exact stage: the sandwich per (side, ε), the attacks'
    completeness, soundness violations loudly, the sides not run and the Lava replay."""
    from neurodeploy.audit.report import _label

    ex = report.exact
    if not ex:
        return []
    lines = []
    for r in ex.get("rows", []):
        who = _label(r["side"], report)
        if not r.get("run"):
            lines.append(f"Exact verification, {who}, ε={r['eps']:g}: not run — {r['why']}.")
            continue
        c = r["counts"]
        decided = c["robust"] + c["non_robust"]
        text = (f"Exact verification at ε={r['eps']:g} ({ex.get('threat_model', 'known draw')}), "
                f"{who}: certified {_pct(r['certified'])} ≤ exact {exact_words(r)} ≤ attack "
                f"{_pct(r['attack'])}; {decided} of {r['n']} examples decided "
                f"(solver timeout {ex.get('timeout_s'):g} s per example); attack completeness: "
                f"{completeness_words(r)}")
        if not r["sound"]:
            text += (f" — SOUNDNESS VIOLATION ({_soundness(r)}): a bug in the verifier, the "
                     f"bounds or the attack replay; the row keeps the attack's upper bound")
        elif r.get("use_exact"):
            text += " — the row's robust accuracy is this exact figure (not an upper bound)"
        else:
            text += (f" — {c['unknown']} undecided (never counted robust): the row keeps the "
                     f"attack's upper bound")
        lines.append(text + ".")
    lava = ex.get("lava_replay") or {}
    if lava.get("run") and lava.get("replayed"):
        if lava["disagree"]:
            lines.append(f"Exact verification's counterexamples on Lava: emulator and Lava "
                         f"DISAGREE on {len(lava['disagree'])} of {lava['replayed']} "
                         f"(examples {lava['disagree'][:10]}).")
        else:
            lines.append(f"Exact verification's counterexamples on Lava: {lava['agree']} of "
                         f"{lava['replayed']} decided as on the emulator.")
    return lines
