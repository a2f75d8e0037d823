"""The audit as named stages over one :class:`AuditRun` (issue 20).

:func:`neurodeploy.audit.run.run_audit` is :func:`prepare` followed by :data:`STAGES`, each a
function ``stage(run) -> None`` that reads what earlier stages left in the run and fills its
part; :func:`finish` turns the run into the :class:`~neurodeploy.audit.report.AuditReport`
that the JSON, Markdown and HTML are rendered from::

    clean → attack → checks (+ escalation) → transfer → held-out → lava → certify → exact
          → rows → fidelity

- ``attack``: per side, the known draw through the attack engine (resumable, shardable) and the
  unknown draw through select-then-evaluate (:mod:`neurodeploy.audit.unknown_draw`);
- ``checks``: the gradient-masking checks per (side, threat model, ε) — every row of the table
  is backed by checks that ran on it — and escalation while one fails;
- ``transfer``: each side's worst case also tries the other side's final adversarial inputs;
- ``exact``: with ``config.exact``, the exact verifier per ε on both sides under the known
  draw (:mod:`neurodeploy.audit.exact`); ``run.exact`` stays ``None`` without it;
- ``rows``: accuracies with intervals and the paired equivalence verdicts
  (:mod:`neurodeploy.audit.stats`, :mod:`neurodeploy.audit.verdict`).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.audit.report import AccuracyRow, AuditReport, Check, LayerRow
from neurodeploy.audit.sides import (
    SIDES,
    THREAT_MODELS,
    Eval,
    Sides,
    correct,
    engine,
    fingerprint,
    masking,
    now,
    since,
    spec_record,
    threshold_traces,
)
from neurodeploy.audit.unknown_draw import (
    DrawScorer,
    Selection,
    attack_cascade,
    held_out,
    load_or_start,
    saver,
)
from neurodeploy.encoding import host_uniform
from neurodeploy.jsonable import jsonable as _plain
from neurodeploy.models import SpikingNet, library_versions
from neurodeploy.runtime import progress
from neurodeploy.safeload import check_state_files


@dataclass
class AuditRun:
    """Everything one audit computes, stage by stage (the results object)."""

    model: Any
    plan: Any
    x: torch.Tensor
    y: torch.Tensor
    profile: str
    config: Any
    out_dir: Path
    state_dir: Path
    sides: Sides
    u: torch.Tensor
    quiet: bool
    shards: Any = None
    model_info: dict[str, Any] = field(default_factory=dict)
    lava_ok: bool = False
    lava_skipped: str | None = None
    n_lava: int = 0
    stage_seconds: dict[str, tuple[float, float]] = field(default_factory=dict)
    # clean
    spikes: torch.Tensor | None = None
    f_layers: list[torch.Tensor] = field(default_factory=list)
    e_layers: list[torch.Tensor] = field(default_factory=list)
    l_layers: list[torch.Tensor] | None = None
    clean_ok: dict[str, torch.Tensor] = field(default_factory=dict)
    clean_unknown: dict[str, torch.Tensor] = field(default_factory=dict)  # [H, N] per side
    # attacks
    evals: dict[str, Eval] = field(default_factory=dict)          # known draw, per side
    selections: dict[str, Selection] = field(default_factory=dict)  # unknown draw, per side
    heldout: dict[str, dict[float, torch.Tensor]] = field(default_factory=dict)
    unknown_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attack_seconds: dict[str, Any] = field(default_factory=dict)
    specs_used: dict[str, Any] = field(default_factory=dict)
    budget_labels: dict[str, str] = field(default_factory=dict)
    # checks, transfer, lava, certification, exact
    checks: list[Check] = field(default_factory=list)
    escalation: list[dict[str, Any]] = field(default_factory=list)
    transfer: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    certified: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    exact: dict[str, Any] | None = None
    # report
    rows: list[AccuracyRow] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    thresholds: list[Any] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def eps(self) -> list[float]:
        return [float(e) for e in self.config.eps]

    def scorer(self, side: str) -> DrawScorer:
        """Classify on seeded draws with ``side``'s known-draw classifier on those maps."""
        return DrawScorer(lambda u: self.sides.classifier(side, "known", u, self.config.seed),
                          int(self.model.config.num_steps), int(self.config.seed))

    def timed(self, name: str, t0: tuple[float, float]) -> None:
        self.stage_seconds[name] = since(t0)


