"""Adversarial attacks and robustness evaluation for SNN classifiers (``x → logits``).

- :func:`make_attack` — build a registered attack by name (``fgsm``, ``rfgsm``, ``bim``,
  ``pgd``, ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``square``, ``spike-g2s``, ``spike-topk``);
  :class:`TransferAttack` wraps any of them to craft on another classifier.
- :mod:`.grad_modes` — ``gradient_mode(model, "bptt[:surrogate]" | "bptr" | "rga")``.
- :mod:`.engine` — ``evaluate_robustness`` (worst case over attacks, per ε, resumable).
- :mod:`.masking` — ``run_masking_checks`` (gradient-masking checklist adapted to SNNs).

Decision rule everywhere: ``argmax`` with ties to the lowest class index
(:func:`neurodeploy.attacks.base.predict`).
"""

from neurodeploy.attacks.base import (
    ATTACKS,
    Attack,
    attack_names,
    is_correct,
    make_attack,
    predict,
    register_attack,
)
from neurodeploy.attacks.transfer import TransferAttack

__all__ = [
    "ATTACKS",
    "Attack",
    "TransferAttack",
    "attack_names",
    "is_correct",
    "make_attack",
    "predict",
    "register_attack",
]
