"""Markdown table of the findings audits (``runs/findings/<defense>/audit/audit.json``).

Verdicts are re-derived from the numbers with the current rules
(:func:`neurodeploy.audit.report.verdicts`).

    .venv/bin/python benchmarks/findings_table.py runs/findings
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neurodeploy.audit.report import AuditReport, verdicts


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def main(root: str) -> None:
    order = ["plain", "certified", "fgsm-at", "hosnn+at", "tgo", "plain-qat"]
    reps = {}
    for name in order:
        p = Path(root) / name / "audit" / "audit.json"
        if p.is_file():
            reps[name] = AuditReport.from_dict(json.loads(p.read_text()))
    eps = sorted({e for r in reps.values() for e in r.epsilons()})
    head = ["defense", "neuron", "clean float", "clean chip"]
    for e in eps:
        head += [f"worst ε={e:g} float", f"worst ε={e:g} chip", "Δ"]
    head += ["verified err (ε 0.06)", "Lava replay mismatches", "failed masking checks"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in reps.items():
        row = [name, str(r.model.get("neuron", "lif")), pct(r.clean("float").accuracy),
               pct(r.clean("emulator").accuracy)]
        for e in eps:
            f, d = r.lookup("float", "worst", e), r.lookup("emulator", "worst", e)
            row += [pct(f.accuracy), pct(d.accuracy), f"{100 * (d.accuracy - f.accuracy):+.1f}"]
        ve = r.certified.get("verified_error")
        row += [pct(ve) if ve is not None else "n/a (TA-LIF/noisy)" if not r.certified else "–",
                str(r.replay.get("lava_vs_emulator_spike_mismatches")),
                ", ".join(f"{c.name} ({c.backend})" for c in r.checks if not c.passed) or "none"]
        print("| " + " | ".join(row) + " |")
    print()
    for name, r in reps.items():
        print(f"**{name}**: " + " ".join(verdicts(r)[:3]))
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/findings")
