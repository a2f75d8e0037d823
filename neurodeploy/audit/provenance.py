"""What the report says about where its numbers come from: the model's training and the
attack budget.

- :func:`checkpoint_provenance` reads a checkpoint's ``extra`` record (written by the trainer:
  the defense's ``checkpoint_extra()``, the train config, the epoch) into the report's
  ``model`` block: defense name, its options, its training ε, epochs, surrogate. A field the
  checkpoint does not hold is ``"unknown"`` — never ``"none"``, which would claim an
  undefended model.
- :func:`budget_meta` states the attack budget per threat model: iterations, restarts, EoT
  draws, norm, ε also as k/255, and whether the ``auto-demo`` (reduced) budget was used.
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "unknown"


def _find_eps(d: Any) -> float | None:
    """The first training-ε option in a defense record (``eps``/``at_eps``/``*_eps``)."""
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                    k == "eps" or k.endswith("_eps")):
                return float(v)
        for v in d.values():
            got = _find_eps(v)
            if got is not None:
                return got
    if isinstance(d, list):
        for v in d:
            got = _find_eps(v)
            if got is not None:
                return got
    return None


def checkpoint_provenance(record: dict[str, Any] | None) -> dict[str, Any]:
    """The ``model`` fields of a checkpoint record (``load_checkpoint``'s second value)."""
    extra = (record or {}).get("extra") or {}
    dfn = extra.get("defense")
    out: dict[str, Any] = {}
    if isinstance(dfn, dict) and dfn.get("defense"):
        out["defense"] = str(dfn["defense"])
        opts = {k: v for k, v in dfn.items() if k != "defense"}
        if opts:
            out["defense_options"] = opts
        eps = _find_eps(opts)
        if eps is not None:
            out["defense_eps"] = eps
    elif isinstance(dfn, str) and dfn:
        out["defense"] = dfn
    tc = extra.get("train_config") or {}
    if "epoch" in extra:
        out["epochs"] = int(extra["epoch"])
    elif isinstance(tc, dict) and "epochs" in tc:
        out["epochs"] = int(tc["epochs"])
    return out


def model_provenance(model: Any, info: dict[str, Any] | None) -> dict[str, Any]:
    """The report's ``model`` block: the model config, what ``info`` knows (checkpoint
    provenance, a NIR file's block) and ``"unknown"`` for the training facts nobody stated."""
    out = {**model.config.to_dict(), **(info or {})}
    for key in ("defense", "defense_eps", "epochs"):
        out.setdefault(key, UNKNOWN)
    out.setdefault("surrogate", UNKNOWN)
    return out


def eps_words(eps: float) -> str:
    """``0.05 (≈ 12.8/255)``: ε in [0, 1] pixels and as k/255."""
    k = 255 * float(eps)
    kk = f"{k:.0f}" if abs(k - round(k)) < 1e-6 else f"{k:.1f}"
    return f"{float(eps):g} (≈ {kk}/255)"


def _spec_budget(spec: list[Any]) -> str:
    name, params, label = (list(spec) + [None, None, None])[:3]
    p = params or {}
    bits = [f"{k} {p[k]}" for k in ("n_iter", "n_restarts", "n_queries", "eot_iter") if k in p]
    return f"{label or name}" + (f" ({', '.join(bits)})" if bits else "")


def budget_meta(run: Any) -> dict[str, Any]:
    """``budget`` (the cascade label per threat model), ``budget_details`` (per threat model:
    attacks with iterations, restarts, queries, EoT; norm; ε as k/255; draws) and
    ``reduced_budget`` (True for ``auto-demo``)."""
    from neurodeploy.audit.run import _budget_words
    from neurodeploy.audit.sides import THREAT_MODELS

    cfg = run.config
    details: dict[str, Any] = {}
    for threat in cfg.threat_models:
        used = run.specs_used.get(f"float/{threat}") or {}
        d: dict[str, Any] = {
            "cascade": run.budget_labels.get(threat, ""),
            "attacks": [_spec_budget(s) for s in used.get("attacks", [])],
            "norm": "ℓ∞", "eps": [eps_words(e) for e in cfg.eps]}
        if threat == "unknown":
            d.update({"eot_iter": cfg.eot, "select_draws": cfg.select_draws,
                      "holdout_draws": cfg.draws})
        details[THREAT_MODELS[threat]] = d
    reduced = cfg.preset_budget == "demo" or any(
        a.split(":")[0] == "auto-demo" for a in (*cfg.attacks, *cfg.unknown_attacks))
    words = _budget_words(run.budget_labels)
    return {"budget": words + (" (reduced budget)" if reduced else ""),
            "budget_details": details, "reduced_budget": reduced,
            "escalation_budget": (
                f"at most {cfg.escalation_rounds} round(s), only while a check fails; round r "
                f"re-attacks both sides with presets.escalation(r) (2^r × the iterations, more "
                f"restarts, other surrogates) and re-runs the failing checks with 2^r × "
                f"{max(50, cfg.attack_steps)} iterations and the r-th escalation gradient")}