def _hook(name: str) -> None:
    from neurodeploy.audit import run as R

    if R._STAGE_HOOK is not None:
        R._STAGE_HOOK(name)


def _specs(run: AuditRun, side: str, specs: list[Any]) -> tuple[list[Any], list[str]]:
    from neurodeploy.audit import run as R

    if side == "deployed":
        return R.deployed_specs(specs)
    if not isinstance(run.model, SpikingNet):  # a NIR graph's interpreter
        return R.nir_float_specs(specs)
    return specs, []


# ---------------------------------------------------------------------- stages


def clean_stage(run: AuditRun) -> None:
    """Host spikes to every backend (known draw); the unknown draw's clean accuracy on the
    held-out draws."""
    t0 = now()
    run.spikes = (run.x.unsqueeze(0) > run.u).float()
    run.f_layers = run.sides.float_layers(run.spikes)
    run.e_layers = run.sides.emulator_layers(run.spikes)
    run.clean_ok = {"float": correct(run.f_layers[-1].sum(0), run.y),
                    "deployed": correct(run.e_layers[-1].sum(0), run.y)}
    if "unknown" in run.config.threat_models:
        rows = torch.arange(run.n)
        for side in SIDES:
            run.clean_unknown[side] = run.scorer(side).correct(run.x, run.y, rows, "holdout",
                                                               run.config.draws)
    run.timed("clean", t0)


def attack_stage(run: AuditRun) -> None:
    """Each (side, threat model): the known draw through the engine, the unknown draw through
    select-then-evaluate."""
    from neurodeploy.audit import run as R

    cfg = run.config
    for threat in cfg.threat_models:
        for side in SIDES:
            t0 = now()
            clf = run.sides.classifier(side, threat, run.u, cfg.seed)
            stoch = bool(clf.stochastic)
            specs, run.budget_labels[threat] = R.attack_specs(cfg, stoch, threat)
            specs, dropped = _specs(run, side, specs)
            key = f"{side}/{threat}"
            if threat == "known":
                # deterministic unless the neurons themselves are noisy at inference
                draws, eot = (cfg.draws, cfg.eot) if stoch else (1, None)
                bar = progress(total=1, quiet=run.quiet, desc=f"attack {side}, known draw")
                res, rec = engine(clf, run.x, run.y, specs, run.eps, cfg.seed, draws, eot,
                                  run.state_dir / f"{side}_{threat}.pt", run.quiet, run.shards)
                bar.update(1)
                bar.close()
                ev = Eval(flags={e: res.robust[e].cpu().clone() for e in res.eps_list},
                          adversarial={e: res.adversarial[e].cpu().clone() for e in res.eps_list},
                          clean=list(res.clean_accuracy), records=[], draws=draws)
                ev.records.append({"round": 0, "not_applicable": dropped, **rec["record"]})
                run.evals[side] = ev
                run.attack_seconds[key] = _plain(rec["seconds"])
                run.specs_used[key] = {"attacks": spec_record(specs), "draws": draws,
                                       "eot_iter": eot, "not_applicable": dropped}
            else:
                lowered = _unknown_round(run, side, clf, specs, cfg.seed, "round0")
                run.unknown_records[side] = [{"round": 0, "not_applicable": dropped,
                                              "attacks": spec_record(specs),
                                              "lowered_selection_rate": lowered}]
                run.specs_used[key] = {
                    "attacks": spec_record(specs), "draws": cfg.draws, "eot_iter": cfg.eot,
                    "select_draws": cfg.select_draws, "not_applicable": dropped,
                    "scoring": "select on select_draws attack-time draws, evaluate on draws "
                               "held-out draws (neurodeploy.audit.unknown_draw)"}
            run.timed(f"attack {side}/{THREAT_MODELS[threat]}", t0)
            _hook(key)


def _unknown_round(run: AuditRun, side: str, clf: Any, specs: list[Any], seed: int, tag: str
                   ) -> dict[str, Any]:
    cfg = run.config
    path = run.state_dir / f"{side}_unknown_select.pt"
    sc = run.scorer(side)
    sel = run.selections.get(side) or load_or_start(
        path, lambda: Selection.start(sc, run.x, run.y, run.eps, cfg.select_draws))
    run.selections[side] = sel
    if not specs:
        return {}
    bar = progress(total=len(specs) * len(run.eps), quiet=run.quiet,
                   desc=f"attack {side}, unknown draw ({tag})")
    try:
        return attack_cascade(sel, clf, sc, run.x, run.y, specs, run.eps, seed, cfg.eot, tag,
                              save=saver(sel, path), progress=bar.update)
    finally:
        bar.close()


