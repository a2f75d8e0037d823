"""The defense interface the trainer calls: one training loop, many defenses.

A defense decides the loss of a batch and may act before training (e.g. collect the NDS of
HoSNN) and after each optimiser step (e.g. clamp θ_v ≥ 0, RAT's orthogonal retraction). The
trainer (:mod:`neurodeploy.training.trainer`) owns the loop, optimiser, schedule, checkpoints
and metrics; defenses never run a second training loop.

Defenses are registered by name in :data:`DEFENSES`; ``a+b`` composes them (see
:func:`make_defense`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurodeploy.errors import ConfigError
from neurodeploy.registry import Registry


@dataclass
class BatchContext:
    """What a defense sees for one batch.

    ``progress`` ∈ [0, 1] is the position in the whole run (epoch + batch fraction) / epochs,
    used by schedules (ε ramp, κ, λ annealing). ``classifier`` is the model with its encoder
    (an :class:`~neurodeploy.classifier.SNNClassifier`).
    """

    classifier: Any
    x: torch.Tensor
    y: torch.Tensor
    epoch: int
    progress: float
    generator: torch.Generator | None = None


class Defense:
    """Base class = plain BPTT with cross-entropy on the logits.

    Subclasses override :meth:`loss` and, when needed, :meth:`prepare`, :meth:`after_step`
    and :meth:`checkpoint_extra`.
    """

    name = "none"

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        """Called once before the first epoch (after a resume too)."""

    def loss(self, ctx: BatchContext) -> tuple[torch.Tensor, dict[str, float]]:
        logits = ctx.classifier(ctx.x)
        loss = F.cross_entropy(logits, ctx.y)
        acc = (logits.argmax(1) == ctx.y).float().mean().item()
        return loss, {"loss": loss.item(), "train_acc": acc}

    def after_step(self, classifier: Any) -> None:
        """Called after every optimiser step."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """Extra data to store in checkpoints (e.g. defense config)."""
        return {"defense": self.name}


DefenseFactory = Callable[[dict[str, Any]], Defense]
#: Defense name → factory. The modules listed register the others on import; the registry
#: imports them on the first lookup of a name it does not hold (neurodeploy.registry).
DEFENSES: Registry[DefenseFactory] = Registry("defense", modules=(
    "neurodeploy.defenses.certified", "neurodeploy.defenses.hosnn", "neurodeploy.defenses.tgo",
    "neurodeploy.defenses.adversarial"))
DEFENSES.register("none", lambda opts: Defense())

#: Composition rules for ``a+b`` (``compose``: neurodeploy.defenses.compose).
COMPOSE: Registry[Callable[[list[Defense]], Defense]] = Registry(
    "defense composition", modules=("neurodeploy.defenses.compose",))


def register_defense(name: str, factory: DefenseFactory) -> None:
    DEFENSES.register(name, factory)


def make_defense(spec: str, options: dict[str, Any] | None = None) -> Defense:
    """Build a defense from ``"name"`` or ``"a+b"`` with shared ``options``."""
    options = dict(options or {})
    parts = [p.strip().lower() for p in spec.split("+") if p.strip()]
    if not parts:
        raise ConfigError("empty defense name")
    built = []
    for p in parts:
        if p not in DEFENSES:
            raise ConfigError(f"unknown defense {p!r}; choose from {sorted(DEFENSES)} "
                              f"(combine with '+')")
        built.append(DEFENSES[p](options))
    if len(built) == 1:
        return built[0]
    return COMPOSE.get_entry("compose")(built)
