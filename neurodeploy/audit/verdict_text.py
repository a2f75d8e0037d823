"""The report's sentences: verdict lines, per-row check cells and provenance, in words.

Derived from the numbers of an :class:`~neurodeploy.audit.report.AuditReport`, never written by
hand. Every comparison is an equivalence verdict with the margin δ
(:mod:`neurodeploy.audit.verdict`); a robust-accuracy row is judged only when its own
gradient-masking checks ran on both sides and passed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from neurodeploy.jsonable import jsonable

if TYPE_CHECKING:
    from neurodeploy.audit.report import AccuracyRow, AuditReport, Check


def _pct(v: float) -> str:
    return f"{100.0 * v:.1f} %"


def _label(backend: str, report: AuditReport) -> str:
    from neurodeploy.audit.report import _label as label

    return label(backend, report)


def provenance_lines(report: AuditReport) -> list[str]:
    """Where the numbers come from: the model's training (from its checkpoint; "unknown"
    when it does not say) and the attack budget per threat model."""
    from neurodeploy.audit.provenance import eps_words

    m = report.model
    out = []
    eps = m.get("defense_eps")
    eps_text = eps_words(eps) if isinstance(eps, (int, float)) else str(eps or "unknown")
    audit_eps = ", ".join(f"{e:g}" for e in report.epsilons())
    if isinstance(eps, (int, float)) and audit_eps:
        eps_text += f", not the audit's ε {audit_eps}"
    opts = m.get("defense_options")
    out.append(f"training: defense {m.get('defense', 'unknown')}"
               + (f" (options {json.dumps(jsonable(opts), sort_keys=True)})" if opts else "")
               + f"; training ε {eps_text}; epochs {m.get('epochs', 'unknown')}; surrogate "
               f"{m.get('surrogate', 'unknown')}")
    for tm, d in (report.meta.get("budget_details") or {}).items():
        text = f"attack budget, {tm}: {d.get('cascade', '?')}"
        if report.meta.get("reduced_budget"):
            text += " (reduced budget)" if "reduced" not in text else ""
        if d.get("attacks"):
            text += " — " + "; ".join(d["attacks"])
        text += f"; norm {d.get('norm', 'ℓ∞')}; ε {', '.join(d.get('eps', []))}"
        if "holdout_draws" in d:
            text += (f"; EoT {d.get('eot_iter')} draws per gradient; each example's input "
                     f"selected on {d.get('select_draws')} attack-time draws, scored on "
                     f"{d.get('holdout_draws')} held-out draws")
        out.append(text)
    return out


def checks_summary(checks: list[Check]) -> dict[str, dict[str, Any]]:
    """Per side: did every check of its latest round pass, which failed, in words."""
    out: dict[str, dict[str, Any]] = {}
    for side in dict.fromkeys(c.backend for c in checks):
        mine = [c for c in checks if c.backend == side]
        last = max(c.round for c in mine)
        mine = [c for c in mine if c.round == last]
        failed = [c.name for c in mine if not c.passed]
        words = (f"{len(mine)}/{len(mine)} passed" if not failed else
                 f"FAILED {', '.join(failed)} ({len(mine) - len(failed)}/{len(mine)} passed)")
        if last:
            words += f" after {last} escalation round{'s' if last > 1 else ''}"
        out[side] = {"passed": not failed, "failed": failed, "words": words, "round": last}
    return out


def checks_on_row(checks: list[Check], threat_model: str, eps: float) -> list[Check]:
    """The checks that ran on the row (threat model, ε); a check without ``eps`` (an older
    report) stands for every row."""
    return [c for c in checks if c.eps is None
            or (c.threat_model == threat_model and abs(float(c.eps) - eps) < 1e-12)]


def row_checks(checks: list[Check], threat_model: str, eps: float) -> dict[str, dict[str, Any]]:
    """:func:`checks_summary` of the checks that ran on this row (sides without any are
    absent: their cell says "not run")."""
    return checks_summary(checks_on_row(checks, threat_model, eps))


def _short_numbers(c: Check) -> str:
    return c.message or ", ".join(f"{k} {v}" for k, v in c.numbers.items())


def _signed_pts(v: float) -> str:
    t = f"{100 * v:+.1f}"
    return "+0.0" if t == "-0.0" else t.replace("-", "−")


def _ci_text(r: AccuracyRow) -> str:
    return f" [{100 * r.ci95[0]:.1f}, {100 * r.ci95[1]:.1f}]" if r.ci95 else ""


def accuracy_cell(r: AccuracyRow, upper: bool) -> str:
    """``71.2 % [69.2, 73.2]``, or ``≤ … (upper bound)`` when the row's checks failed or did
    not run; ``… (exact)`` for the exact verifier's figure, and the verifier's interval beside
    an attack's number when it did not decide every example."""
    text = _pct(r.accuracy) + _ci_text(r)
    if getattr(r, "exact", False):
        return f"{text} (exact)"
    iv = getattr(r, "exact_interval", None)
    beside = f"exact [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}] %" if iv else ""
    if upper:
        return f"≤ {text} (upper bound{'; ' + beside if beside else ''})"
    return f"{text} (attack; {beside})" if beside else text