def checks_stage(run: AuditRun) -> None:
    """Gradient-masking checks per (side, threat model, ε); escalate while one fails."""
    cfg = run.config
    if not cfg.masking_checks:
        return
    t0 = now()
    m = min(run.n, cfg.masking_samples)
    keys = [(s, t, e) for t in cfg.threat_models for e in run.eps for s in SIDES]
    latest: dict[tuple[str, str, float], list[Check]] = {}
    bar = progress(total=len(keys), desc="masking checks (side, threat model, ε)",
                   quiet=run.quiet)
    for k in keys:
        latest[k] = masking(run.sides, *k, run.u, run.x, run.y, m, cfg, 0, run.state_dir)
        bar.update(1)
    bar.close()
    run.timed("masking checks", t0)
    _hook("checks/0")
    for level in range(1, cfg.escalation_rounds + 1):
        failing = [k for k in keys if any(not c.passed for c in latest[k])]
        if not failing:
            break
        _escalate(run, level, failing, latest, m)
    for k in keys:
        run.checks += latest[k]


def _escalate(run: AuditRun, level: int, failing: list[tuple[str, str, float]],
              latest: dict[tuple[str, str, float], list[Check]], m: int) -> None:
    """One escalation round: both sides re-attacked under every threat model with a failing
    check (stronger specs), the failing checks re-run with the next gradient."""
    from neurodeploy.audit import run as R

    cfg = run.config
    t0 = now()
    trig: dict[str, list[str]] = {}
    for s, t, e in failing:
        for c in latest[(s, t, e)]:
            if not c.passed and c.name not in trig.setdefault(s, []):
                trig[s].append(c.name)
    rnd: dict[str, Any] = {"round": level, "trigger": trig,
                           "check_gradient": R.check_gradient(cfg, level),
                           "check_iterations": R._check_iters(cfg, level), "robust_accuracy": {}}
    for threat in dict.fromkeys(t for _, t, _ in failing):
        for side in SIDES:
            clf = run.sides.classifier(side, threat, run.u, cfg.seed)
            specs, dropped = _specs(run, side, R.escalation_specs(cfg, level, threat))
            before = _robust_now(run, side, threat)
            if threat == "known":
                ev = run.evals[side]
                rows = ev.still_robust()
                if specs and rows.numel():
                    stoch = bool(clf.stochastic)
                    res, rec = engine(clf.select(rows), run.x[rows], run.y[rows], specs, run.eps,
                                      cfg.seed + 7919 * level, ev.draws,
                                      cfg.eot if stoch else None,
                                      run.state_dir / f"{side}_{threat}_esc{level}.pt",
                                      run.quiet, run.shards)
                    ev.absorb(res, rows, {"round": level, "rows": rows.tolist(),
                                          "not_applicable": dropped, **rec["record"]})
            else:
                low = _unknown_round(run, side, clf, specs, cfg.seed + 7919 * level,
                                     f"esc{level}")
                run.unknown_records[side].append({"round": level, "not_applicable": dropped,
                                                  "attacks": spec_record(specs),
                                                  "lowered_selection_rate": low})
            rnd["robust_accuracy"][f"{side}/{threat}"] = {
                "attacks": spec_record(specs), "not_applicable": dropped,
                "before": _plain(before), "after": _plain(_robust_now(run, side, threat)),
                "measure": "known draw: worst case over the cascade" if threat == "known" else
                           "unknown draw: mean selection-draw survival of the kept inputs"}
    for k in failing:
        latest[k] = masking(run.sides, *k, run.u, run.x, run.y, m, cfg, level, run.state_dir)
    rnd["checks_after"] = {f"{s}/{t}/{e:g}": [asdict(c) for c in latest[(s, t, e)]]
                           for s, t, e in failing}
    run.escalation.append(rnd)
    run.timed(f"escalation round {level}", t0)
    _hook(f"checks/{level}")


def _robust_now(run: AuditRun, side: str, threat: str) -> dict[float, float]:
    if threat == "known":
        ev = run.evals[side]
        return {e: float(ev.flags[e].float().mean()) for e in ev.flags}
    sel = run.selections[side]
    return {e: float(sel.rate[e].mean()) for e in sel.rate}


