"""Certified training with S-IBP / S-CROWN bounds (Liang et al., NeurIPS 2022), CROWN-IBP style.

Per batch (x, y), at run position p ∈ [0, 1] (the trainer's ``progress``)::

    ε(p)   = eps · clip((p − ramp_start) / ramp, 0, 1)        linear ramp from 0
             (or, with ramp_epochs > 0: eps · min(1, epoch / ramp_epochs))
    κ(ε)   = kappa_start − (kappa_start − kappa_final) · ε / eps
    β(ε)   = beta_start  − (beta_start  − beta_final)  · ε / eps      (method "crown-ibp")
    lb     = margin lower bound r_y − r_j over the first T' = cert_steps steps, for the
             Bernoulli ℓ∞ set with one shared uniform map (drawn from the classifier's seeded
             generator); "crown": S-CROWN (the paper's, certify_snn trains on it),
             "ibp": S-IBP, "crown-ibp": β·S-CROWN + (1 − β)·S-IBP
    L      = κ · CE(f(x), y) + (1 − κ) · CE(−[lb with 0 at y], y)

The bounds are differentiable in the weights: the fire of every bound uses the model's
surrogate spike function (certify_snn applies its ``fire_func``, rectangle surrogate, to both
bounds), the relaxation slopes carry gradients, the carry masks do not.

Defaults follow the paper / certify_snn where they exist: eps 0.06 (its MNIST FC run; the paper's
Table 2 MNIST models use 0.12), T' = 3, ramp over the first 250/300 of training, κ = 0.4
throughout (certify_snn HEAD: 0.4·CE + 0.6·robust from the first epoch; a CROWN-IBP style κ ramp
from 1 — ``kappa_start=1`` — puts almost no weight on the bound while ε is small, and on the
8,000-image MNIST split the bounds then went vacuous by ε ≈ 0.008: RESULTS_certified.md §3b–3c),
S-CROWN bound. Gradient clipping is the trainer's
``grad_clip`` (certify_snn: 0.25). Options are ``cert_<field>`` keys (e.g. ``cert_eps=0.1``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurodeploy.defenses import options_to_config
from neurodeploy.errors import ConfigError
from neurodeploy.training.defense import BatchContext, Defense, register_defense

CERT_METHODS = ("crown", "ibp", "crown-ibp")


@dataclass(frozen=True)
class CertifiedConfig:
    """Options of ``--defense certified`` (keys ``cert_<field>``); see the module docstring."""

    eps: float = 0.06
    cert_steps: int = 3
    method: str = "crown"
    ramp_start: float = 0.0
    ramp: float = 250.0 / 300.0
    ramp_epochs: int = 0
    kappa_start: float = 0.4
    kappa_final: float = 0.4
    beta_start: float = 1.0
    beta_final: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ConfigError(f"cert_eps must be in [0, 1], got {self.eps}")
        if self.cert_steps < 1:
            raise ConfigError(f"cert_cert_steps (T') must be >= 1, got {self.cert_steps}")
        if self.method not in CERT_METHODS:
            raise ConfigError(f"cert_method must be one of {CERT_METHODS}, got {self.method!r}")
        if not 0.0 <= self.ramp_start <= 1.0 or not 0.0 <= self.ramp <= 1.0:
            raise ConfigError("cert_ramp_start and cert_ramp must be fractions in [0, 1]")
        if self.ramp_epochs < 0:
            raise ConfigError(f"cert_ramp_epochs must be >= 0, got {self.ramp_epochs}")
        for name in ("kappa_start", "kappa_final", "beta_start", "beta_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"cert_{name} must be in [0, 1], got {getattr(self, name)}")

    def eps_at(self, progress: float, epoch: int) -> float:
        if self.ramp_epochs > 0:
            return self.eps * min(1.0, epoch / self.ramp_epochs)
        if self.ramp <= 0:
            return self.eps if progress >= self.ramp_start else 0.0
        return self.eps * min(1.0, max(0.0, (progress - self.ramp_start) / self.ramp))

    def _mix(self, start: float, final: float, eps: float) -> float:
        frac = eps / self.eps if self.eps > 0 else 1.0
        return start - (start - final) * frac

    def kappa_at(self, eps: float) -> float:
        return self._mix(self.kappa_start, self.kappa_final, eps)

    def beta_at(self, eps: float) -> float:
        return self._mix(self.beta_start, self.beta_final, eps)


def robust_logits(margin_lb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``−lb`` padded with 0 at the true class: ``[B, K−1]`` → ``[B, K]`` (CROWN-IBP's loss)."""
    b, k1 = margin_lb.shape
    k = k1 + 1
    out = margin_lb.new_zeros(b, k)
    keep = y.unsqueeze(1) != torch.arange(k, device=y.device).unsqueeze(0)
    return out.masked_scatter(keep, -margin_lb)


def certified_bound(
    classifier: Any, x: torch.Tensor, y: torch.Tensor, eps: float, cfg: CertifiedConfig,
    beta: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Differentiable margin lower bound ``[B, K−1]`` used by the loss."""
    from neurodeploy.bounds.certify import margin_bounds
    from neurodeploy.bounds.perturbation import default_set

    model = classifier.model
    gen = generator if generator is not None else classifier.generator
    with torch.no_grad():
        box = default_set(model.config.encoding, eps).box(x, cfg.cert_steps, gen)
    if cfg.method == "crown-ibp":
        methods: tuple[str, ...] = ("crown", "ibp") if beta > 0 else ("ibp",)
    else:
        methods = (cfg.method,)
    out, _ = margin_bounds(model, box, y, methods, surrogate=True)
    if cfg.method != "crown-ibp":
        return out[cfg.method]
    if beta <= 0:
        return out["ibp"]
    return beta * out["crown"] + (1 - beta) * out["ibp"]


class CertifiedTraining(Defense):
    """The ``certified`` defense (see module docstring)."""

    name = "certified"

    def __init__(self, config: CertifiedConfig) -> None:
        self.config = config

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        from neurodeploy.bounds.network import check_certifiable

        check_certifiable(classifier.model)

    def loss(self, ctx: BatchContext) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        eps = cfg.eps_at(ctx.progress, ctx.epoch)
        kappa = cfg.kappa_at(eps)
        logits = ctx.classifier(ctx.x)
        clean = F.cross_entropy(logits, ctx.y)
        metrics = {"eps": eps, "kappa": kappa,
                   "train_acc": (logits.argmax(1) == ctx.y).float().mean().item()}
        if kappa >= 1.0:
            metrics.update(loss=clean.item(), clean_loss=clean.item())
            return clean, metrics
        lb = certified_bound(ctx.classifier, ctx.x, ctx.y, eps, cfg, cfg.beta_at(eps),
                             ctx.generator)
        robust = F.cross_entropy(robust_logits(lb, ctx.y), ctx.y)
        loss = kappa * clean + (1 - kappa) * robust
        metrics.update(
            loss=loss.item(), clean_loss=clean.item(), robust_loss=robust.item(),
            train_verified_err=float((lb <= 0).any(1).float().mean()),
        )
        return loss, metrics

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"defense": self.name, "certified": dataclasses.asdict(self.config)}


def _make(options: dict[str, Any]) -> CertifiedTraining:
    return CertifiedTraining(options_to_config(CertifiedConfig, "cert", options))


register_defense("certified", _make)
