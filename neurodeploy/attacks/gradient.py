"""First-order attacks on image-like inputs: FGSM, R-FGSM, BIM and PGD (ℓ∞ and ℓ2).

With ``g = ∇_x l(f(x), y)`` (EoT-averaged for stochastic classifiers, see
:mod:`neurodeploy.attacks.eot`) and ``P`` the projection onto ``B_p(x, ε) ∩ [0, 1]^d``:

- FGSM:    ``x' = P(x + ε·sign(g(x)))``                            (ℓ2: ``ε·g/‖g‖₂``)
- R-FGSM:  ``x₀ = P(x + α·sign(N(0, I)))``, ``x' = P(x₀ + (ε − α)·sign(g(x₀)))``, α = ε/2
           (Tramèr et al. 2018)
- BIM:     ``x_{k+1} = P(x_k + η·sign(g(x_k)))`` from ``x₀ = x``
- PGD:     BIM from a uniform random start in the ball, with restarts (Madry et al. 2018)

Default step ``η = 2.5·ε/n_iter``. The iterative attacks keep *any* misclassified iterate
(AutoAttack's rule), and restarts run only on points still robust.
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
from neurodeploy.attacks.eot import eot_logits, eot_loss_grad


def step_direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """``sign(g)`` (ℓ∞) or ``g/‖g‖₂`` per example (ℓ2)."""
    if norm == "linf":
        return g.sign()
    n = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g / n.view(-1, *[1] * (g.dim() - 1))


def random_start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    """Uniform point of the ℓ∞ ball (ℓ2: a uniform radius in [0, ε] along a Gaussian
    direction), clipped to [0, 1]."""
    if norm == "linf":
        d = (2 * rand(x.shape, gen, x) - 1) * eps
    else:
        d = randn(x.shape, gen, x)
        d = step_direction(d, "l2") * eps * rand((x.shape[0],), gen, x).view(-1, *[1] * (x.dim() - 1))
    return (x + d).clamp(0.0, 1.0)


@dataclass(frozen=True)
class FGSMConfig(GradientConfig):
    loss: str = "ce"


@dataclass(frozen=True)
class RFGSMConfig(GradientConfig):
    loss: str = "ce"
    alpha_frac: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha_frac < 1.0:
            from neurodeploy.errors import ConfigError

            raise ConfigError(f"RFGSMConfig.alpha_frac must be in [0, 1), got {self.alpha_frac}")


@dataclass(frozen=True)
class BIMConfig(GradientConfig):
    n_iter: int = 10
    step_size: float | None = None
    loss: str = "ce"


@dataclass(frozen=True)
class PGDConfig(GradientConfig):
    n_iter: int = 10
    n_restarts: int = 1
    step_size: float | None = None
    random_start: bool = True
    loss: str = "ce"


class FGSM(Attack):
    name = "fgsm"
    config_cls = FGSMConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        loss_fn = self.loss(c.loss)
        _, _, g = eot_loss_grad(f, x, y, loss_fn, eot)
        return project(x + eps * step_direction(g, c.norm), x, eps, domain, c.norm)


class RFGSM(Attack):
    name = "rfgsm"
    config_cls = RFGSMConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        alpha = c.alpha_frac * eps
        x0 = project(x + alpha * step_direction(randn(x.shape, gen, x), c.norm), x, eps, domain, c.norm)
        _, _, g = eot_loss_grad(f, x0, y, self.loss(c.loss), eot)
        return project(x0 + (eps - alpha) * step_direction(g, c.norm), x, eps, domain, c.norm)


def iterative_attack(
    f: BatchFirst,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    gen: torch.Generator,
    *,
    n_iter: int,
    n_restarts: int,
    step_size: float | None,
    use_random_start: bool,
    loss_fn: Callable[..., torch.Tensor],
    norm: str,
    eot: int,
) -> torch.Tensor:
    """PGD/BIM core: batch-first x; returns a misclassified iterate where one was found, else
    the last iterate of the last restart."""
    eta = step_size if step_size is not None else 2.5 * eps / n_iter
    adv = x.clone()
    robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(n_restarts):
        idx = robust.nonzero()[:, 0]
        if idx.numel() == 0:
            break
        xs, ys, fs = x[idx], y[idx], f.rows(idx)
        xk = random_start(xs, eps, norm, gen) if use_random_start else xs.clone()
        best = xk.clone()
        fooled = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
        for _ in range(n_iter):
            # only examples not yet fooled are attacked further: a fooled example keeps its
            # misclassified iterate, and every step is per example
            act = (~fooled).nonzero()[:, 0]
            if act.numel() == 0:
                break
            z, _, g = eot_loss_grad(fs.rows(act), xk[act], ys[act], loss_fn, eot)
            new = act[~is_correct(z, ys[act])]
            best[new] = xk[new]
            fooled[new] = True
            xk[act] = project(xk[act] + eta * step_direction(g, norm), xs[act], eps, "box", norm)
        act = (~fooled).nonzero()[:, 0]
        if act.numel():
            z = eot_logits(fs.rows(act), xk[act], eot)
            new = act[~is_correct(z, ys[act])]
            best[new] = xk[new]
            fooled[new] = True
        last = torch.where(fooled.view(-1, *[1] * (x.dim() - 1)), best, xk)
        adv[idx] = last
        robust[idx[fooled]] = False
    return adv


class BIM(Attack):
    name = "bim"
    config_cls = BIMConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        check_num_classes(c.loss, _n_classes(f, x))
        return iterative_attack(
            f, x, y, eps, gen, n_iter=c.n_iter, n_restarts=1, step_size=c.step_size,
            use_random_start=False, loss_fn=self.loss(c.loss), norm=c.norm,
            eot=resolve_eot(c.eot_iter, classifier),
        )


class PGD(Attack):
    name = "pgd"
    config_cls = PGDConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        check_num_classes(c.loss, _n_classes(f, x))
        return iterative_attack(
            f, x, y, eps, gen, n_iter=c.n_iter, n_restarts=c.n_restarts, step_size=c.step_size,
            use_random_start=c.random_start, loss_fn=self.loss(c.loss), norm=c.norm,
            eot=resolve_eot(c.eot_iter, classifier),
        )


def _n_classes(f: Any, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(f.rows(torch.arange(1))(x[:1]).shape[1])


register_attack("fgsm", FGSMConfig, FGSM)
register_attack("rfgsm", RFGSMConfig, RFGSM)
register_attack("bim", BIMConfig, BIM)
register_attack("pgd", PGDConfig, PGD)
