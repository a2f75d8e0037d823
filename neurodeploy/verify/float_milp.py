"""Exact verification of the *float* model under the known draw: a MILP (HiGHS) with big-M.

The float model (fully connected LIF layers, count/rate read-out) in real arithmetic, per layer
k, neuron n and step t (the canonical LIF of the design: zero reset, strict ``>``)::

    m[t] = W·s_in[t] + b + α·r[t−1],   r[t] = m[t]·(1 − s[t]),   s[t] = 1[m[t] > θ]

Input: the same reachable levels as the plan verifier (:mod:`neurodeploy.verify.levels`,
thermometer binaries). With interval bounds ``m ∈ [L, U]`` (interval arithmetic through the
same step) the product and the spike are written with big-M rows::

    r ≤ U(1 − s),  r ≥ L(1 − s),  r ≤ m − L·s,  r ≥ m − U·s
    s = 1 ⇒ m ≥ θ − δ,   s = 0 ⇒ m ≤ θ + δ

The spike rows *widen* the threshold by δ on both sides, so the MILP's feasible set contains
every real behaviour and also, for membranes within δ of θ, either spike. Hence INFEASIBLE
proves robustness with a margin δ above the solver's feasibility tolerance (δ ≫ 10⁻⁶ by
default), while a MILP solution is only a *candidate*: it is replayed in the float model
(float32, as it runs) and counts as ``non_robust`` only if the replay misclassifies —
otherwise the example is ``unknown``. Misclassification: binaries ``g_j`` (j ≠ y) with
``Σ g_j ≥ 1`` and ``c_j − c_y ≥ [j > y] − 2T·(1 − g_j)`` (ties to the lowest class).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from neurodeploy.verify.levels import PixelLevels, pixel_levels, witness_image
from neurodeploy.verify.support import UnsupportedPlan

#: threshold band of the MILP's spike rows (float units; far above HiGHS' 1e-7 tolerances)
DELTA = 1e-4


def float_layers(model: Any) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """``(W, b, α, θ)`` per layer in float64; refuses what is not encoded, naming it."""
    from neurodeploy.neurons import LIF

    if model.config.readout not in ("count", "rate"):
        raise UnsupportedPlan(f"float verification: readout {model.config.readout!r} is not "
                              f"encoded (count, rate)")
    out = []
    for k, (syn, neu) in enumerate(zip(model.synapses, model.neurons, strict=True)):
        if not isinstance(syn, torch.nn.Linear) or type(neu) is not LIF:
            raise UnsupportedPlan(f"float verification: layer {k} ({type(syn).__name__} + "
                                  f"{type(neu).__name__}) is not encoded (Linear + LIF only)")
        W = syn.weight.detach().double().numpy()
        b = (syn.bias.detach().double().numpy() if syn.bias is not None
             else np.zeros(W.shape[0]))
        out.append((W, b, float(neu.alpha), float(neu.theta)))
    return out


class _Milp:
    """A MILP collected as plain arrays (columns, rows), solved by :func:`run_highs`."""

    inf = float("inf")

    def __init__(self) -> None:
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.integer: list[int] = []
        self.rows: list[tuple[float, float, list[int], list[float]]] = []

    @property
    def n(self) -> int:
        return len(self.lo)

    def var(self, lo: float, hi: float, integer: bool = False) -> int:
        self.lo.append(float(lo))
        self.hi.append(float(hi))
        if integer:
            self.integer.append(self.n - 1)
        return self.n - 1

    def row(self, lo: float, hi: float, idx: list[int], val: list[float]) -> None:
        self.rows.append((float(lo), float(hi), list(idx), [float(v) for v in val]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The model as numpy arrays (CSR rows) for :func:`run_highs`."""
        starts = np.cumsum([0] + [len(r[2]) for r in self.rows])
        return {"lo": np.array(self.lo), "hi": np.array(self.hi),
                "integer": np.array(self.integer, dtype=np.int64),
                "row_lo": np.array([r[0] for r in self.rows]),
                "row_hi": np.array([r[1] for r in self.rows]),
                "starts": starts.astype(np.int64),
                "idx": np.array([i for r in self.rows for i in r[2]], dtype=np.int64),
                "val": np.array([v for r in self.rows for v in r[3]], dtype=np.float64)}


