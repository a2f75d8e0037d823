"""The audit's ``exact`` stage: certified ≤ exact ≤ attack per side and ε (issue 22).

With ``AuditConfig.exact`` (``audit --exact``, ``[audit] exact = true``) the stage decides, per
ε under the **known draw**, on the audit's own examples and host maps ``u`` (the ones the
attacks used), whether any image in the ε-ball ∩ [0, 1] changes each side's decision:

- **deployed** — :func:`neurodeploy.verify.verify_plan` on the plan (CP-SAT, exact integer
  arithmetic), ``exact_timeout`` seconds per example; counterexamples replayed on Lava when
  the audit runs Lava (:mod:`neurodeploy.verify.lava_replay`);
- **float** — :func:`neurodeploy.verify.float_milp.verify_float_example` (MILP, HiGHS) where
  it is applicable (a neurodeploy SpikingNet of Linear + LIF layers with count/rate read-out,
  deterministic at inference); otherwise the side says "not run" and why.

Per (side, ε), with ``R``, ``B``, ``U`` the examples proved robust, proved non-robust
(a replayed counterexample) and undecided, ``A`` those the attack cascade left robust
(after escalation and transfer) and ``C`` those the bounds certify on the same level box::

    certified |C|/n  ≤  exact [|R|/n, (|R| + |U|)/n]  ≤  attack |A|/n
    completeness = |B \\ A| / |B|          (non-robust examples the attacks found)
    decided      = (|R| + |B|) / n

Soundness: ``R ∩ ¬A`` (proved robust, broken by an attack) and ``C ∩ B`` must be empty; a
violation is recorded with the example indices and the row keeps the attack's upper bound.
When every example is decided and nothing is violated, the row's robust accuracy is the exact
``|R|/n`` (:mod:`neurodeploy.audit.rows`): no longer an upper bound, its interval only the
sampling interval over the examples. An ``unknown`` never counts as robust.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.runtime import progress

WHAT = ("known draw: the audit's own examples and host maps (the ones the attacks used); "
        "unknown verdicts never count as robust")
UNKNOWN_DRAW = ("not run in the audit: `neurodeploy verify --draws K` gives the unknown-draw "
                "lower bound with its 95 % interval")


def side_summary(status: list[str], certified: np.ndarray | None,
                 attack_robust: np.ndarray) -> dict[str, Any]:
    """The sandwich, completeness, decided fraction and soundness of one (side, ε) from
    per-example verdicts (module docstring)."""
    from neurodeploy.verify.sandwich import sandwich

    st = np.asarray(status)
    n = len(st)
    att = np.asarray(attack_robust, dtype=bool)
    cert = np.zeros(n, bool) if certified is None else np.asarray(certified, dtype=bool)
    w = sandwich(cert, list(status), att)
    counts = {s: int((st == s).sum()) for s in ("robust", "non_robust", "unknown")}
    broken = st == "non_robust"
    found = int((broken & ~att).sum())
    decided = counts["unknown"] == 0
    return {
        "n": n, "counts": counts, "decided_fraction": (n - counts["unknown"]) / max(n, 1),
        "certified": None if certified is None else w["certified"],
        "exact_interval": w["exact"], "attack": w["attack"],
        "exact": w["exact"][0] if decided else None,
        "completeness": {"found_by_attack": found, "non_robust": int(broken.sum()),
                         "fraction": found / int(broken.sum()) if broken.any() else None,
                         "missed_by_attack": np.nonzero(broken & att)[0].tolist()},
        "violations": w["violations"], "sound": bool(w["consistent"]),
        "use_exact": bool(decided and w["consistent"]),
    }


def _flat(run: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, T = run.n, int(run.u.shape[0])
    return (run.x.reshape(n, -1).numpy().astype(np.float32), run.y.numpy(),
            run.u.reshape(T, n, -1).numpy().astype(np.float32))


def float_applicable(run: Any) -> str | None:
    """Why the float MILP does not apply to this audit's float side (None: it does)."""
    from neurodeploy.models import SpikingNet
    from neurodeploy.verify.float_milp import float_layers
    from neurodeploy.verify.support import UnsupportedPlan

    if not isinstance(run.model, SpikingNet):
        return "the float side is a NIR graph's interpreter; the float MILP encodes SpikingNets"
    if run.evals.get("float") is not None and run.evals["float"].draws > 1:
        return "the float model is stochastic at inference (noisy neurons)"
    try:
        float_layers(run.model)
    except UnsupportedPlan as exc:
        return str(exc)
    return None


def float_certified(model: Any, x: np.ndarray, y: np.ndarray, u: np.ndarray,
                    eps: float) -> np.ndarray:
    """Per example: S-IBP or S-CROWN proves every float margin ``> 0`` on the level box."""
    from neurodeploy.bounds.certify import is_verified, margin_bounds
    from neurodeploy.verify.sandwich import level_box

    box = level_box(x, u, eps, tuple(model.config.input_shape))
    with torch.no_grad():
        out, _ = margin_bounds(model, box, torch.as_tensor(y).long(), ("ibp", "crown"))
    return (is_verified(out["ibp"]) | is_verified(out["crown"])).numpy()


