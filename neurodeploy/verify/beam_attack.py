"""The ``bound-beam`` attack: the bound-guided beam on the deployed plan, flipping inputs the
level moves miss. (In the verify layer: it runs :mod:`neurodeploy.verify.beam`; the attack
registry imports it by name.)

Every other search of the ``auto`` preset moves pixel levels locally (gradient-ranked flips,
random blocks, steepest single moves). On the digits plan five of the 159 examples the exact
verifier refuted at ε 0.1 stayed out of their reach (issue 21, round 9): their flipping sets
are reached by no chain of improving moves. This attack builds the input step by step instead
(:mod:`neurodeploy.verify.beam`): an exact prefix of the plan's integer run plus the path
bound's admissible suffix, per target class the bound leaves open, first with the path bound's
suffix and then with the refined three-step pair suffixes.

It needs the known draw and the integer plan (the deployed classifier's emulator): on a
classifier without one (the audit's float side, which lists the same cascade) it returns every
image unchanged — the float model has no integer arithmetic to bound, so the audit's deployed
side is attacked harder by this step than the float side (the conservative direction: it can
lower the deployed number, never raise it). It runs only
where every step leaves at most ``max_step_bits`` input bits free (small inputs: the 8×8
digits at ε 0.1 have 4–13; a 784-pixel MNIST image at ε 0.05 has hundreds, so there the attack
returns every image unchanged at the cost of counting them). An example the path bound proves
robust costs only that bound. Deterministic: no random draw.

A flipping input comes back as an image in the ε-ball (:func:`~neurodeploy.verify.levels.witness_image`,
exact; the attack-side midpoint image where the exact one does not survive the classifier's
dtype); the engine re-runs it on the classifier like every attack's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurodeploy.attacks.base import Attack, BatchFirst, register_attack
from neurodeploy.attacks.closest import NearGated, check_gate, require_known_draw
from neurodeploy.attacks.spikeset import _levels, image_of
from neurodeploy.errors import ConfigError
from neurodeploy.verify.beam import beam_search
from neurodeploy.verify.levels import pixel_levels, witness_image


@dataclass(frozen=True)
class BoundBeamConfig:
    """``width`` items kept per step; steps with more than ``max_step_bits`` free input bits
    end the search on that example; ``near_gate`` as every gated attack's
    (:mod:`neurodeploy.attacks.closest`)."""

    width: int = 200
    max_step_bits: int = 15
    near_gate: float = 0.0
    seed: int = 0
    norm: str = "linf"

    def __post_init__(self) -> None:
        for name in ("width", "max_step_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"BoundBeamConfig.{name} must be an integer >= 1, got {v!r}")
        check_gate(self)
        if self.norm != "linf":
            raise ConfigError("bound-beam searches the l-inf ball's level sets: norm must be "
                              "'linf'")


def plan_of(classifier: Any) -> Any:
    """The deployment plan behind a deployed classifier, or None."""
    return getattr(getattr(classifier, "emulator", None), "plan", None)


def _image(lv: Any, level: np.ndarray, x: torch.Tensor, u: torch.Tensor, eps: float
           ) -> torch.Tensor:
    """An image of ``x``'s shape and dtype producing the per-pixel ``level``: the exact witness
    where it survives the dtype, else the attack-side midpoint image."""
    img = torch.as_tensor(witness_image(lv, level), dtype=x.dtype).view_as(x)
    if torch.equal((img.reshape(1, -1) > u.reshape(u.shape[0], -1)),
                   torch.as_tensor(lv.spikes(level), dtype=torch.bool)):
        return img
    al = _levels(x[None], u[:, None], eps)
    return image_of(al, torch.as_tensor(level, dtype=torch.long)[None], x[None])[0]


def bound_beam_images(plan: Any, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                      eps: float, cfg: BoundBeamConfig) -> torch.Tensor:
    """Per example the beam of :mod:`neurodeploy.verify.beam` on ``plan`` (known maps ``u``
    ``[T, B, *shape]``): the images, the clean one where no flip was found."""
    out = x.clone()
    for i in range(x.shape[0]):
        ui = u[:, i].detach().cpu()
        lv = pixel_levels(x[i].detach().cpu().numpy(), ui.numpy(), eps)
        res = beam_search(plan, lv, int(y[i]), cfg.width, cfg.max_step_bits)
        if res.level is not None:
            out[i] = _image(lv, res.level, x[i].detach().cpu(), ui, eps).to(x.device)
    return out


class BoundBeam(NearGated, Attack):
    """Bound-guided beam (module docstring); needs a deployed classifier bound to known maps."""

    name = "bound-beam"
    config_cls = BoundBeamConfig
    uses_gradients = False

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        require_known_draw(classifier, "bound-beam")
        plan = plan_of(classifier)
        if plan is None:            # the float side: no integer plan to bound (docstring)
            return x.clone()
        return self.search_known(f, x, y, classifier, lambda sub, xr, yr, ur: bound_beam_images(
            plan, xr, yr, ur, eps, self.config))


register_attack("bound-beam", BoundBeamConfig, BoundBeam)