def run_highs(a: dict[str, np.ndarray], timeout: float) -> tuple[str, np.ndarray | None]:
    """:func:`_solve_arrays` in this process, or in a subprocess when OR-Tools' solver is
    loaded here (OR-Tools 9.15 and highspy 1.15 cannot share a process: both bundle HiGHS)."""
    import sys

    if not any(m.startswith("ortools.sat.python") for m in sys.modules):
        from neurodeploy.verify.highs_worker import solve_arrays

        return solve_arrays(a, timeout)
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "milp.npz", Path(tmp) / "sol.npz"
        np.savez(src, **a)
        worker = Path(__file__).with_name("highs_worker.py")   # numpy + highspy only
        subprocess.run([sys.executable, str(worker), str(src), str(timeout), str(dst)],
                       check=True, capture_output=True)
        with np.load(dst) as z:
            status = str(z["status"])
            return status, (z["x"] if status == "feasible" else None)


def _layer(M: _Milp, W: np.ndarray, b: np.ndarray, alpha: float, theta: float,
           s_in: list[list[Any]]) -> list[list[Any]]:
    """Spikes ``[T][N]`` (a float constant 0/1 or a binary column index) of one layer."""
    T, N = len(s_in), W.shape[0]
    r_lo, r_hi = np.zeros(N), np.zeros(N)
    r_col: list[Any] = [None] * N
    out = []
    for t in range(T):
        fixed = np.array([float(v) if not isinstance(v, tuple) else 0.0 for v in s_in[t]])
        free = [i for i, v in enumerate(s_in[t]) if isinstance(v, tuple)]
        base = W @ fixed + b
        Wf = W[:, free]
        lo = base + np.minimum(Wf, 0).sum(1) + alpha * r_lo
        hi = base + np.maximum(Wf, 0).sum(1) + alpha * r_hi
        lo, hi = lo - 1e-9 * (1 + np.abs(lo)), hi + 1e-9 * (1 + np.abs(hi))
        row = []
        for n in range(N):
            m = M.var(lo[n], hi[n])
            idx = [m] + [s_in[t][i][1] for i in free]
            val = [1.0] + [-float(w) for w in Wf[n]]
            if r_col[n] is not None:
                idx.append(r_col[n])
                val.append(-alpha)
            M.row(base[n], base[n], idx, val)
            if hi[n] < theta - DELTA:
                row.append(0.0)
                r_col[n], r_lo[n], r_hi[n] = m, lo[n], hi[n]
                continue
            if lo[n] > theta + DELTA:
                row.append(1.0)
                r_col[n], r_lo[n], r_hi[n] = None, 0.0, 0.0
                continue
            s = M.var(0, 1, integer=True)
            L, U = lo[n], hi[n]
            M.row(L, M.inf, [m, s], [1.0, -(theta - DELTA - L)])      # s=1 ⇒ m ≥ θ − δ
            M.row(-M.inf, theta + DELTA, [m, s], [1.0, -(U - theta - DELTA)])  # s=0 ⇒ m ≤ θ+δ
            r = M.var(min(L, 0.0), max(min(U, theta + DELTA), 0.0))
            M.row(-M.inf, U, [r, s], [1.0, U])
            M.row(L, M.inf, [r, s], [1.0, L])
            M.row(-M.inf, 0.0, [r, m, s], [1.0, -1.0, L])
            M.row(0.0, M.inf, [r, m, s], [1.0, -1.0, U])
            r_col[n], r_lo[n], r_hi[n] = r, min(L, 0.0), max(min(U, theta + DELTA), 0.0)
            row.append(("s", s))
        out.append(row)
    return out


