"""Transfer attacks: craft on a source (surrogate) classifier, evaluate on the target.

``TransferAttack(source_attack, source_classifier).perturb(target, x, y, ε)`` returns
``source_attack.perturb(source_classifier, x, y, ε)``; the target is only used for the
domain/shape checks. Typical uses: float model → deployed model (hardware twin → emulator /
Lava), a differentiable twin of a non-differentiable classifier, or the white-box vs transfer
gradient-masking check. The engine replays the result on the *target*, so only transfers that
fool the target count.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.attacks.base import Attack, batch_dim, check_inputs, input_domain, validate_eps
from neurodeploy.errors import ConfigError


class TransferAttack:
    """Wrap an attack so that it runs on ``source_classifier`` (see module docstring)."""

    uses_gradients = False

    def __init__(self, source_attack: Attack, source_classifier: Any, name: str | None = None) -> None:
        if not hasattr(source_attack, "perturb"):
            raise ConfigError("TransferAttack: source_attack must be an Attack (has .perturb)")
        if not callable(source_classifier):
            raise ConfigError("TransferAttack: source_classifier must be callable x -> logits")
        self.source_attack = source_attack
        self.source_classifier = source_classifier
        self._name = name

    @property
    def name(self) -> str:
        return self._name or f"transfer({getattr(self.source_attack, 'label', self.source_attack.name)})"

    @property
    def label(self) -> str:
        return self.name

    @property
    def config(self) -> Any:
        return getattr(self.source_attack, "config", None)

    def select(self, idx: torch.Tensor) -> TransferAttack:
        """This attack with its source classifier bound to rows ``idx`` (when the source holds
        per-example maps; the engine binds source and target to the same rows)."""
        from neurodeploy.attacks.base import select_rows

        return TransferAttack(self.source_attack, select_rows(self.source_classifier, idx),
                              self._name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transfer": True,
            "source": self.source_attack.to_dict(),
            "source_classifier": type(self.source_classifier).__name__,
        }

    def perturb(
        self,
        classifier: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        dom_t, dom_s = input_domain(classifier), input_domain(self.source_classifier)
        if dom_t != dom_s or batch_dim(classifier) != batch_dim(self.source_classifier):
            raise ConfigError(
                f"transfer: source takes {dom_s} inputs (batch dim {batch_dim(self.source_classifier)}), "
                f"target takes {dom_t} (batch dim {batch_dim(classifier)})"
            )
        validate_eps(eps, dom_t)
        check_inputs(x, y, dom_t, batch_dim(classifier))
        return self.source_attack.perturb(self.source_classifier, x, y, eps, generator)
