"""Automated gradient-masking checks (Athalye et al. 2018 / Carlini et al. 2019, adapted to SNNs).

Each check runs real attacks on the given points and returns a :class:`CheckResult` with the
numbers behind the verdict. Accuracies are robust accuracies in [0, 1] with the engine's
decision rule (argmax, ties to the lowest index); for stochastic classifiers every accuracy
is the mean over ``draws`` replays with common seeds.

1. ``iterative_beats_single_step`` — ``acc(APGD-CE) ≤ acc(FGSM)``.
2. ``whitebox_beats_blackbox`` — ``acc(white box) ≤ acc(Square)`` and ``≤ acc(transfer)``
   when a source classifier is given; white box = worst case of FGSM, PGD and APGD-CE.
3. ``accuracy_falls_with_eps`` — APGD-CE accuracy is non-increasing over the ε sweep
   (default ε, 2ε, 4ε, 0.5, 1; up to ``monotone_tol``) and ≤ ``zero_tol`` at the largest ε.
4. ``unbounded_attack_succeeds`` — PGD with ε = 1 (the whole input box) leaves accuracy
   ≤ ``zero_tol``.
5. ``gradient_matches_finite_differences`` — the surrogate gradient must predict how the
   (EoT, common-seed) loss actually changes: (a) among the examples whose loss changes under
   a step ``h·sign(∇L)``, at least ``fd_min_ascent`` see it increase (none changing fails), and (b) over k random ±1 directions d the
   central differences ``L(x+hd) − L(x−hd)`` correlate positively (Pearson > 0) with the
   predicted ``⟨∇L, 2hd⟩``. A spiking net is piecewise constant, so h must be large enough to
   cross thresholds (default ε/2): the check asks that the gradient *predicts* loss changes,
   not that it equals a derivative.
6. ``nonzero_gradients_eval`` — in eval mode, the fraction of examples whose input gradient
   is exactly zero is ≤ ``max_zero_grad_fraction`` (AutoAttack's ``check_zero_gradients``;
   catches surrogates switched off in eval, detached spikes, Heaviside without surrogate).
   The default threshold is 0.25, not AutoAttack's 0: with a narrow surrogate (certify_snn's
   rectangle) confidently classified points whose membranes all sit outside the surrogate
   window legitimately get a zero gradient. The fraction under the wide ``bptt:atan``
   surrogate is reported beside it; attack those points with ``grad_mode="bptt:atan"``.

7. ``flips_beat_apgd`` (known draw only: an SNNClassifier with a stored Bernoulli map) — the
   spike-flip search (:mod:`neurodeploy.attacks.spikeset`, fast-sigmoid 5 ranking) run on the
   points APGD-CE (check 1's run) left robust breaks at most ``max_flip_fraction`` of them
   (default 0.2): when exact searches over the reachable spike trains find many adversarial
   examples that the input-gradient attack missed, gradient attacks are unreliable on this
   model and a robust accuracy from them alone is too optimistic. Other classifiers (the
   deployed one, unknown draw) report it skipped.

Binary (spike) inputs: checks 1, 3–5 use their ℓ0 analogues (spike-g2s vs one G2S step;
ε grows in flips; "unbounded" = all entries may flip; finite differences are skipped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from neurodeploy.attacks.base import (
    BatchFirst,
    attack_views,
    batch_dim,
    ce_loss,
    check_inputs,
    input_domain,
    is_correct,
    is_stochastic,
    loss_on,
    make_attack,
    resolve_eot,
    validate_eps,
)
from neurodeploy.attacks.eot import eot_loss_grad
from neurodeploy.errors import ConfigError


@dataclass
class CheckResult:
    name: str
    passed: bool
    numbers: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _accuracy(classifier: Any, x_adv: torch.Tensor, y: torch.Tensor, draws: int, seed: int) -> float:
    accs = []
    with torch.no_grad():
        for d in range(draws):
            if hasattr(classifier, "reseed"):
                classifier.reseed(seed + 7919 * d)
            accs.append(float(is_correct(classifier(x_adv), y).float().mean()))
    return sum(accs) / len(accs)


def _attack_acc(classifier, name, params, x, y, eps, seed, draws) -> float:
    gen = torch.Generator()
    gen.manual_seed(seed)
    if hasattr(classifier, "reseed"):
        classifier.reseed(seed + 1)
    x_adv = make_attack(name, **params).perturb(classifier, x, y, eps, gen)
    return _accuracy(classifier, x_adv, y, draws, seed + 2)


@dataclass
class _Context:
    """What the checks share: the validated inputs, the attack settings and the helpers."""

    classifier: Any
    x: torch.Tensor
    y: torch.Tensor
    eps: float
    domain: str
    bd: int
    eot: int
    draws: int
    seed: int
    trials: int
    noise_z: float
    n_iter: int
    common: dict[str, Any]
    grad_mode: str
    views: SimpleNamespace
    view_loss: Callable[..., torch.Tensor]
    iterative: tuple[str, dict[str, Any]]
    single: tuple[str, dict[str, Any]]

    @property
    def binary(self) -> bool:
        return self.domain == "binary"

    def slack(self, *accs: float) -> float:
        return _noise(accs, self.trials, self.noise_z)

    def acc(self, name: str, params: dict[str, Any], eps_: float, salt: int) -> float:
        return _attack_acc(self.classifier, name, params, self.x, self.y, eps_,
                           self.seed + 104729 * salt, self.draws)


@dataclass
class _InputGradient:
    """Checks 5 and 6's shared input: the batch-first view, its gradient, zero-gradient rates."""

    f: BatchFirst
    xb: torch.Tensor
    g: torch.Tensor
    zero_frac: float
    zero_frac_atan: float | None