def _build(layers: list, lv: PixelLevels, y: int) -> tuple[_Milp, list[list[int]], int]:
    """The MILP "some reachable input is misclassified"; (model, thermometer columns,
    number of targets)."""
    M = _Milp()
    T, P = lv.rank.shape
    therm = []
    spikes: list[list[Any]] = [[0.0] * P for _ in range(T)]
    for p, levels in enumerate(lv.levels):
        bits = [M.var(0, 1, integer=True) for _ in levels[1:]]
        for a, c in zip(bits[1:], bits[:-1], strict=True):
            M.row(-M.inf, 0.0, [a, c], [1.0, -1.0])
        therm.append(bits)
        for t in range(T):
            i = next((i for i, c in enumerate(levels) if c > int(lv.rank[t, p])), None)
            spikes[t][p] = 0.0 if i is None else 1.0 if i == 0 else ("s", bits[i - 1])
    for W, b, alpha, theta in layers:
        spikes = _layer(M, W, b, alpha, theta, spikes)
    K = len(spikes[0])

    def count(j: int) -> tuple[float, list[int]]:
        c = sum(v for v in (spikes[t][j] for t in range(T)) if not isinstance(v, tuple))
        return c, [spikes[t][j][1] for t in range(T) if isinstance(spikes[t][j], tuple)]

    cy, iy = count(y)
    gs = []
    for j in range(K):
        cj, ij = count(j)
        need = 1 if j > y else 0
        if j == y or cj + len(ij) - cy < need:
            continue
        g = M.var(0, 1, integer=True)
        # c_j − c_y ≥ need − 2T(1 − g)
        M.row(need - 2 * T - (cj - cy), M.inf, ij + iy + [g],
              [1.0] * len(ij) + [-1.0] * len(iy) + [-2.0 * T])
        gs.append(g)
    if gs:
        M.row(1.0, M.inf, gs, [1.0] * len(gs))
    return M, therm, len(gs)


def verify_float_example(model: Any, x: np.ndarray, y: int, u: np.ndarray, eps: float,
                         timeout: float) -> dict[str, Any]:
    """Verdict of the float model on one example (module docstring)."""
    t0 = time.perf_counter()
    layers = float_layers(model)
    lv = pixel_levels(x, u, eps)
    clean_pred = _predict(model, lv.spikes(lv.clean))
    rec: dict[str, Any] = {"label": int(y), "margin_delta": DELTA}
    if clean_pred != y:
        rec.update(status="non_robust", how="clean", predicted=clean_pred)
        return _done(rec, t0)
    M, therm, targets = _build(layers, lv, int(y))
    rec["model"] = {"columns": M.n, "rows": len(M.rows), "targets": targets}
    if not targets:
        rec.update(status="robust", how="intervals")
        return _done(rec, t0)
    st, sol = run_highs(M.arrays(), timeout)
    if st == "infeasible":
        rec.update(status="robust", how="milp")
    elif st == "feasible" and sol is not None:
        level = np.array([lv.levels[p][sum(round(sol[c]) for c in bits)]
                          for p, bits in enumerate(therm)])
        pred = _predict(model, lv.spikes(level))
        if pred != y:
            img = witness_image(lv, level)
            rec.update(status="non_robust", how="milp", predicted=pred,
                       counterexample=[float(v) for v in img])
        else:
            rec.update(status="unknown", how="milp candidate inside the δ band did not replay")
    else:
        rec.update(status="unknown", how="timeout")
    return _done(rec, t0)


def _done(rec: dict[str, Any], t0: float) -> dict[str, Any]:
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _predict(model: Any, spikes: np.ndarray) -> int:
    """The float model's class for input trains ``[T, P]`` (argmax, ties to the lowest)."""
    s = torch.as_tensor(spikes, dtype=torch.float32).reshape(
        spikes.shape[0], 1, *model.config.input_shape)
    with torch.no_grad():
        return int(model.run(s).logits.argmax(1)[0])

