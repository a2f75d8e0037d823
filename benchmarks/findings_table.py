"""Markdown table of the findings audits (``<root>/<defense>/audit/audit.json``).

One row per defense and threat model: clean and worst-case robust accuracy of the float model
and of the deployed model (Loihi 2 fixed point, bit-exact emulator) per ε, the paired float →
chip change with its 95 % interval, the masking checks' outcome per side, and the verdicts as
the audit wrote them (a failed check makes every robust number an upper bound, marked "≤").

    .venv/bin/python benchmarks/findings_table.py runs/findings2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neurodeploy.audit.report import AuditReport


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def cell(row) -> str:
    if row is None:
        return "–"
    return ("≤ " if row.upper_bound else "") + pct(row.accuracy)


def change(rep: AuditReport, tm: str, eps: float) -> str:
    for c in rep.comparisons:
        if c.get("threat_model") == tm and abs(float(c.get("eps", -1)) - eps) < 1e-12:
            d, ci = c.get("delta"), c.get("ci95")
            if d is None:
                return "–"
            tail = f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""
            return f"{100 * d:+.1f}{tail}"
    return "–"


def main(root: str) -> None:
    order = ["plain", "certified", "fgsm-at", "hosnn+at", "tgo", "plain-qat"]
    reps = {}
    for name in order:
        p = Path(root) / name / "audit" / "audit.json"
        if p.is_file():
            reps[name] = AuditReport.from_dict(json.loads(p.read_text()))
    eps = sorted({e for r in reps.values() for e in r.epsilons()})
    head = ["defense", "threat model", "clean float", "clean chip"]
    for e in eps:
        head += [f"ε={e:g} float", f"ε={e:g} chip", "Δ chip−float [95 % CI]"]
    head += ["failed masking checks"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in reps.items():
        tms = sorted({a.threat_model for a in r.accuracy if a.attack == "worst"})
        for tm in tms:
            cf, cd = r.clean("float"), r.clean("deployed")
            row = [name, tm, pct(cf.accuracy if cf else None), pct(cd.accuracy if cd else None)]
            for e in eps:
                row += [cell(r.lookup("float", "worst", e, tm)),
                        cell(r.lookup("deployed", "worst", e, tm)), change(r, tm, e)]
            row.append(", ".join(f"{c.name} ({c.backend}, round {c.round})"
                                 for c in r.checks if not c.passed) or "none")
            print("| " + " | ".join(row) + " |")
    print()
    for name, r in reps.items():
        print(f"**{name}**: " + " ".join(r.verdicts))
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/findings2")
