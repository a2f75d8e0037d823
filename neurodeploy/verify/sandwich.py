"""certified ≤ exact ≤ attack, per example, on the same host maps.

For one plan, examples and ε under the known draw:

- **certified** — plan S-IBP (:func:`~neurodeploy.bounds.plan_ibp.plan_ibp_bounds`) on the
  box of the example's reachable spikes (lowest level → highest level per pixel, exactly the
  box of :mod:`neurodeploy.verify.levels`): every count margin ``c_y − c_j > 0``;
- **exact** — the verifier's status (robust / non_robust / unknown);
- **attack** — the audit's attack cascade on the deployed classifier (emulator forward,
  twin gradient, :class:`~neurodeploy.audit.deployed.DeployedClassifier`) with the same maps.

Per example ``certified ⇒ robust`` and ``robust ⇒ attack failed`` must hold (and
``attack succeeded ⇒ non_robust``); a violation is a bug in one of the three and is
reported, never averaged away. Fractions: certified ≤ robust ≤ robust + unknown ≤ attack.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import pixel_levels


def level_box(x: np.ndarray, u: np.ndarray, eps: float, input_shape: tuple[int, ...]) -> Any:
    """The spike box of the known-draw ε-ball: per example and pixel, the spike trains of its
    lowest and highest reachable level (``[T, N, *input_shape]`` lower/upper spikes)."""
    from neurodeploy.bounds.perturbation import InputBox

    lo, hi = [], []
    for i in range(u.shape[1]):
        lv = pixel_levels(x[i], u[:, i], eps)
        lo.append(lv.spikes(np.array([r[0] for r in lv.levels])))
        hi.append(lv.spikes(np.array([r[-1] for r in lv.levels])))
    shape = (u.shape[0], u.shape[1], *input_shape)
    return InputBox(torch.as_tensor(np.stack(lo, 1), dtype=torch.float32).reshape(shape),
                    torch.as_tensor(np.stack(hi, 1), dtype=torch.float32).reshape(shape), {})


def plan_ibp_certified(plan: DeploymentPlan, x: np.ndarray, y: np.ndarray, u: np.ndarray,
                       eps: float) -> np.ndarray:
    """Per example: plan S-IBP proves every margin ``c_y − c_j > 0`` on the level box."""
    from neurodeploy.bounds.plan_ibp import plan_ibp_bounds, plan_margin_lower

    box = level_box(x, u, eps, tuple(plan.input_shape))
    margin = plan_margin_lower(plan_ibp_bounds(plan, box), torch.as_tensor(y).long())
    return (margin > 0).all(1).numpy()


def attack_robust(plan: DeploymentPlan, x: np.ndarray, y: np.ndarray, u: np.ndarray,
                  eps: float, attacks: str = "auto", seed: int = 0) -> np.ndarray:
    """Per example: the attack cascade ``attacks`` (a preset or names, as ``attack
    --attacks``) failed on the deployed classifier under the known maps ``u``."""
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.encoding import KnownDrawEncoder
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.twin import HardwareTwin

    xt = torch.as_tensor(x, dtype=torch.float32).reshape(len(y), *plan.input_shape)
    ut = torch.as_tensor(u, dtype=torch.float32).reshape(plan.num_steps, len(y),
                                                          *plan.input_shape)
    clf = DeployedClassifier(Emulator(plan), HardwareTwin(plan),
                             KnownDrawEncoder(plan.num_steps, ut), seed=seed)
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    res = evaluate_robustness(clf, xt, torch.as_tensor(y).long(), names, [float(eps)],
                              seed=seed, quiet=True)
    return res.robust[float(eps)].all(0).numpy()


def sandwich(certified: np.ndarray, status: list[str], attacked_robust: np.ndarray | None
             ) -> dict[str, Any]:
    """Fractions and per-example violations of certified ≤ exact ≤ attack (module
    docstring); ``attacked_robust`` None when no attack was run."""
    n = len(status)
    st = np.array(status)
    robust, unknown = st == "robust", st == "unknown"
    out: dict[str, Any] = {
        "certified": float(certified.mean()) if n else 0.0,
        "exact": [float(robust.mean()), float((robust | unknown).mean())] if n else [0.0, 0.0],
        "violations": {"certified_but_non_robust":
                       np.nonzero(certified & (st == "non_robust"))[0].tolist()}}
    if attacked_robust is not None:
        out["attack"] = float(attacked_robust.mean()) if n else 0.0
        out["violations"]["robust_but_attacked"] = np.nonzero(robust & ~attacked_robust)[0].tolist()
        out["attack_completeness"] = {
            "non_robust_found_by_attack": int((~attacked_robust & (st == "non_robust")).sum()),
            "non_robust_missed_by_attack": int((attacked_robust & (st == "non_robust")).sum())}
    out["consistent"] = not any(out["violations"].values())
    return out


def exact_line(path: str, side: str, value: float, eps: float, model: str, n: int) -> str:
    """One sandwich line for ``attack --exact`` / ``certify --exact``: this command's robust
    accuracy (``side`` = attack: an upper bound; certify: a lower bound) beside the exact
    interval of a ``neurodeploy verify`` JSON. Violations are flagged only when the JSON is of
    the same model, ε and examples (else the line says what differs)."""
    from pathlib import Path

    from neurodeploy.errors import DataError
    from neurodeploy.safeload import load_json

    rec = load_json(path, "--exact verify JSON")  # depth-limited, data only
    try:
        lo, hi = rec["summary"]["robust_accuracy_interval"]
        v_eps, v_n = float(rec["eps"]), int(rec["n"])
        v_model = str(rec.get("model") or rec.get("plan"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"--exact {path}: not a neurodeploy verify JSON ({exc})") from exc
    differs = [w for w, same in (("eps", abs(v_eps - eps) < 1e-12), ("examples", v_n == n),
                                 ("model", Path(v_model).name == Path(model).name)) if not same]
    exact = f"exact [{lo:.4f}, {hi:.4f}] (verify, known draw)"
    if side == "attack":
        text, bad = f"{exact} <= attack {value:.4f}", value < lo
    else:
        text, bad = f"certified {value:.4f} <= {exact}", value > hi
    if differs:
        return f"sandwich at eps={eps}: {text} — not comparable: {', '.join(differs)} differ"
    return f"sandwich at eps={eps}: {text}" + ("  VIOLATED (a bug in one of them)" if bad else
                                                 "  consistent")