def transfer_stage(run: AuditRun) -> None:
    """Each side's worst case also tries the other side's final adversarial inputs (both read
    before either is updated, so the exchange is symmetric)."""
    t0 = now()
    other = {"float": "deployed", "deployed": "float"}
    if run.evals:
        advs = {s: {e: run.evals[s].adversarial[e].clone() for e in run.eps} for s in SIDES}
        for side in SIDES:
            clf = run.sides.classifier(side, "known", run.u, run.config.seed)
            got = {}
            for e in run.eps:
                xa = advs[other[side]][e]
                with torch.no_grad():
                    ok = correct(clf(xa), run.y)
                ev = run.evals[side]
                newly = ev.flags[e].all(0) & ~ok  # robust in every draw so far, broken now
                ev.flags[e] &= ok.unsqueeze(0)
                ev.adversarial[e][newly] = xa[newly]
                got[f"{e:g}"] = int(newly.sum())
            run.transfer[f"{side}/known"] = {"from": other[side], "newly_broken": got}
            run.evals[side].records.append({
                "round": "transfer", "from": other[side], "n_examples": run.n, "draws": 1,
                "what": "final worst case: every round and the other side's final inputs",
                "per_eps": [{"eps": e, "robust_flags": run.evals[side].flags[e].to(
                    torch.int8).tolist(), "broken_by_counts": {
                        f"transfer:{other[side]}": got[f"{e:g}"]}} for e in run.eps]})
    if run.selections:
        chosen = {s: {e: run.selections[s].chosen[e].clone() for e in run.eps} for s in SIDES}
        for side in SIDES:
            sel, sc = run.selections[side], run.scorer(side)
            rows = torch.arange(run.n)
            run.transfer[f"{side}/unknown"] = {
                "from": other[side],
                "lowered_selection_rate": {f"{e:g}": sel.offer(
                    sc, e, rows, chosen[other[side]][e], run.y, f"transfer:{other[side]}")
                    for e in run.eps}}
    run.timed("transfer", t0)


def heldout_stage(run: AuditRun) -> None:
    """The unknown draw's kept inputs on the held-out draws no attack saw."""
    t0 = now()
    for side, sel in run.selections.items():
        ok = held_out(sel, run.scorer(side), run.y, run.config.draws)
        run.heldout[side] = ok
        run.unknown_records[side].append({
            "round": "held-out", "n_examples": run.n, "draws": run.config.draws,
            "select_draws": sel.select_draws,
            "what": "each example's kept input (lowest survival on the selection draws) "
                    "classified on held-out draws no attack or selection saw",
            "per_eps": [{"eps": e, "robust_accuracy": float(ok[e].float().mean()),
                         "robust_flags": ok[e].to(torch.int8).tolist(),
                         "selection_rate": sel.rate[e].tolist(),
                         "broken_by_counts": _counts(sel.source[e])} for e in run.eps]})
    run.timed("held-out evaluation", t0)


