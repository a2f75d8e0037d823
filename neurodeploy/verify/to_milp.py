"""The same exact model as a MILP: a CP-SAT model translated row by row for HiGHS.

Used to choose the solver by measurement (``benchmarks/bench_verify.py --compare``): the
translation keeps the model identical — integer columns with the CP-SAT domains, every linear
constraint a row, an enforced constraint ``ℓ ⇒ lo ≤ e ≤ hi`` as big-M rows from the
expression's own bounds (``e ≥ lo − (lo − e_min)(1 − ℓ)``, ``e ≤ hi + (e_max − hi)(1 − ℓ)``),
a clause as ``Σ literals ≥ 1`` (an implication: one clause per literal). ``lin_max`` (saturation the intervals did not remove) has no
translation here: such models are refused with ValueError.

OR-Tools 9.15 and highspy 1.15 cannot share a process (each bundles HiGHS; whichever loads
second fails on a missing symbol), so the MILP runs in a subprocess on the serialized model
proto (``python -m neurodeploy.verify.to_milp MODEL.pb TIMEOUT`` prints a JSON line);
:func:`solve_highs_subprocess` does that.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _lit(ref: int) -> tuple[int, bool]:
    """(variable, negated) of a CP-SAT literal reference."""
    return (ref, False) if ref >= 0 else (-ref - 1, True)


def to_highs(proto: Any) -> Any:
    """A ``highspy.Highs`` holding the constraints of a CP-SAT model proto (docstring)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    lo = np.array([v.domain[0] for v in proto.variables], dtype=np.float64)
    hi = np.array([v.domain[-1] for v in proto.variables], dtype=np.float64)
    n = len(lo)
    h.addVars(n, lo, hi)
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                            np.array([highspy.HighsVarType.kInteger] * n))
    inf = highspy.kHighsInf
    for c in proto.constraints:
        kind = c.WhichOneof("constraint")
        negated_enf = [-e - 1 for e in c.enforcement_literal]
        if kind == "bool_or":
            _clause(h, list(c.bool_or.literals) + negated_enf, inf)
        elif kind == "bool_and":       # enf ⇒ every literal: one clause per literal
            for ref in c.bool_and.literals:
                _clause(h, [ref, *negated_enf], inf)
        elif kind == "linear":
            _linear(h, c, lo, hi, inf)
        else:
            raise ValueError(f"no MILP translation for CP-SAT constraint {kind!r}")
    return h


def _clause(h: Any, refs: list[int], inf: float) -> None:
    """``Σ literals ≥ 1`` (a negated literal ¬b counts as 1 − b)."""
    idx, val, rhs = [], [], 1.0
    for ref in refs:
        v, neg = _lit(ref)
        idx.append(v)
        val.append(-1.0 if neg else 1.0)
        rhs -= 1.0 if neg else 0.0
    h.addRow(rhs, inf, len(idx), np.array(idx, np.int32), np.array(val))


def _linear(h: Any, c: Any, lo: np.ndarray, hi: np.ndarray, inf: float) -> None:
    idx = np.array(list(c.linear.vars), dtype=np.int32)
    val = np.array(list(c.linear.coeffs), dtype=np.float64)
    dom = list(c.linear.domain)
    rlo = dom[0] if dom[0] > -(2**62) else -inf
    rhi = dom[-1] if dom[-1] < 2**62 else inf
    if not c.enforcement_literal:
        h.addRow(float(rlo), float(rhi), len(idx), idx, val)
        return
    if len(c.enforcement_literal) != 1:
        raise ValueError("more than one enforcement literal")
    e_min = float(np.where(val > 0, val * lo[idx], val * hi[idx]).sum())
    e_max = float(np.where(val > 0, val * hi[idx], val * lo[idx]).sum())
    v, neg = _lit(c.enforcement_literal[0])
    # ℓ = b (or 1 − b). e − (rlo − e_min)·ℓ ≥ e_min  ⇔  e ≥ rlo − (rlo − e_min)(1 − ℓ)
    for bound, slack, sense in ((rlo, e_min, 1), (rhi, e_max, -1)):
        if abs(bound) == inf:
            continue
        m = bound - slack            # ≥ 0 for the lower row, ≤ 0 for the upper row
        cols = np.append(idx, v).astype(np.int32)
        if not neg:                  # e − m·b ≥ slack   /   e − m·b ≤ slack
            vals, rhs = np.append(val, -m), slack
        else:                        # e − m·(1 − b) ≥ slack  ⇔  e + m·b ≥ slack + m
            vals, rhs = np.append(val, m), slack + m
        if sense > 0:
            h.addRow(float(rhs), inf, len(cols), cols, vals)
        else:
            h.addRow(-inf, float(rhs), len(cols), cols, vals)


def solve_highs(proto: Any, timeout: float) -> tuple[str, float]:
    """("robust" / "non_robust" / "unknown", seconds) of the translated model."""
    import highspy

    h = to_highs(proto)
    h.setOptionValue("time_limit", float(timeout))
    t0 = time.perf_counter()
    h.run()
    sec = time.perf_counter() - t0
    st = h.getModelStatus()
    if st == highspy.HighsModelStatus.kInfeasible:
        return "robust", sec
    if st == highspy.HighsModelStatus.kOptimal:
        return "non_robust", sec
    return "unknown", sec


def solve_highs_subprocess(model: Any, timeout: float) -> tuple[str, float]:
    """:func:`solve_highs` of a ``cp_model.CpModel`` in a fresh process (module docstring)."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pb"
        if not model.export_to_file(str(path)):   # binary proto (".pb": not text format)
            raise ValueError("could not export the CP-SAT model")
        out = subprocess.run([sys.executable, "-m", "neurodeploy.verify.to_milp", str(path),
                              str(timeout)], check=True, capture_output=True, text=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return rec["status"], rec["seconds"]


def main(argv: list[str]) -> int:
    import json

    from ortools.sat import cp_model_pb2  # the message only: no OR-Tools solver library

    proto = cp_model_pb2.CpModelProto()
    with open(argv[0], "rb") as f:
        proto.ParseFromString(f.read())
    status, sec = solve_highs(proto, float(argv[1]))
    print(json.dumps({"status": status, "seconds": sec}))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
