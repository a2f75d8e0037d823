"""Composition of defenses: ``neurodeploy train --defense tgo+at`` and friends.

A composition has at most one *base* defense (``hosnn``, ``tgo``, ``certified``) and at most
one *adversarial-training* defense (``at``, ``fgsm-at``, ``pgd-at``, ``rat``); the order in
the name does not matter. Semantics:

- ``tgo+at``, ``tgo+rat``, ``hosnn+at`` … — the AT part crafts ``x_adv`` against the current
  (defended) model, and the base defense's loss is computed on ``x_adv``: for TGO that is
  ``CE(f(x_adv)) + λ(p)·MC(x_adv)`` (TGO+AT / TGO+RAT of the paper); for HoSNN the TA-LIF
  model is trained with CE on ``x_adv`` (HoSNN's FGSM-AT results). ``prepare`` runs the base
  first (NDS collection / neuron conversion), ``after_step`` runs both (θ_v clamp, RAT
  retraction).
- ``certified+at`` — the losses are mixed: ``w·L_certified(x) + (1 − w)·CE(f(x_adv))`` with
  ``w = at_certified_weight`` (default 0.5); the certified defense keeps its own schedule.

Refused with :class:`~neurodeploy.errors.ConfigError`:

- two AT parts (``at+rat``) or the same part twice;
- ``hosnn+tgo`` — both replace the hidden neurons (TA-LIF vs noisy LIF);
- ``certified+hosnn`` / ``certified+tgo`` — the S-IBP/S-CROWN bounds hold for the plain LIF
  only (no adaptive threshold, no noise);
- ``none`` inside a composition.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.defenses.adversarial import AdversarialTraining, certified_mix_loss
from neurodeploy.errors import ConfigError
from neurodeploy.training.defense import COMPOSE, BatchContext, Defense

AT_NAMES = ("at", "fgsm-at", "pgd-at", "rat")
BASE_NAMES = ("hosnn", "tgo", "certified")
_NEURON_BASES = ("hosnn", "tgo")


class ComposedDefense(Defense):
    """A base defense trained with adversarial examples (see module docstring)."""

    def __init__(self, base: Defense, at: AdversarialTraining, mix: bool) -> None:
        self.base = base
        self.at = at
        self.mix = mix
        self.name = f"{base.name}+{at.name}"
        if not mix:
            at.inner = base

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        self.base.prepare(classifier, train_x, train_y)

    def loss(self, ctx: BatchContext) -> tuple[torch.Tensor, dict[str, float]]:
        if self.mix:
            return certified_mix_loss(self.at, self.base, ctx)
        return self.at.loss(ctx)

    def after_step(self, classifier: Any) -> None:
        # at.after_step runs the inner (base) defense's after_step when not mixing
        if self.mix:
            self.base.after_step(classifier)
        self.at.after_step(classifier)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "defense": self.name,
            "parts": [self.base.checkpoint_extra(), self.at.checkpoint_extra()],
        }


def compose(parts: list[Defense]) -> Defense:
    """Build the composition of ``parts`` (registered as ``COMPOSE["compose"]``)."""
    names = [p.name for p in parts]
    spec = "+".join(names)
    if len(set(names)) != len(names):
        raise ConfigError(f"defense {spec!r} names a part twice")
    if "none" in names:
        raise ConfigError(f"defense {spec!r}: 'none' cannot be combined")
    ats = [p for p in parts if p.name in AT_NAMES]
    bases = [p for p in parts if p.name in BASE_NAMES]
    other = [p.name for p in parts if p.name not in AT_NAMES + BASE_NAMES]
    if other:
        raise ConfigError(f"defense {spec!r}: no composition rule for {other}")
    if len(ats) > 1:
        raise ConfigError(
            f"defense {spec!r} has two adversarial-training parts {[a.name for a in ats]}; use one"
        )
    base_names = {b.name for b in bases}
    if set(_NEURON_BASES) <= base_names:
        raise ConfigError(
            f"defense {spec!r}: hosnn and tgo both replace the hidden neurons (TA-LIF vs noisy "
            f"LIF); choose one"
        )
    if "certified" in base_names and base_names & set(_NEURON_BASES):
        raise ConfigError(
            f"defense {spec!r}: certified bounds hold for the plain LIF only, not for "
            f"{sorted(base_names & set(_NEURON_BASES))}"
        )
    if len(bases) != 1 or len(ats) != 1:
        raise ConfigError(
            f"defense {spec!r}: a composition is one of {list(BASE_NAMES)} plus one of "
            f"{list(AT_NAMES)}"
        )
    at = ats[0]
    if not isinstance(at, AdversarialTraining):
        raise ConfigError(f"defense {at.name!r} is not an adversarial-training defense")
    base = bases[0]
    return ComposedDefense(base, at, mix=base.name == "certified")


COMPOSE["compose"] = compose