def _row_why(checks: list[Check], threat_model: str, eps: float,
             skip: tuple[str, ...] = ()) -> str:
    """Why a row's robust accuracies are only upper bounds ("" when every check ran on it on
    both sides and the latest round passed). Sides in ``skip`` (their figure is exact) need
    no checks."""
    mine = [c for c in checks_on_row(checks, threat_model, eps) if c.backend not in skip]
    summary = checks_summary(mine)
    failed = [c for c in mine if not c.passed and c.round == summary[c.backend]["round"]]
    if failed:
        return "; ".join(f"check {c.name} failed on side {c.backend} ({_short_numbers(c)})"
                         for c in failed)
    missing = [s for s in ("float", "deployed") if s not in summary and s not in skip]
    if missing:
        return (f"no gradient-masking checks ran on this row ({threat_model}, ε={eps:g}) on side "
                f"{' and '.join(missing)}")
    return ""


def _exact_sides(report: AuditReport, threat_model: str, eps: float) -> tuple[str, ...]:
    """The sides whose robust accuracy at (threat model, ε) is the exact verifier's."""
    return tuple(s for s in ("float", "deployed")
                 if (r := report.lookup(s, "worst", eps, threat_model)) is not None
                 and getattr(r, "exact", False))


def comparison_words(cmp: dict[str, Any], margin: float, robust: bool) -> str:
    """The equivalence words of a stored comparison (:mod:`neurodeploy.audit.verdict`);
    comparisons of older reports are judged here from their Δ and interval."""
    eq = cmp.get("equivalence")
    if not eq:
        from neurodeploy.audit.verdict import judge

        n = int(cmp.get("n") or 1)
        m2 = cmp.get("second_moment")
        if m2 is None:
            m2 = (int(cmp.get("b") or 0) + int(cmp.get("c") or 0)) / n
        eq = judge(float(cmp["delta"]), tuple(cmp["ci95"]), n, float(m2), margin,
                   robust=robust).to_dict()
    p = cmp.get("p_value")
    return str(eq["words"]) + (f" (McNemar p = {p:.2g})" if p is not None else "")


