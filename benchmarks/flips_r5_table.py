"""Round 5 table of issue 21 (``benchmarks/RESULTS_flips.md``): ``auto`` with the near-flip
restarts against a reference with a new seed and against every earlier run.

Per (model, ε) from ``bench_flips.py``'s JSONs in ``OUT`` (this round: old and new ``auto``, the
reference's five long flip searches with ``--ref-seed 12``): old / new robust % (95 % Wilson
CI); the union of this round (old ∪ new ∪ reference); the union with every earlier run on the
same maps (round 4's ``auto`` and seed-11 reference in ``flips_r4``, rounds 2–3 ``auto``);
``auto``'s misses against both; which of round 4's misses it breaks now; what the two
near-flip searches broke and their wall seconds; CPU old / new; the masking checks.

    .venv/bin/python benchmarks/flips_r5_table.py benchmarks/results/flips_r5 plain_eps0.05 ...

``ALSO=DIR1,DIR2`` (environment) adds the unions of other ``bench_flips.py`` runs (directories
under ``benchmarks/results``) to the earlier runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flips_r4_table import RES, ROUND3, masking_cell, pct, print_table, robust_of  # noqa: E402

NEAR = ("spike-set:near-fs10-mix", "spike-set:near-fs25-ce")


def earlier(tag: str) -> list[list[bool]]:
    """Robust flags of every earlier run on these maps (rounds 2–4)."""
    out = [robust_of(RES / "flips200" / f"{tag}.new.json")]
    if tag in ROUND3:
        out.append(robust_of(RES / ROUND3[tag] / f"{tag}.new.json"))
    for d in ["flips_r4", *filter(None, os.environ.get("ALSO", "").split(","))]:
        f = RES / d / f"{tag}.json"
        if f.is_file():
            out.append(json.loads(f.read_text())["union_robust"])
    return [r for r in out if r is not None]


def misses(new: list[bool], union: list[bool]) -> list[int]:
    return [i for i, (a, u) in enumerate(zip(new, union, strict=True)) if a and not u]


def row(out: Path, tag: str) -> str:
    rec = json.loads((out / f"{tag}.json").read_text())
    new, old, union = rec["auto"]["robust"], rec["old_auto"]["robust"], rec["union_robust"]
    wide = list(union)
    for r in earlier(tag):
        wide = [a and b for a, b in zip(wide, r, strict=True)]
    r4 = RES / "flips_r4" / f"{tag}.json"
    r4miss = []
    if r4.is_file():
        d4 = json.loads(r4.read_text())
        r4miss = misses(d4["auto"]["robust"], d4["union_robust"])
    now = [i for i in r4miss if not new[i]]
    by = rec["auto"]["broken_by"]
    near = [i for i, b in enumerate(by) if b in NEAR]
    wall = sum(rec["auto"]["step_wall_s"].get(n, 0.0) for n in NEAR)
    mk = masking_cell(rec)
    oc, nc = rec["old_auto"]["cpu_s"], rec["auto"]["cpu_s"]
    m1, m2 = misses(new, union), misses(new, wide)
    ref = rec["reference"]
    cells = [rec["model"], f"{rec['eps']:g}", str(rec["n"]), pct(old), pct(new), pct(union),
             pct(wide), f"{len(m1)} {m1 or ''}".strip(), f"{len(m2)} {m2 or ''}".strip(),
             f"{len(now)} of {len(r4miss)} {now or ''}".strip(),
             f"{len(near)} {near or ''} ({wall:.0f} s)".strip(),
             f"{len(ref['broken_by'])} of {sum(a and b for a, b in zip(old, new, strict=True))} "
             f"({ref['cpu_s']:.0f} s; engine seed {ref.get('engine_seed', 0)})",
             f"{oc:.0f}", f"{nc:.0f}", f"**{nc / oc:.2f}**", mk]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| model | ε | n | old auto robust % [95 % CI] | auto robust % [95 % CI] | union "
          "robust % (this round) | union with earlier runs | auto misses (this round) | auto "
          "misses (earlier runs too) | round-4 misses broken now | near-flip breaks (wall) | "
          "reference broke (CPU; engine seed) | old auto CPU s | auto CPU s | ratio | masking checks "
          "(16 samples) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


if __name__ == "__main__":
    print_table(HEADER, row, sys.argv[1:])