def _counts(labels: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in labels:
        if a != "clean":
            out[a] = out.get(a, 0) + 1
    return out


def lava_stage(run: AuditRun) -> None:
    """Emulator ≡ Lava on clean and the deployed side's known-draw adversarial inputs."""
    t0 = now()
    rep: dict[str, Any] = {"lava_samples": run.n_lava if run.lava_ok else 0}
    if run.lava_skipped is not None:
        rep["lava_skipped"] = run.lava_skipped
    if not run.lava_ok:
        rep["lava_vs_emulator_spike_mismatches"] = None
        run.replay = rep
        return
    k = run.n_lava
    batches = [("clean", run.spikes[:, :k])]
    ev = run.evals.get("deployed")
    if ev is not None:
        for e in run.eps:
            batches.append((f"eps={e:g}", (ev.adversarial[e][:k].unsqueeze(0) > run.u[:, :k]).float()))
    big = torch.cat([b for _, b in batches], dim=1)
    bar = progress(total=2, desc=f"Lava replay ({big.shape[1]} inputs)", quiet=run.quiet)
    lav = run.sides.lava_layers(big)
    bar.update(1)
    emu = run.sides.emulator_layers(big)
    bar.update(1)
    bar.close()
    agree = torch.ones(big.shape[1], dtype=torch.bool)
    mism, fired_l, fired_e = 0, 0, 0
    for a, b in zip(emu, lav, strict=True):
        diff = (a != b).flatten(2).transpose(0, 1).flatten(1)
        agree &= ~diff.any(1)
        mism += int(diff.sum())
        fired_e, fired_l = fired_e + int(a.sum()), fired_l + int(b.sum())
    run.l_layers = [s[:, :k] for s in lav]
    rep.update({
        "replays": int(agree.numel()), "agree": int(agree.sum()),
        "lava_vs_emulator_spike_mismatches": mism, "spikes_emulator": fired_e,
        "spikes_lava": fired_l,
        "per_input": {name: {"agree": int(agree[j * k:(j + 1) * k].sum()), "replays": k}
                      for j, (name, _) in enumerate(batches)},
        "what": "clean inputs and the deployed side's known-draw adversarial inputs of "
                "the first lava_samples examples, host spikes, all layers compared (the "
                "emulator run on exactly the inputs Lava ran)"})
    run.replay = rep
    run.timed("lava replay", t0)


def certify_stage(run: AuditRun) -> None:
    """S-IBP / S-CROWN on the float model; the deployed certificate and efficiency blocks."""
    from neurodeploy.efficiency import audit_blocks

    cfg = run.config
    t0 = now()
    cert: dict[str, Any] = {}
    ceps = cfg.cert_eps if cfg.cert_eps is not None else min(cfg.eps)
    if cfg.certify and run.model.config.neuron == "lif":
        from neurodeploy.bounds.certify import certify

        best = None
        for method in progress(("ibp", "crown"), desc="certification (S-IBP, S-CROWN)",
                               quiet=run.quiet):
            res = certify(run.model, run.x, run.y, ceps, method=method, seed=cfg.seed)
            err = 1.0 - float(res.verified.float().mean())
            cert[f"{method}_verified_error"] = err
            best = err if best is None else min(best, err)
        cert.update({"eps": ceps, "verified_error": best, "method": "best of S-IBP, S-CROWN"})
    e_adv = max(run.eps)
    ev = run.evals.get("deployed")
    adv = ev.adversarial.get(e_adv) if ev is not None else None
    net = run.model if isinstance(run.model, SpikingNet) else None
    dep, eff = audit_blocks(net, run.plan, run.x, run.y, torch.arange(run.n), cfg.seed,
                            ceps if cfg.certify else None, adversarial=adv, profile=run.profile)
    if dep:
        cert["deployed"] = dep["deployed"]
        cert["deployed_verdict"] = dep["verdict"]
        cert["deployed_threat_model"] = dep["threat_model"]
        cert.setdefault("eps", dep["eps"])
        if "float" in dep:
            cert["float_known_draw"] = dep["float"]
    if adv is not None:
        eff["adversarial_eps"] = float(e_adv)
    run.certified, run.efficiency = cert, eff
    run.timed("certify", t0)


def exact_stage(run: AuditRun) -> None:
    """Exact verification per ε under the known draw, both sides, when ``config.exact``
    (:mod:`neurodeploy.audit.exact`); a verifier registered in :data:`EXACT_VERIFIER` (a
    function ``run -> dict``) replaces it. ``run.exact`` stays ``None`` otherwise."""
    from neurodeploy.audit.exact import exact_verification

    asked = bool(getattr(getattr(run, "config", None), "exact", False))
    verifier = EXACT_VERIFIER or (exact_verification if asked else None)
    if verifier is not None:
        t0 = now()
        run.exact = verifier(run)
        run.timed("exact verification", t0)


#: an optional exact verifier ``AuditRun -> dict`` overriding :mod:`neurodeploy.audit.exact`
EXACT_VERIFIER: Callable[[AuditRun], dict[str, Any]] | None = None


def rows_stage(run: AuditRun) -> None:
    """Accuracy rows with intervals and the paired equivalence comparisons."""
    from neurodeploy.audit.rows import accuracy_rows

    run.rows, run.comparisons = accuracy_rows(run)
    _hook("rows")


def fidelity_stage(run: AuditRun) -> None:
    """Per-layer agreement (all spikes and fired spikes, mismatch counts), thresholds."""
    from neurodeploy.audit.rows import layer_rows

    run.layers = layer_rows(run)
    run.thresholds = threshold_traces(run.model, run.sides, run.spikes)


STAGES: tuple[Callable[[AuditRun], None], ...] = (
    clean_stage, attack_stage, checks_stage, transfer_stage, heldout_stage, lava_stage,
    certify_stage, exact_stage, rows_stage, fidelity_stage)


def finish(run: AuditRun, t_audit: tuple[float, float]) -> AuditReport:
    """The report of a finished run (saved into ``run.out_dir``)."""
    from neurodeploy.audit.provenance import budget_meta, model_provenance
    from neurodeploy.audit.run import git_sha

    cfg = run.config
    run.stage_seconds["total"] = since(t_audit)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    robustness: dict[str, Any] = {f"{s}/known": ev.records for s, ev in run.evals.items()}
    for side, recs in run.unknown_records.items():
        robustness[f"{side}/unknown"] = recs
    report = AuditReport(
        meta={"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "git_sha": git_sha(), "seed": cfg.seed, "samples": run.n,
              "versions": library_versions(), "config": _plain(asdict(cfg)),
              "margin": cfg.margin, **budget_meta(run),
              "state_dir": str(run.state_dir),
              "stage_seconds": {k: round(v[0], 2) for k, v in run.stage_seconds.items()},
              "stage_cpu_seconds": {k: round(v[1], 2) for k, v in run.stage_seconds.items()},
              "attack_seconds": run.attack_seconds,
              "load_average": list(load) if load else None,
              "threat_models": [THREAT_MODELS[t] for t in cfg.threat_models],
              "transfer": run.transfer,
              "sharding": run.shards.record() if run.shards is not None else None},
        model=model_provenance(run.model, run.model_info),
        profile={"name": run.profile, "display_name": _display(run.profile)},
        accuracy=run.rows, certified=run.certified, layers=run.layers,
        thresholds=run.thresholds, checks=run.checks, resources=_plain(run.plan.resources),
        attacks=[run.specs_used], replay=run.replay, comparisons=run.comparisons,
        escalation=run.escalation, efficiency=_plain(run.efficiency), robustness=_plain(robustness),
        exact=run.exact)
    report.save(run.out_dir)
    return report


def _display(profile: str) -> str:
    return {"loihi2": "Loihi 2", "loihi1": "Loihi 1"}.get(profile, profile)


def prepare(model: Any, x: torch.Tensor, y: torch.Tensor, profile: str, config: Any,
            out_dir: Path, plan: Any, shards: Any, quiet: bool,
            model_info: dict[str, Any] | None) -> AuditRun:
    """Inputs cut to ``config.samples``, the plan, the sides, the state folder, host maps."""
    from neurodeploy.errors import ConfigError, EnvironmentMissingError
    from neurodeploy.exporters.compiler import compile_model

    if model.config.encoding != "bernoulli":
        raise ConfigError(f"the audit needs Bernoulli-coded image inputs (the host encodes them "
                          f"for the chip); the model's encoding is {model.config.encoding!r}")
    if not isinstance(model, SpikingNet):  # a NIR graph's interpreter: images in its Input shape
        x = model.fit_images(x)
    n = min(config.samples, len(y))
    x, y = x[:n].float().cpu(), y[:n].long().cpu()
    model = model.eval()
    if plan is None:
        if not isinstance(model, SpikingNet):
            raise ConfigError("a NIR model is audited with its plan: load both with "
                              "neurodeploy.audit.nir_model.load_nir_model")
        plan = compile_model(model, profile=profile)
    lava_ok, skipped = config.lava_samples != 0, None
    if lava_ok:
        try:
            from neurodeploy.sims.lava_env import find_lava_python

            find_lava_python()
        except EnvironmentMissingError as exc:
            lava_ok, skipped = False, str(exc)
    sides = Sides(model, plan, lava_ok, config.lava_timeout_s)
    sides.shards = shards
    state_dir = Path(out_dir) / "state" / fingerprint(model, plan, config, x, y)
    check_state_files(state_dir)  # data only, all of them, before any attack runs
    state_dir.mkdir(parents=True, exist_ok=True)
    sides.state_dir = state_dir
    u = host_uniform(torch.arange(n), config.seed, model.config.num_steps, tuple(x.shape[1:]))
    return AuditRun(model=model, plan=plan, x=x, y=y, profile=profile, config=config,
                    out_dir=Path(out_dir), state_dir=state_dir, sides=sides, u=u, quiet=quiet,
                    shards=shards, model_info=dict(model_info or {}), lava_ok=lava_ok,
                    lava_skipped=skipped,
                    n_lava=n if config.lava_samples is None else min(n, config.lava_samples))