def verdicts(report: AuditReport) -> list[str]:
    """Sentences that say whether robustness survived deployment, derived from the numbers.

    Every comparison is an equivalence verdict with the margin δ of ``meta["margin"]``
    (default 5 points; :mod:`neurodeploy.audit.verdict`): "survived" only when the paired
    95 % interval's lower end is ≥ −δ, "dropped by" when it lies below 0, otherwise
    "inconclusive" with the samples that would settle it. A robust-accuracy row is judged at
    all only when gradient-masking checks ran on that row (side, threat model, ε) on both
    sides and passed; otherwise it is "inconclusive" and its accuracies are upper bounds."""
    from neurodeploy.audit.verdict import DEFAULT_MARGIN

    lines: list[str] = []
    meta = report.meta
    margin = float(meta.get("margin", DEFAULT_MARGIN))
    dep = _label("deployed", report)
    if meta.get("budget"):
        tms = ", ".join(report.threat_models()) or "known draw"
        lines.append(f"Attacks (per-example worst case of the cascade): {meta['budget']}; the same "
                     f"{meta.get('samples', '?')} samples for every number; threat models: {tms}; "
                     f"equivalence margin δ = {100 * margin:g} points.")
    for tm in report.clean_threat_models():
        c_f, c_d = report.clean("float", tm), report.clean("deployed", tm)
        cmp0 = report.comparison(tm, 0.0)
        if c_f and c_d:
            text = (f"Clean accuracy ({tm}): {_pct(c_f.accuracy)}{_ci_text(c_f)} "
                    f"{_label('float', report)}, {_pct(c_d.accuracy)}{_ci_text(c_d)} {dep}")
            lines.append(text + (f": {comparison_words(cmp0, margin, False)}." if cmp0 else "."))
    for tm in report.threat_models():
        for eps in report.epsilons():
            f = report.lookup("float", "worst", eps, tm)
            d = report.lookup("deployed", "worst", eps, tm)
            if not (f and d):
                continue
            cmp = report.comparison(tm, eps)
            why = _row_why(report.checks, tm, eps, _exact_sides(report, tm, eps))
            head = (f"Robust accuracy at ε={eps:g} ({tm}, {f.preset or 'attacks'}): "
                    f"{_label('float', report)} {accuracy_cell(f, bool(why))}, "
                    f"{dep} {accuracy_cell(d, bool(why))}")
            if why:
                change = (f"; Δ {_signed_pts(cmp['delta'])} points" if cmp else "")
                lines.append(f"{head}{change} — inconclusive: {why}.")
            elif cmp is None:
                lines.append(f"{head} — inconclusive: no paired comparison recorded.")
            else:
                lines.append(f"{head}: robustness {comparison_words(cmp, margin, True)}.")
    from neurodeploy.audit.exact_text import exact_lines

    lines += exact_lines(report)
    rep = report.replay
    if rep.get("lava_skipped"):
        lines.append(f"Lava replay skipped: {rep['lava_skipped']} — the emulator ≡ Lava "
                     f"agreement was not checked in this audit.")
    if rep.get("replays"):
        k, agree = int(rep["replays"]), int(rep.get("agree", 0))
        if agree == k:
            lines.append(f"Lava replay agreement: emulator ≡ Lava on {agree} of {k} replays "
                         f"({rep.get('lava_samples')} samples; clean and adversarial inputs, every "
                         f"layer's spikes) — the emulator is bit-exact with Lava here.")
        else:
            lines.append(f"Lava replay agreement: emulator and Lava DISAGREE on {k - agree} of {k} "
                         f"replays ({rep.get('lava_vs_emulator_spike_mismatches')} spikes differ).")
    if report.certified.get("verified_error") is not None:
        lines.append(
            f"Certified (verified) robust error of the float model at ε={report.certified.get('eps')}: "
            f"{_pct(report.certified['verified_error'])} ({report.certified.get('method', '')})."
        )
    lines += _checks_lines(report)
    return lines


def _checks_lines(report: AuditReport) -> list[str]:
    """The closing sentence on the gradient-masking checks."""
    rows = [(tm, e) for tm in report.threat_models() for e in report.epsilons()]
    whys = [(tm, e, _row_why(report.checks, tm, e, _exact_sides(report, tm, e)))
            for tm, e in rows]
    rounds = len(report.escalation)
    esc = f" after {rounds} escalation round{'s' if rounds != 1 else ''}" if rounds else ""
    if report.checks and not any(w for _, _, w in whys):
        return [f"All {len(report.checks)} gradient-masking checks passed{esc} (both sides, "
                f"every threat model and ε)."]
    summary = checks_summary(report.checks)
    failed = [c for c in report.checks if not c.passed and c.round == summary[c.backend]["round"]]
    out = []
    if failed:
        out.append("Gradient-masking checks FAILED" + esc + ": " + ", ".join(dict.fromkeys(
            f"{c.name} ({c.backend}, {c.threat_model}"
            + (f", ε={c.eps:g})" if c.eps is not None else ")") for c in failed))
            + " — the robust accuracies of those rows are upper bounds.")
    not_run = [f"{tm} ε={e:g}" for tm, e, w in whys if w.startswith("no gradient")]
    if not_run:
        out.append("No gradient-masking checks ran on " + ", ".join(not_run)
                   + " — the robust accuracies there are upper bounds.")
    return out


def verdict_is_bad(lines: list[str]) -> bool:
    """A verdict box is marked red when a line says a drop, a failure or no conclusion."""
    keys = ("NOT", "FAILED", "inconclusive", "dropped by", "masking suspect", "DISAGREE",
            "VIOLATION")
    return any(k in v for v in lines for k in keys)




def checks_cell(checks: list[Check], threat_model: str, eps: float) -> str:
    """``float: 6/6 passed; deployed: not run`` — per side, the checks that ran on this row."""
    summary = row_checks(checks, threat_model, eps)
    return "; ".join(f"{s}: {summary[s]['words'] if s in summary else 'not run'}"
                     for s in ("float", "deployed"))