def _deployed_records(run: Any, eps: float) -> list[dict[str, Any]]:
    from neurodeploy.verify import verify_plan

    x, y, u = _flat(run)
    bar = progress(total=run.n, quiet=run.quiet, desc=f"exact verification, deployed, ε={eps:g}")
    try:
        res = verify_plan(run.plan, x, y, u, eps, timeout=run.config.exact_timeout, workers=1,
                          search=True, seed=run.config.seed, progress=bar.update)
    finally:
        bar.close()
    return [r.record() for r in res.examples]


def _float_records(run: Any, eps: float) -> list[dict[str, Any]]:
    from neurodeploy.verify.float_milp import verify_float_example

    x, y, u = _flat(run)
    out = []
    for i in progress(range(run.n), quiet=run.quiet, desc=f"exact verification, float, ε={eps:g}"):
        r = verify_float_example(run.model, x[i], int(y[i]), u[:, i], eps,
                                 run.config.exact_timeout)
        r["index"] = i
        out.append(r)
    return out


def _cached(run: Any, side: str, eps: float, make: Any) -> list[dict[str, Any]]:
    """Per-example records of (side, ε), from the audit's state folder when an interrupted
    run already decided them (the folder's fingerprint covers the config and data)."""
    from neurodeploy.safeload import load_json
    from neurodeploy.training.metrics import write_json_atomic

    path = run.state_dir / f"exact_{side}_{eps:g}.json"
    if path.is_file():
        rec = load_json(path, "exact verification state")
        if isinstance(rec, list) and len(rec) == run.n:
            return rec
    rec = make(run, eps)
    write_json_atomic(path, rec)
    return rec


def _side(run: Any, side: str, eps: float, why_not: str | None) -> dict[str, Any]:
    if why_not is not None:
        return {"side": side, "eps": eps, "run": False, "why": why_not}
    x, y, u = _flat(run)
    if side == "deployed":
        from neurodeploy.verify.sandwich import plan_ibp_certified

        recs = _cached(run, side, eps, _deployed_records)
        cert, method = plan_ibp_certified(run.plan, x, y, u, eps), "plan S-IBP on the level box"
        solver = "CP-SAT (OR-Tools), exact integer arithmetic"
    else:
        recs = _cached(run, side, eps, _float_records)
        cert, method = float_certified(run.model, x, y, u, eps), "S-IBP / S-CROWN on the level box"
        solver = "MILP (HiGHS), big-M; robust only with a threshold margin"
    attack = run.evals[side].flags[eps].all(0).numpy()
    out = {"side": side, "eps": eps, "run": True, "solver": solver, "certify_method": method,
           **side_summary([r["status"] for r in recs], cert, attack),
           "how": {h: sum(r["how"] == h for r in recs) for h in sorted({r["how"] for r in recs})},
           "seconds": round(sum(r["seconds"] for r in recs), 3), "examples": recs}
    return out


def _why_not(run: Any, side: str) -> str | None:
    if "known" not in run.config.threat_models or side not in run.evals:
        return "the known draw was not attacked in this audit (threat_models)"
    if side == "float":
        return float_applicable(run)
    from neurodeploy.verify.support import UnsupportedPlan, check_supported

    try:
        check_supported(run.plan)
    except UnsupportedPlan as exc:
        return str(exc)
    return None


def _lava(run: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The deployed side's counterexamples (every ε) replayed on Lava in one run."""
    from neurodeploy.verify.lava_replay import replay_on_lava

    recs = [r for row in rows if row["side"] == "deployed" and row["run"]
            for r in row["examples"]]
    if not run.lava_ok:
        for r in recs:
            r["lava_replayed"] = False
        return {"run": False, "why": run.lava_skipped or "Lava not run in this audit"}
    _, _, u = _flat(run)
    return {"run": True, **replay_on_lava(run.plan, recs, u, timeout_s=run.config.lava_timeout_s)}


def exact_verification(run: Any) -> dict[str, Any]:
    """The stage's result (``report.exact``, documented in the README): per (side, ε) the
    :func:`side_summary` with the per-example records, plus the Lava replay."""
    import ortools.sat.python.cp_model  # noqa: F401 - before HiGHS: the two cannot share a
    # process, and with OR-Tools loaded the float MILP runs HiGHS in a subprocess

    why = {s: _why_not(run, s) for s in ("float", "deployed")}
    rows = [_side(run, s, e, why[s]) for s in ("float", "deployed") for e in run.eps]
    return {"threat_model": "known draw", "what": WHAT, "timeout_s": run.config.exact_timeout,
            "rows": rows, "lava_replay": _lava(run, rows), "unknown_draw": UNKNOWN_DRAW}


def exact_row(exact: dict[str, Any] | None, side: str, eps: float) -> dict[str, Any] | None:
    """The exact stage's row of (side, ε), or None (no stage, or the side was not run)."""
    for r in (exact or {}).get("rows", []):
        if r["side"] == side and abs(float(r["eps"]) - eps) < 1e-12 and r.get("run"):
            return r
    return None