def run_masking_checks(
    classifier: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    source_classifier: Any = None,
    eps_sweep: list[float] | None = None,
    n_iter: int = 50,
    square_queries: int = 1000,
    eot_iter: int | None = None,
    draws: int | None = None,
    seed: int = 0,
    zero_tol: float = 0.05,
    monotone_tol: float = 0.02,
    fd_directions: int = 16,
    fd_step: float | None = None,
    fd_min_ascent: float = 0.5,
    max_zero_grad_fraction: float = 0.25,
    grad_mode: str = "bptt",
    attack_params: dict[str, Any] | None = None,
    max_flip_fraction: float = 0.2,
    flip_iter: int = 100,
    noise_z: float = 2.0,
) -> list[CheckResult]:
    """Run the checklist (module docstring) and return one :class:`CheckResult` per check.

    ``attack_params`` (e.g. ``{"grad_mode": "bptt:fast_sigmoid:5", "input_grad": "sigmoid:50",
    "loss_on": "membrane"}``, the ``auto`` preset's main gradient) are given to every gradient
    attack of the checks, so the checks test the gradient the evaluation relied on.

    For a stochastic classifier (the unknown draw) every accuracy is a mean over
    ``len(x) · draws`` Bernoulli trials, so comparisons get ``noise_z`` standard errors of
    slack (:func:`_noise`, pooled trials: a lower bound on the true sampling error, so the
    slack stays small); a deterministic classifier gets none."""
    domain = input_domain(classifier)
    e = validate_eps(eps, domain)
    if e == 0:
        raise ConfigError("masking checks need eps > 0")
    bd = batch_dim(classifier)
    check_inputs(x, y, domain, bd)
    c = _context(classifier, x, y.to(x.device).long(), e, domain, bd,
                 eot_iter=eot_iter, draws=draws, seed=seed, n_iter=n_iter, grad_mode=grad_mode,
                 attack_params=attack_params, noise_z=noise_z)
    first, a_iter, a_single = _iterative_beats_single_step(c)
    results = [first, _whitebox_beats_blackbox(c, a_iter, a_single, square_queries,
                                               source_classifier)]
    third, sweep, envelope = _accuracy_falls_with_eps(c, eps_sweep, zero_tol, monotone_tol)
    results += [third, _unbounded_attack_succeeds(c, sweep, envelope, zero_tol)]
    grad = _input_gradient(c)
    results.append(_gradient_matches_finite_differences(c, grad, fd_directions, fd_step,
                                                        fd_min_ascent))
    results.append(_nonzero_gradients_eval(c, grad, max_zero_grad_fraction))
    results.append(_flips_beat_apgd(classifier, x, c.y, e, c.iterative[1], seed,
                                    max_flip_fraction, flip_iter, c.binary))
    return results


