"""The audit's table: accuracy rows with intervals, paired comparisons, per-layer fidelity.

Intervals (95 %):

- known draw (and clean on the host maps): ``k`` of ``n`` examples robust — the exact
  Clopper–Pearson interval (:func:`~neurodeploy.audit.stats.clopper_pearson`);
- unknown draw: each example's survival rate over ``H`` held-out draws, mean over examples —
  the Wilson interval on the effective sample size of the examples × draws
  (:func:`~neurodeploy.audit.stats.clustered_proportion_ci`, Rao–Scott: the examples are the
  independent units, the draws within one are correlated);
- Δ deployed − float: the paired interval and equivalence verdict of
  :func:`~neurodeploy.audit.stats.paired_change` with the audit's margin.

A row's checks are the masking checks that ran on *that* row (side, threat model, ε); a row
without them says "not run" and its accuracies are upper bounds.

Exact rows (:mod:`neurodeploy.audit.exact`): under the known draw, when the exact verifier
decided every example of a (side, ε) and nothing contradicts it, the row's robust accuracy is
the exact ``|robust|/n`` (``exact = True``, not an upper bound; its Clopper–Pearson interval
is then only the sampling interval over the examples) and the paired comparison uses the
exact per-example verdicts; otherwise the attack's upper bound stays and
``exact_interval`` is shown beside it.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.audit.exact import exact_row
from neurodeploy.audit.report import AccuracyRow, LayerRow, row_checks
from neurodeploy.audit.sides import SIDES, THREAT_MODELS, agreement
from neurodeploy.audit.stats import clopper_pearson, clustered_proportion_ci, paired_change

CP = "Clopper–Pearson (exact binomial)"
CP_EXACT = CP + "; exact verdicts, so only the sampling interval over the examples"
CLUSTER = "Wilson on the effective sample size of examples × draws (Rao–Scott)"


def _known_row(side: str, attack: str, eps: float, ok: torch.Tensor, **kw: Any) -> AccuracyRow:
    n, k = int(ok.numel()), int(ok.sum())
    kw.setdefault("ci_method", CP)
    return AccuracyRow(side, attack, eps, k / n, n, ci95=list(clopper_pearson(k, n)),
                       threat_model="known draw", **kw)


def _unknown_row(side: str, attack: str, eps: float, ok: torch.Tensor,
                 tm: str = "unknown draw", **kw: Any) -> AccuracyRow:
    n = int(ok.shape[1])
    return AccuracyRow(side, attack, eps, float(ok.float().mean()), n,
                       ci95=list(clustered_proportion_ci(ok.float())),
                       threat_model=tm, draws=int(ok.shape[0]), ci_method=CLUSTER, **kw)


def _compare(tm: str, eps: float, base: torch.Tensor, other: torch.Tensor, run: Any,
             robust: bool) -> dict[str, Any]:
    ch = paired_change(base, other, seed=run.config.seed, margin=run.config.margin,
                       robust=robust)
    return {"threat_model": tm, "eps": eps, **ch.to_dict(), "words": ch.words}


def accuracy_rows(run: Any) -> tuple[list[AccuracyRow], list[dict[str, Any]]]:
    """Clean and worst-case rows per (threat model, ε, side), and the paired comparisons."""
    rows: list[AccuracyRow] = []
    comps: list[dict[str, Any]] = []
    for side in SIDES:
        rows.append(_known_row(side, "clean", 0.0, run.clean_ok[side], preset="–", checks="–"))
    comps.append(_compare("known draw", 0.0, run.clean_ok["float"], run.clean_ok["deployed"],
                          run, robust=False))
    if run.clean_unknown:
        for side in SIDES:
            rows.append(_unknown_row(side, "clean", 0.0, run.clean_unknown[side],
                                     preset="–", checks="–"))
        comps.append(_compare("unknown draw", 0.0, run.clean_unknown["float"].float(),
                              run.clean_unknown["deployed"].float(), run, robust=False))
    for threat in run.config.threat_models:
        tm = THREAT_MODELS[threat]
        preset = run.budget_labels.get(threat, "")
        for e in run.eps:
            summary = row_checks(run.checks, tm, e) if run.config.masking_checks else {}
            upper = any(s not in summary or not summary[s]["passed"] for s in SIDES)
            per = {}
            for side in SIDES:
                cell = summary[side]["words"] if side in summary else "not run"
                kw = dict(preset=preset, checks=cell, upper_bound=upper)
                ok = run.evals[side].flags[e] if threat == "known" else run.heldout[side][e]
                ex = exact_row(run.exact, side, e) if threat == "known" else None
                if ex is not None and ex["use_exact"]:  # every example decided, sound
                    flags = torch.tensor([r["status"] == "robust" for r in ex["examples"]])
                    rows.append(_known_row(side, "worst", e, flags, preset=preset, checks=cell,
                                           upper_bound=False, exact=True, ci_method=CP_EXACT,
                                           exact_interval=ex["exact_interval"]))
                    per[side] = flags.float()
                elif ok.shape[0] == 1:  # deterministic: k of n
                    rows.append(_known_row(side, "worst", e, ok[0], **kw, exact_interval=(
                        ex["exact_interval"] if ex is not None else None)))
                    per[side] = ok[0].float()
                else:  # draws (unknown draw, or neurons noisy at inference): clustered
                    rows.append(_unknown_row(side, "worst", e, ok, tm, **kw))
                    per[side] = ok.float()
            comps.append(_compare(tm, e, per["float"], per["deployed"], run, robust=True))
    return rows, comps


def fired_agreement(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Agreement on fired spikes: ``|a ∧ b| / |a ∨ b|`` (None when neither fired). Unlike the
    agreement over all (mostly silent) entries it does not approach 1 for sparse layers."""
    both, either = int((a.bool() & b.bool()).sum()), int((a.bool() | b.bool()).sum())
    return both / either if either else None


def layer_rows(run: Any) -> list[LayerRow]:
    """Per layer: float ↔ emulator and float ↔ Lava agreement (all entries, fired spikes,
    mismatch counts); the emulator also on exactly Lava's samples; quantization errors."""
    from neurodeploy.audit.sides import first_of, layer_cores

    quant = run.plan.quantization or {}
    f, e, lava = run.f_layers, run.e_layers, run.l_layers
    k = run.n_lava
    ag_e = agreement(f, e)
    ag_l = agreement([s[:, :k] for s in f], lava) if lava else None
    ag_es = agreement([s[:, :k] for s in f], [s[:, :k] for s in e]) if lava else None
    out = []
    for i, L in enumerate(run.plan.layers):
        q = quant.get(L.name, {}) if isinstance(quant, dict) else {}
        out.append(LayerRow(
            L.name, L.out_size, ag_e[i], ag_l[i] if ag_l else None,
            float(f[i].mean()), float(e[i].mean()),
            first_of(q, ("weight_max_abs_err_rel",)), first_of(q, ("threshold_err_rel",)),
            cores=layer_cores(run.plan.resources, i),
            fired_agreement_emulator=fired_agreement(f[i], e[i]),
            mismatches_emulator=int((f[i] != e[i]).sum()),
            fired_agreement_lava=fired_agreement(f[i][:, :k], lava[i]) if lava else None,
            mismatches_lava=int((f[i][:, :k] != lava[i]).sum()) if lava else None,
            agreement_emulator_lava_samples=ag_es[i] if ag_es else None,
            lava_samples=k if lava else None))
    return out
