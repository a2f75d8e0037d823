"""Auto-PGD (Croce & Hein 2020) exactly as AutoAttack implements it: APGD-CE, APGD-DLR, APGD-T.

One run of N iterations on batch-first x (per example: step size η, best point, best loss):

- start ``x⁽⁰⁾ = P(x + ε·t/‖t‖_∞)``, t ~ U[−1, 1]^d (ℓ∞); ``x + ε·t/‖t‖₂``, t ~ N(0, I) (ℓ2);
- initial step ``η = 2ε``;
- update with momentum ``a = 0.75`` (``a = 1`` at the first iteration)::

      z⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + η·sign(∇))                        (ℓ2: η·∇/‖∇‖₂)
      x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + a·(z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − a)·(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))

- checkpoints: the first after ``⌊0.22N⌋`` iterations, then every k iterations with k
  shrinking by ``⌊0.03N⌋`` per checkpoint down to ``⌊0.06N⌋`` (each at least 1), i.e. the
  paper's ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``; for N = 100 at iterations
  22, 41, 57, 70, 80, 87, 93, 99 (1-based counts);
- at a checkpoint η is halved and the iterate reset to x_best (and ∇ to its gradient) for the
  examples where (1) the loss increased in at most ρ·k of the last k steps (ρ = 0.75), or
  (2) η was not halved at the previous checkpoint and the best loss has not improved since;
- any misclassified iterate is kept (``x_best_adv``); restarts run only on points still robust.

Losses: CE; DLR ``−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e−12)``; targeted DLR
``−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e−12)`` against the top-k classes (APGD-T).

Deviations from AutoAttack (documented, never weaker): randomness comes from an explicit
generator instead of the global seed; APGD-T ranks target classes among j ≠ y (equal to
AutoAttack's rule whenever y is the unique top class); for points that stay robust the
highest-loss iterate is returned instead of the clean x (only matters for stochastic models,
where the engine's replay may still count it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from neurodeploy.attacks.base import (
    Attack,
    BatchFirst,
    GradientConfig,
    check_num_classes,
    is_correct,
    project,
    rand,
    randn,
    register_attack,
    resolve_eot,
)
from neurodeploy.attacks.closest import NearGated, check_gate, count_scale
from neurodeploy.attacks.eot import eot_logits, eot_loss_grad
from neurodeploy.errors import ConfigError

LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class APGDConfig(GradientConfig):
    """APGD-CE / APGD-DLR (the loss is fixed by the attack name)."""

    n_iter: int = 100
    n_restarts: int = 1
    rho: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.rho <= 1.0:
            raise ConfigError(f"{type(self).__name__}.rho must be in (0, 1], got {self.rho}")


@dataclass(frozen=True)
class APGDTConfig(APGDConfig):
    """APGD-T: targeted DLR against the ``n_target_classes`` most likely wrong classes; with
    ``near_gate`` > 0 only on the rows within that many output spikes of a flip
    (:mod:`neurodeploy.attacks.closest`)."""

    n_target_classes: int = 9
    near_gate: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_gate(self)


def checkpoint_schedule(n_iter: int) -> list[int]:
    """0-based iteration indices at which the step-size conditions are evaluated."""
    k = max(int(0.22 * n_iter), 1)
    dec, kmin = max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    out, c = [], 0
    for i in range(n_iter):
        c += 1
        if c == k:
            out.append(i)
            c = 0
            k = max(k - dec, kmin)
    return out


def _normalize(v: torch.Tensor, norm: str) -> torch.Tensor:
    flat = v.flatten(1)
    t = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
    return v / (t.view(-1, *[1] * (v.dim() - 1)) + 1e-12)


def apgd_single_run(
    f: BatchFirst,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    gen: torch.Generator,
    loss_fn: LossFn,
    *,
    n_iter: int,
    norm: str,
    rho: float,
    eot: int,
    y_target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run. Returns ``(x_best, robust, loss_best, x_best_adv)`` (module docstring).

    ``f`` is bound to the rows of ``x`` (:meth:`BatchFirst.rows`); a targeted loss
    ``loss_fn(z, y, y_target)`` gets ``y_target`` ``[B]``, subset together with x and y
    whenever only the still-robust examples are evaluated."""
    B = x.shape[0]

    def loss_for(rows: torch.Tensor | None) -> LossFn:
        if y_target is None:
            return loss_fn
        t = y_target if rows is None else y_target[rows]

        def targeted(z: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
            return loss_fn(z, yy, t.repeat(z.shape[0] // t.shape[0]))  # EoT folds draws

        return targeted

    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)

    t = 2 * rand(x.shape, gen, x) - 1 if norm == "linf" else randn(x.shape, gen, x)
    x_adv = (x + eps * _normalize(t, norm)).clamp(0.0, 1.0)
    x_best = x_adv.clone()
    x_best_adv = x_adv.clone()
    loss_steps = torch.zeros(n_iter, B, device=x.device)

    z, loss_indiv, grad = eot_loss_grad(f, x_adv, y, loss_for(None), eot)
    grad_best = grad.clone()
    robust = is_correct(z, y)
    loss_best = loss_indiv.clone()

    step = torch.full((B, *[1] * (x.dim() - 1)), 2.0 * eps, device=x.device, dtype=x.dtype)
    x_adv_old = x_adv.clone()
    k = n_iter_2
    counter3 = 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(B, dtype=torch.bool, device=x.device)

    for i in range(n_iter):
        with torch.no_grad():
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            if norm == "linf":
                x1 = project(x_adv + step * grad.sign(), x, eps, "box", "linf")
            else:
                x1 = project(x_adv + step * _normalize(grad, "l2"), x, eps, "box", "l2")
            x_adv = project(x_adv + (x1 - x_adv) * a + grad2 * (1 - a), x, eps, "box", norm)

        # Only examples not yet fooled are evaluated: a fooled example's result (x_best_adv)
        # is final and every quantity here is per example, so dropping it changes nothing for
        # the others (deterministic models: identical results) and saves its forward/backward.
        act = robust.nonzero()[:, 0]
        if act.numel() == 0:
            break
        z_a, li_a, g_a = eot_loss_grad(f.rows(act), x_adv[act], y[act], loss_for(act), eot)
        fooled = act[~is_correct(z_a, y[act])]
        robust[fooled] = False
        x_best_adv[fooled] = x_adv[fooled]
        loss_indiv = loss_best.clone()
        loss_indiv[act] = li_a
        grad[act] = g_a

        loss_steps[i] = loss_indiv
        improved = loss_indiv > loss_best
        x_best[improved] = x_adv[improved]
        grad_best[improved] = grad[improved]
        loss_best[improved] = loss_indiv[improved]

        counter3 += 1
        if counter3 == k:
            # condition 1: at most ρ·k increases among the last k steps (AutoAttack indexes
            # i − c − 1 with Python wrap-around; rows not yet written are 0, as there)
            n_incr = torch.zeros(B, device=x.device)
            for c in range(k):
                n_incr += (loss_steps[i - c] > loss_steps[i - c - 1]).float()
            fl_osc = n_incr <= k * rho
            # condition 2: not reduced at the previous checkpoint and no improvement since
            fl_no_impr = ~reduced_last_check & (loss_best_last_check >= loss_best)
            fl = fl_osc | fl_no_impr
            reduced_last_check = fl.clone()
            loss_best_last_check = loss_best.clone()
            if fl.any():
                step[fl] /= 2.0
                x_adv[fl] = x_best[fl]
                grad[fl] = grad_best[fl]
            k = max(k - size_decr, n_iter_min)
            counter3 = 0
    return x_best, robust, loss_best, x_best_adv


def _clean_robust(f: BatchFirst, x: torch.Tensor, y: torch.Tensor, eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = eot_logits(f, x, eot)
    return is_correct(z, y), z


class APGD(Attack):
    """APGD with a fixed loss (``apgd-ce``: CE, ``apgd-dlr``: DLR)."""

    config_cls = APGDConfig

    def __init__(self, config: APGDConfig | None = None, loss: str = "ce") -> None:
        super().__init__(config)
        self.loss_name = loss
        self.name = f"apgd-{loss}"  # type: ignore[misc]

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        robust, z = _clean_robust(f, x, y, eot)
        check_num_classes(self.loss_name, z.shape[1])
        loss_fn = self.loss(self.loss_name)
        adv = x.clone()
        for _ in range(c.n_restarts):
            idx = robust.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            x_best, rob, _, x_best_adv = apgd_single_run(
                f.rows(idx), x[idx], y[idx], eps, gen, loss_fn, n_iter=c.n_iter, norm=c.norm,
                rho=c.rho, eot=eot
            )
            adv[idx] = torch.where(rob.view(-1, *[1] * (x.dim() - 1)), x_best, x_best_adv)
            robust[idx[~rob]] = False
        return adv


def target_ranking(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Classes j ≠ y sorted by decreasing logit ``[B, K−1]`` (stable: ties by lower index)."""
    masked = z.masked_fill(torch.nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf"))
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices
    return order[:, :-1]


class APGDT(NearGated, Attack):
    name = "apgd-t"
    config_cls = APGDTConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        return self.run_near(f, x, y, count_scale(classifier),
                             lambda fr, xr, yr: self._targets(fr, xr, yr, eps, gen, classifier))

    def _targets(self, f: BatchFirst, x: torch.Tensor, y: torch.Tensor, eps: float,
                 gen: torch.Generator, classifier: Any) -> torch.Tensor:
        """The targeted runs on every row of ``x``."""
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        robust, z = _clean_robust(f, x, y, eot)
        n_classes = z.shape[1]
        check_num_classes("dlr-targeted", n_classes)
        n_targets = min(c.n_target_classes, n_classes - 1)
        loss_fn = self.loss("dlr-targeted")
        adv = x.clone()
        for r in range(n_targets):
            for _ in range(c.n_restarts):
                idx = robust.nonzero()[:, 0]
                if idx.numel() == 0:
                    return adv
                xs, ys, fs = x[idx], y[idx], f.rows(idx)
                y_t = target_ranking(eot_logits(fs, xs, eot), ys)[:, r]
                x_best, rob, _, x_best_adv = apgd_single_run(
                    fs, xs, ys, eps, gen, loss_fn, n_iter=c.n_iter, norm=c.norm, rho=c.rho,
                    eot=eot, y_target=y_t
                )
                adv[idx] = torch.where(rob.view(-1, *[1] * (x.dim() - 1)), x_best, x_best_adv)
                robust[idx[~rob]] = False
        return adv


register_attack("apgd-ce", APGDConfig, lambda cfg: APGD(cfg, "ce"))
register_attack("apgd-dlr", APGDConfig, lambda cfg: APGD(cfg, "dlr"))
register_attack("apgd-t", APGDTConfig, APGDT)
