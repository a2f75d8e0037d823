"""HiGHS on a MILP given as arrays; also a script (numpy + highspy only, no neurodeploy or
OR-Tools imports) that :func:`neurodeploy.verify.float_milp.run_highs` runs in a subprocess
where OR-Tools is loaded: ``python highs_worker.py IN.npz TIMEOUT OUT.npz``."""

from __future__ import annotations

import sys

import numpy as np


def solve_arrays(a: dict[str, np.ndarray], timeout: float) -> tuple[str, np.ndarray | None]:
    """HiGHS on the arrays: ("infeasible" | "feasible" | "unknown", column values)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(timeout))
    inf = highspy.kHighsInf
    clip = np.vectorize(lambda v: inf if v == np.inf else (-inf if v == -np.inf else v))
    n = len(a["lo"])
    h.addVars(n, a["lo"], a["hi"])
    if len(a["integer"]):
        h.changeColsIntegrality(len(a["integer"]), a["integer"].astype(np.int32),
                                np.array([highspy.HighsVarType.kInteger] * len(a["integer"])))
    nrow = len(a["row_lo"])
    if nrow:
        h.addRows(nrow, clip(a["row_lo"]).astype(np.float64), clip(a["row_hi"]).astype(np.float64),
                  len(a["idx"]), a["starts"][:-1].astype(np.int32), a["idx"].astype(np.int32),
                  a["val"])
    h.run()
    st = h.getModelStatus()
    if st == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None
    if st == highspy.HighsModelStatus.kOptimal or h.getInfo().primal_solution_status == 2:
        return "feasible", np.array(h.getSolution().col_value)
    return "unknown", None



def main(argv: list[str]) -> int:
    with np.load(argv[0]) as z:
        a = {k: z[k] for k in z.files}
    status, x = solve_arrays(a, float(argv[1]))
    np.savez(argv[2], status=np.array(status), x=np.zeros(0) if x is None else x)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