def _context(classifier: Any, x: torch.Tensor, y: torch.Tensor, e: float, domain: str,
             bd: int, *, eot_iter: int | None, draws: int | None, seed: int, n_iter: int,
             grad_mode: str, attack_params: dict[str, Any] | None, noise_z: float) -> _Context:
    """The checks' shared :class:`_Context` (EoT, draws, attack specs, views, noise trials)."""
    stoch = is_stochastic(classifier)
    eot = resolve_eot(eot_iter, classifier)
    draws = draws if draws is not None else (8 if stoch else 1)
    common: dict[str, Any] = {"eot_iter": eot, "grad_mode": grad_mode, **(attack_params or {})}
    views = SimpleNamespace(input_grad=common.get("input_grad", "ste"),
                            loss_on=common.get("loss_on", "readout"))
    view_loss = loss_on(ce_loss, views.loss_on)
    binary = domain == "binary"
    iterative = ("spike-g2s", {**common, "n_iter": n_iter}) if binary else (
        "apgd-ce", {**common, "n_iter": n_iter})
    single = ("spike-g2s", {**common, "n_iter": 1}) if binary else ("fgsm", common)
    trials = len(x) * draws if stoch else 0
    return _Context(classifier, x, y, e, domain, bd, eot, draws, seed, trials, noise_z, n_iter,
                    common, common["grad_mode"], views, view_loss, iterative, single)


def _iterative_beats_single_step(c: _Context) -> tuple[CheckResult, float, float]:
    """Check 1 (module docstring); also returns the iterative and single-step accuracies."""
    clean = _accuracy(c.classifier, c.x, c.y, c.draws, c.seed)
    single, iterative = c.single, c.iterative
    a_single = c.acc(*single, c.eps, 1)
    a_iter = c.acc(*iterative, c.eps, 2)
    return CheckResult(
        "iterative_beats_single_step", a_iter <= a_single + c.slack(a_iter, a_single),
        {"clean": clean, f"{single[0]}_single": a_single, iterative[0]: a_iter, "eps": c.eps},
        f"iterative {iterative[0]} {a_iter:.3f} vs single step {a_single:.3f}",
    ), a_iter, a_single


def _whitebox_beats_blackbox(c: _Context, a_iter: float, a_single: float, square_queries: int,
                             source_classifier: Any) -> CheckResult:
    """Check 2 (module docstring): white box beats black box / transfer."""
    e = c.eps
    white = [a_iter, a_single]
    if not c.binary:
        white.append(c.acc("pgd", {**c.common, "n_iter": c.n_iter}, e, 3))
    a_white = min(white)
    a_square = c.acc("square", {"n_queries": square_queries}, e, 4)
    nums: dict[str, Any] = {"whitebox_best": a_white, "square": a_square, "eps": e}
    ok = a_white <= a_square + c.slack(a_white, a_square)
    if source_classifier is not None:
        from neurodeploy.attacks.transfer import TransferAttack

        t_att = TransferAttack(make_attack(c.iterative[0], **c.iterative[1]), source_classifier)
        gen = torch.Generator()
        gen.manual_seed(c.seed + 5)
        xa = t_att.perturb(c.classifier, c.x, c.y, e, gen)
        a_tr = _accuracy(c.classifier, xa, c.y, c.draws, c.seed + 6)
        nums["transfer"] = a_tr
        ok = ok and a_white <= a_tr + c.slack(a_white, a_tr)
    return CheckResult(
        "whitebox_beats_blackbox", ok, nums,
        f"white box {a_white:.3f} vs square {a_square:.3f}"
        + (f", transfer {nums['transfer']:.3f}" if "transfer" in nums else ""),
    )


def _accuracy_falls_with_eps(c: _Context, eps_sweep: list[float] | None, zero_tol: float,
                             monotone_tol: float) -> tuple[CheckResult, list[float], list[float]]:
    """Check 3 (module docstring): accuracy falls with ε; also returns the sweep and envelope."""
    e = c.eps
    if eps_sweep is None:
        if c.binary:
            n_ent = c.x.numel() // c.x.shape[c.bd]
            eps_sweep = sorted({int(e), int(4 * e), int(16 * e), min(n_ent, int(64 * e))})
        else:
            eps_sweep = sorted({e, min(2 * e, 1.0), min(4 * e, 1.0), 0.5, 1.0})
    sweep = [validate_eps(v, c.domain) for v in eps_sweep]
    accs = [c.acc(*c.iterative, v, 10 + i) for i, v in enumerate(sweep)]
    mono = all(b <= a + monotone_tol + c.slack(a, b)
               for a, b in zip(accs, accs[1:], strict=False))
    # The ε-balls are nested, so an input broken within a smaller budget is broken within every
    # larger one: robust accuracy at ε is at most the smallest measured at any ε' ≤ ε. The final
    # value is judged on this envelope; the raw sweep still has to be monotone (above).
    envelope = [min(accs[: i + 1]) for i in range(len(accs))]
    return CheckResult(
        "accuracy_falls_with_eps", mono and envelope[-1] <= zero_tol + c.slack(envelope[-1]),
        {"eps": sweep, "accuracy": accs, "envelope": envelope, "zero_tol": zero_tol,
         "monotone_tol": monotone_tol, "noise_trials": c.trials, "noise_z": c.noise_z},
        f"accuracy {[round(a, 3) for a in accs]} over eps {sweep}",
    ), sweep, envelope


