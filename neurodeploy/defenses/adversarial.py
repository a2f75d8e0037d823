"""Adversarial training: FGSM-AT, PGD-AT and RAT, through the attack suite.

Per batch (x, y) the adversarial example is crafted by the project's attack suite against the
*current* model, in its current (training) mode, with one draw per gradient (EoT 1)::

    ε(p)  = at_eps · min(1, p / at_warmup)            (ε ramp over the first part of training)
    x_adv = make_attack(at_attack).perturb(classifier, x, y, ε(p))
    L     = (1 − w) · L_inner(x_adv, y) + w · L_inner(x, y),      w = at_clean_weight

``L_inner`` is plain cross-entropy, or the loss of the defense it is composed with (``tgo+at``:
TGO's task + λ·MC computed on x_adv, see :mod:`neurodeploy.defenses.compose`).

Names:

- ``fgsm-at`` — FGSM examples (Goodfellow et al.; HoSNN's and SNN-RAT's default AT);
- ``pgd-at``  — PGD examples (Madry et al.): ``at_steps`` steps (default 3) of size
  ``at_step_size`` (default the attack's 2.5·ε/steps) from a uniform random start;
- ``at``      — alias of ``fgsm-at`` (the AT of both papers' tables); ``at_attack=pgd``
  switches it to PGD;
- ``rat``     — AT (FGSM by default) plus the orthogonal retraction of SNN-RAT (Ding et al.
  2022) after every optimiser step, on every Linear/Conv synapse ``W`` reshaped to
  ``[out, −1]``::

      W ← (1 + β) · W − β · W Wᵀ W,        β = rat_beta (default 0.004, SNN-RAT's log)

  Linear layers with ≥ 200 output rows update a random 30 % of their rows per step (as in
  SNN-RAT), drawn from the classifier's seeded generator. Use no weight decay with RAT.

Defaults: ``at_eps = 2/255`` (the papers' CIFAR/FashionMNIST training budget; set it per data
set), FGSM, clean weight 0 (train on adversarial examples only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.defenses import options_to_config
from neurodeploy.errors import ConfigError
from neurodeploy.training.defense import BatchContext, Defense, register_defense

AT_ATTACKS = ("fgsm", "pgd")
RAT_ROW_THRESHOLD = 200
RAT_ROW_FRACTION = 0.3


@dataclass(frozen=True)
class ATConfig:
    """Options of the AT defenses (keys ``at_<field>``; ``attack=""`` = the name's default)."""

    attack: str = ""
    eps: float = 2.0 / 255.0
    steps: int = 3
    step_size: float = 0.0  # 0 → the attack's default 2.5·ε/steps
    random_start: bool = True
    clean_weight: float = 0.0
    certified_weight: float = 0.5  # certified+at only: L = w·L_cert + (1 − w)·CE(x_adv)
    warmup: float = 0.0
    eot_iter: int = 1

    def __post_init__(self) -> None:
        if self.attack not in ("", *AT_ATTACKS):
            raise ConfigError(f"at_attack must be one of {AT_ATTACKS}, got {self.attack!r}")
        if not 0.0 <= self.eps <= 1.0:
            raise ConfigError(f"at_eps must be in [0, 1] (images live in [0, 1]), got {self.eps}")
        if self.steps < 1 or self.eot_iter < 1:
            raise ConfigError("at_steps and at_eot_iter must be >= 1")
        if self.step_size < 0:
            raise ConfigError(f"at_step_size must be >= 0, got {self.step_size}")
        for name in ("clean_weight", "certified_weight", "warmup"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"at_{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class RATConfig:
    """Options of RAT's retraction (keys ``rat_<field>``)."""

    beta: float = 0.004

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ConfigError(f"rat_beta must be >= 0, got {self.beta}")


def orthogonal_retraction_(
    model: nn.Module, beta: float, generator: torch.Generator | None = None
) -> None:
    """SNN-RAT's retraction ``W ← (1+β)W − β W Wᵀ W`` on every Linear/Conv2d weight, in place.

    Linear layers with ≥ 200 rows update a random 30 % of the rows (``generator`` draws them).
    An orthonormal-row ``W`` (``W Wᵀ = I``) is a fixed point.
    """
    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, (nn.Linear, nn.Conv2d)):
                continue
            w = mod.weight.reshape(mod.weight.shape[0], -1)
            rows = w.shape[0]
            if isinstance(mod, nn.Linear) and rows >= RAT_ROW_THRESHOLD:
                gen_dev = generator.device if generator is not None else w.device
                perm = torch.randperm(rows, generator=generator, device=gen_dev).to(w.device)
                idx = perm[: int(rows * RAT_ROW_FRACTION)]
                ws = w[idx]
                w[idx] = (1 + beta) * ws - beta * (ws @ ws.T) @ ws
            else:
                w.copy_((1 + beta) * w - beta * (w @ w.T) @ w)


class AdversarialTraining(Defense):
    """AT with an inner defense (plain CE by default); see the module docstring."""

    def __init__(
        self,
        name: str,
        config: ATConfig,
        default_attack: str,
        rat: RATConfig | None = None,
        inner: Defense | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.attack_name = config.attack or default_attack
        self.rat = rat
        self.inner = inner or Defense()
        self._attack: Any = None

    @property
    def attack(self) -> Any:
        if self._attack is None:
            from neurodeploy.attacks import make_attack

            c = self.config
            if self.attack_name == "fgsm":
                self._attack = make_attack("fgsm", eot_iter=c.eot_iter)
            else:
                self._attack = make_attack(
                    "pgd", n_iter=c.steps, step_size=c.step_size or None,
                    random_start=c.random_start, eot_iter=c.eot_iter,
                )
        return self._attack

    def eps_at(self, progress: float) -> float:
        w = self.config.warmup
        return self.config.eps * (min(1.0, max(progress, 0.0) / w) if w > 0 else 1.0)

    def adversarial(self, ctx: BatchContext) -> torch.Tensor:
        """x_adv for the batch (no gradient to the parameters; the graph is freed)."""
        eps = self.eps_at(ctx.progress)
        if eps == 0.0:
            return ctx.x.detach()
        return self.attack.perturb(ctx.classifier, ctx.x, ctx.y, eps, generator=ctx.generator)

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        self.inner.prepare(classifier, train_x, train_y)

    def loss(self, ctx: BatchContext) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.adversarial(ctx)
        adv_loss, metrics = self.inner.loss(dataclasses.replace(ctx, x=x_adv))
        out = {f"{k}": v for k, v in metrics.items()}
        out["adv_acc"] = out.pop("train_acc", float("nan"))
        out["at_eps"] = self.eps_at(ctx.progress)
        w = self.config.clean_weight
        loss = adv_loss
        if w > 0:
            clean_loss, cm = self.inner.loss(ctx)
            loss = (1 - w) * adv_loss + w * clean_loss
            out["train_acc"] = cm.get("train_acc", float("nan"))
        out["loss"] = loss.item()
        return loss, out

    def after_step(self, classifier: Any) -> None:
        self.inner.after_step(classifier)
        if self.rat is not None and self.rat.beta > 0:
            model = classifier.model if hasattr(classifier, "model") else classifier
            orthogonal_retraction_(model, self.rat.beta, getattr(classifier, "generator", None))

    def checkpoint_extra(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "defense": self.name,
            "at": {**dataclasses.asdict(self.config), "attack": self.attack_name},
        }
        if self.rat is not None:
            d["rat"] = dataclasses.asdict(self.rat)
        return d


def certified_mix_loss(
    at: AdversarialTraining, certified: Defense, ctx: BatchContext
) -> tuple[torch.Tensor, dict[str, float]]:
    """``certified+at``: ``w·L_certified(x) + (1 − w)·CE(f(x_adv), y)``, w = at_certified_weight."""
    w = at.config.certified_weight
    cert_loss, metrics = certified.loss(ctx)
    x_adv = at.adversarial(ctx)
    logits = ctx.classifier(x_adv)
    adv = F.cross_entropy(logits, ctx.y)
    loss = w * cert_loss + (1 - w) * adv
    out = dict(metrics)
    out.update(
        loss=loss.item(),
        certified_loss=cert_loss.item(),
        adv_loss=adv.item(),
        adv_acc=(logits.argmax(1) == ctx.y).float().mean().item(),
    )
    return loss, out


def _factory(name: str, default_attack: str, fixed: bool, rat: bool):
    def make(options: dict[str, Any]) -> AdversarialTraining:
        cfg = options_to_config(ATConfig, "at", options)
        if fixed and cfg.attack and cfg.attack != default_attack:
            raise ConfigError(
                f"defense {name!r} always uses {default_attack}; got at_attack={cfg.attack!r} "
                f"(use 'at' or 'rat' to choose the attack)"
            )
        rcfg = options_to_config(RATConfig, "rat", options) if rat else None
        if not rat and any(k.startswith("rat_") for k in options):
            raise ConfigError(f"rat_* options need the 'rat' defense, not {name!r}")
        return AdversarialTraining(name, cfg, default_attack, rcfg)

    return make


register_defense("fgsm-at", _factory("fgsm-at", "fgsm", fixed=True, rat=False))
register_defense("pgd-at", _factory("pgd-at", "pgd", fixed=True, rat=False))
register_defense("at", _factory("at", "fgsm", fixed=False, rat=False))
register_defense("rat", _factory("rat", "fgsm", fixed=False, rat=True))
