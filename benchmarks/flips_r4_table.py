"""Round 4 table of issue 21 (``benchmarks/RESULTS_flips.md``) from ``bench_flips.py``'s JSONs.

Per (model, ε): old / new ``auto`` robust % (95 % Wilson CI), the union (old ∪ new ∪ the long
flip reference, and also with the round-2 and round-3 ``auto`` runs' breaks — the same maps, so
their counterexamples count), ``auto``'s misses (union-broken points it calls robust), the
round-2 breaks it does not break (``flips200/<tag>.new.json``), CPU and the masking checks.

    .venv/bin/python benchmarks/flips_r4_table.py benchmarks/results/flips_r4 plain_eps0.05 ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neurodeploy.audit.stats import wilson

RES = Path(__file__).resolve().parent / "results"
ROUND3 = {"plain_eps0.05": "flips_r3/abort50_9_best", "certified_eps0.1": "flips_r3/abort50_9"}


def pct(flags: list[bool]) -> str:
    k, n = sum(flags), len(flags)
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def robust_of(path: Path) -> list[bool] | None:
    return json.loads(path.read_text())["robust"] if path.is_file() else None


def masking_cell(rec: dict) -> str:
    """The masking checks' outcome of a ``bench_flips.py`` record."""
    ck = rec.get("masking")
    if ck is None:
        return "not run"
    if all(c["passed"] for c in ck):
        return f"all {len(ck)} passed"
    return "failed: " + ", ".join(c["name"] for c in ck if not c["passed"])


def print_table(header: str, row_fn: object, argv: list[str]) -> None:
    """``header`` and ``row_fn(out, tag)`` for every finished tag of ``argv`` = [out, tags…]."""
    out = Path(argv[0])
    print(header)
    for tag in argv[1:]:
        if (out / f"{tag}.json").is_file():
            print(row_fn(out, tag))  # type: ignore[operator]


def row(out: Path, tag: str) -> str:
    rec = json.loads((out / f"{tag}.json").read_text())
    new, old, union = rec["auto"]["robust"], rec["old_auto"]["robust"], rec["union_robust"]
    r2 = robust_of(RES / "flips200" / f"{tag}.new.json")
    r3 = robust_of(RES / ROUND3[tag] / f"{tag}.new.json") if tag in ROUND3 else None
    wide = [u and (r2 is None or a) and (r3 is None or b)
            for u, a, b in zip(union, r2 or union, r3 or union, strict=True)]
    misses = [i for i, (a, u) in enumerate(zip(new, union, strict=True)) if a and not u]
    wmiss = [i for i, (a, u) in enumerate(zip(new, wide, strict=True)) if a and not u]
    lost = [i for i, (a, b) in enumerate(zip(r2, new, strict=True)) if not a and b] if r2 else []
    ref = rec["reference"]["broken_by"]
    mk = masking_cell(rec)
    oc, nc = rec["old_auto"]["cpu_s"], rec["auto"]["cpu_s"]
    cells = [rec["model"], f"{rec['eps']:g}", str(rec["n"]), pct(old), pct(new), pct(union),
             pct(wide), f"{len(misses)} {misses or ''}".strip(),
             f"{len(wmiss)} {wmiss or ''}".strip(),
             f"{len(lost)} {lost or ''}".strip(),
             f"{len(ref)} of {sum(a and b for a, b in zip(old, new, strict=True))} "
             f"({rec['reference']['cpu_s']:.0f} s; {rec['reference']['iterations']} × "
             f"{rec['reference']['restarts']})",
             f"{oc:.0f}", f"{nc:.0f}", f"**{nc / oc:.2f}**", mk]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| model | ε | n | old auto robust % [95 % CI] | auto robust % [95 % CI] | union "
          "robust % | union with rounds 2–3 `auto` | auto misses (union) | auto misses (with "
          "rounds 2–3) | round-2 breaks lost | reference broke (CPU, iter × restarts) | old "
          "auto CPU s | auto CPU s | ratio | masking checks (16 samples) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


if __name__ == "__main__":
    print_table(HEADER, row, sys.argv[1:])