def _unbounded_attack_succeeds(c: _Context, sweep: list[float], envelope: list[float],
                               zero_tol: float) -> CheckResult:
    """Check 4 (module docstring): an unbounded attack succeeds."""
    if c.binary:
        big = float(c.x.numel() // c.x.shape[c.bd])
        a_unb = c.acc(c.iterative[0], c.iterative[1], big, 30)
    else:
        # The whole input box: worst case (per example is not needed for a rate) of PGD with
        # large steps and the APGD-CE run of the sweep at ε = 1 when there is one.
        big = 1.0
        a_pgd = c.acc("pgd", {**c.common, "n_iter": c.n_iter, "step_size": 0.1}, 1.0, 30)
        at_one = [a for v, a in zip(sweep, envelope, strict=True) if v >= 1.0]
        a_unb = min([a_pgd, *at_one])
    unb_nums: dict[str, Any] = {"eps": big, "accuracy": a_unb, "zero_tol": zero_tol,
                                "noise_slack": c.slack(a_unb)}
    if not c.binary:
        unb_nums.update({"pgd": a_pgd,
                         f"{c.iterative[0]}_envelope_at_eps_1": at_one[0] if at_one else None})
    return CheckResult(
        "unbounded_attack_succeeds", a_unb <= zero_tol + c.slack(a_unb), unb_nums,
        f"accuracy {a_unb:.3f} with an unbounded budget",
    )


def _input_gradient(c: _Context) -> _InputGradient:
    """Checks 5 and 6 need gradients w.r.t. the input (batch-first)."""
    from neurodeploy.attacks.grad_modes import gradient_mode

    classifier, y, eot = c.classifier, c.y, c.eot
    f = BatchFirst(classifier, c.bd)
    xb = (c.x.movedim(c.bd, 0) if c.bd else c.x).detach()
    with gradient_mode(classifier, c.grad_mode), attack_views(classifier, c.views):
        if hasattr(classifier, "reseed"):
            classifier.reseed(c.seed + 40)
        _, _, g = eot_loss_grad(f, xb, y, c.view_loss, eot)
        zero_frac = float((g.flatten(1).abs().amax(1) == 0).float().mean())
    zero_frac_atan = None
    if zero_frac > 0 and c.grad_mode == "bptt":
        from neurodeploy.attacks.grad_modes import spiking_nets

        if spiking_nets(classifier):
            with gradient_mode(classifier, "bptt:atan"):
                if hasattr(classifier, "reseed"):
                    classifier.reseed(c.seed + 40)
                _, _, g2 = eot_loss_grad(f, xb, y, ce_loss, eot)
            zero_frac_atan = float((g2.flatten(1).abs().amax(1) == 0).float().mean())
    return _InputGradient(f, xb, g, zero_frac, zero_frac_atan)


def _gradient_matches_finite_differences(c: _Context, grad: _InputGradient, fd_directions: int,
                                         fd_step: float | None,
                                         fd_min_ascent: float) -> CheckResult:
    """Check 5 (module docstring); skipped on binary inputs."""
    from neurodeploy.attacks.grad_modes import gradient_mode

    classifier, f, xb, g = c.classifier, grad.f, grad.xb, grad.g
    with gradient_mode(classifier, c.grad_mode), attack_views(classifier, c.views):
        if c.binary:
            return CheckResult(
                "gradient_matches_finite_differences", True, {"skipped": "binary inputs"},
                "skipped: finite differences are not defined on binary inputs",
            )
        h = fd_step if fd_step is not None else c.eps / 2
        gen = torch.Generator()
        gen.manual_seed(c.seed + 41)
        fd, pred = [], []

        def loss_at(xx: torch.Tensor) -> torch.Tensor:
            if hasattr(classifier, "reseed"):
                classifier.reseed(c.seed + 42)  # common random numbers
            _, li, _ = eot_loss_grad(f, xx, c.y, c.view_loss, c.eot, need_grad=False)
            return li

        for _ in range(fd_directions):
            d = torch.where(torch.rand(xb.shape, generator=gen) < 0.5, -1.0, 1.0).to(xb)
            lp = loss_at((xb + h * d).clamp(0, 1))
            lm = loss_at((xb - h * d).clamp(0, 1))
            dp = ((xb + h * d).clamp(0, 1) - (xb - h * d).clamp(0, 1))
            fd.append(lp - lm)
            pred.append((g * dp).flatten(1).sum(1))
        fdv, prv = torch.cat(fd), torch.cat(pred)
        corr = _pearson(fdv, prv)
        l0 = loss_at(xb)
        l_up = loss_at((xb + h * g.sign()).clamp(0, 1))
        changed = l_up != l0
        n_changed = int(changed.sum())
        ascent = float((l_up > l0).sum()) / n_changed if n_changed else 0.0
        return CheckResult(
            "gradient_matches_finite_differences", ascent >= fd_min_ascent and corr > 0,
            {"ascent_fraction": ascent, "changed_fraction": n_changed / len(l0),
             "min_ascent": fd_min_ascent, "pearson": corr, "h": h,
             "directions": fd_directions, "mean_abs_fd": float(fdv.abs().mean()),
             "mean_abs_pred": float(prv.abs().mean())},
            f"a step along sign(grad) raises the loss for {100 * ascent:.0f}% of the examples "
            f"whose loss changed ({n_changed}/{len(l0)}); "
            f"correlation of predicted and measured loss change {corr:.3f}",
        )


def _nonzero_gradients_eval(c: _Context, grad: _InputGradient,
                            max_zero_grad_fraction: float) -> CheckResult:
    """Check 6 (module docstring): few all-zero input gradients in eval mode."""
    zero_frac = grad.zero_frac
    was_training = getattr(c.classifier, "training", None)
    return CheckResult(
        "nonzero_gradients_eval", zero_frac <= max_zero_grad_fraction,
        {"zero_gradient_fraction": zero_frac, "max": max_zero_grad_fraction,
         "zero_gradient_fraction_atan": grad.zero_frac_atan,
         "classifier_training_mode": was_training},
        f"{100 * zero_frac:.1f}% of examples have an all-zero input gradient",
    )


def _flips_beat_apgd(classifier: Any, x: torch.Tensor, y: torch.Tensor, eps: float,
                     apgd_params: dict[str, Any], seed: int, max_fraction: float,
                     flip_iter: int, binary: bool) -> CheckResult:
    """Check 7 (module docstring): the fraction of APGD-robust points the flip search breaks."""
    from neurodeploy.attacks.presets import classifier_traits
    from neurodeploy.classifier import SNNClassifier

    t = classifier_traits(classifier)
    if binary or not (isinstance(classifier, SNNClassifier) and t["known_draw"]
                      and t["bernoulli"] and t["spiking"]):
        return CheckResult("flips_beat_apgd", True, {"skipped": "needs an SNNClassifier with a "
                                                     "known Bernoulli map"},
                           "skipped: the spike-flip search needs the known-draw threat model")
    gen = torch.Generator()
    gen.manual_seed(seed + 104729 * 2)  # check 1's APGD-CE run, repeated
    x_a = make_attack("apgd-ce", **apgd_params).perturb(classifier, x, y, eps, gen)
    with torch.no_grad():
        rows = is_correct(classifier(x_a), y).nonzero()[:, 0]
    broken = 0
    if rows.numel():
        sub = classifier.select(rows) if hasattr(classifier, "select") else classifier
        gen.manual_seed(seed + 104729 * 7)
        flip = make_attack("spike-set", grad_mode="bptt:fast_sigmoid:5", objective="ce",
                           n_iter=flip_iter, n_restarts=1)
        x_f = flip.perturb(sub, x[rows], y[rows], eps, gen)
        with torch.no_grad():
            broken = int((~is_correct(sub(x_f), y[rows])).sum())
    n_r = int(rows.numel())
    frac = broken / n_r if n_r else 0.0
    return CheckResult(
        "flips_beat_apgd", frac <= max_fraction,
        {"apgd_robust": n_r, "flips_broke": broken, "fraction": frac, "max": max_fraction,
         "n": int(x.shape[0]), "eps": eps, "flip_iter": flip_iter},
        f"spike flips broke {broken} of the {n_r} points APGD-CE left robust "
        f"({100 * frac:.0f}%, max {100 * max_fraction:.0f}%)",
    )


def _noise(accs: tuple[float, ...], trials: int, z: float) -> float:
    """``z`` standard errors of a difference of the accuracies ``accs`` (one: of that accuracy),
    each a mean over ``trials`` Bernoulli trials: ``z·sqrt(Σ p(1 − p)/trials)``; 0 for a
    deterministic classifier (``trials`` = 0)."""
    if trials <= 0:
        return 0.0
    return z * math.sqrt(sum(p * (1.0 - p) for p in accs) / trials)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else 0.0
