"""Attacks that spend their effort near a flip: the engine's closest approach per point.

The engine (:func:`neurodeploy.attacks.engine.evaluate_robustness`) keeps for every point the
best CW margin ``m = max_{j≠y} z_j − z_y`` (logit units) of its clean input and of every image
an earlier step returned for it. An attack with a ``near_gate`` g > 0 in its config asks for
those margins (``wants_margins``), gets them for its rows (``with_margins``) and searches only
the rows with ``m · c ≥ −g`` — within g output spikes of a flip, ``c`` the output spikes per
logit unit (T for a float model's rate read-out, 1 for spike counts); the other rows come back
as their clean images. Run alone (no engine), the clean margins gate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from neurodeploy.attacks.base import margin_loss
from neurodeploy.errors import ConfigError


def check_gate(config: Any) -> None:
    """A config's ``near_gate`` must be a finite number ≥ 0 (0: every row)."""
    g = config.near_gate
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < float("inf"):
        raise ConfigError(f"{type(config).__name__}.near_gate must be a number >= 0, got {g!r}")


def require_known_draw(classifier: Any, attack: str) -> None:
    """ConfigError unless ``classifier`` is bound to stored Bernoulli maps (the known draw)."""
    enc = getattr(classifier, "encoder", None)
    if enc is None or getattr(enc, "stochastic", True) or not hasattr(enc, "uniform") or \
            not hasattr(classifier, "select"):
        raise ConfigError(f"{attack} needs the known-draw threat model: a classifier bound to "
                          f"stored Bernoulli maps (KnownDrawEncoder)")


def count_scale(classifier: Any) -> float:
    """Output spikes per logit unit: ``T`` for a float model's rate read-out, else 1 (spike
    counts: the deployed model, a count read-out)."""
    cfg = getattr(getattr(classifier, "model", None), "config", None)
    return float(cfg.num_steps) if getattr(cfg, "readout", "") == "rate" else 1.0


class NearGated:
    """Mixin for :class:`~neurodeploy.attacks.base.Attack` subclasses whose config has a
    ``near_gate`` (output spikes; 0: every row)."""

    config: Any
    _prior: torch.Tensor | None = None

    @property
    def wants_margins(self) -> bool:
        return float(self.config.near_gate) > 0

    def with_margins(self, margins: torch.Tensor) -> Any:
        """A copy of this attack for rows whose best CW margins so far are ``margins``."""
        out = copy.copy(self)
        out._prior = margins
        return out

    def near_rows(self, f: Any, x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        """Indices of the rows within the gate (all rows without one); ``f`` the batch-first
        classifier (the clean margins when no engine margins were handed over)."""
        if not self.wants_margins:
            return torch.arange(x.shape[0])
        m = self._prior
        if m is None or m.shape[0] != x.shape[0]:
            with torch.no_grad():
                m = margin_loss(f(x), y)
        return (m.float().cpu() * scale >= -float(self.config.near_gate)).nonzero()[:, 0]

    def search_near(self, f: Any, x: torch.Tensor, y: torch.Tensor, scale: float,
                    search: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``search(r)`` (adversarial images of rows ``r``) on the rows within the gate; the
        other rows come back as their clean images."""
        rows = self.near_rows(f, x, y, scale).to(x.device)
        if rows.numel() == x.shape[0]:
            return search(rows)
        x_adv = x.clone()
        if rows.numel():
            x_adv[rows] = search(rows)
        return x_adv

    def search_known(self, f: Any, x: torch.Tensor, y: torch.Tensor, classifier: Any,
                     run: Callable[..., torch.Tensor]) -> torch.Tensor:
        """:meth:`search_near` for a search over the known maps: ``run(sub, x_r, y_r, u_r)``
        (``sub`` the classifier bound to the rows ``r`` within the gate, ``u_r`` their maps)."""
        def search(r: torch.Tensor) -> torch.Tensor:
            sub = classifier if r.numel() == x.shape[0] else classifier.select(r.cpu())
            return run(sub, x[r], y[r], sub.encoder.uniform(x[r]))

        return self.search_near(f, x, y, count_scale(classifier), search)

    def run_near(self, f: Any, x: torch.Tensor, y: torch.Tensor, scale: float,
                 run: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """:meth:`search_near` for a search ``run(f, x, y)`` over whole batches: it gets the
        rows within the gate (``f.rows``), or the unchanged batch when every row is."""
        n = x.shape[0]
        return self.search_near(f, x, y, scale, lambda r: run(f, x, y) if r.numel() == n
                                else run(f.rows(r), x[r], y[r]))
