"""The unknown-draw threat model, scored so that the attack list adds no evaluation chances.

Under the unknown draw the chip is fed a fresh Bernoulli draw ``s = 1[x' > u]`` that the
attacker does not know. Counting an example as broken when *any* attack's replay on *some* new
draw misclassifies it measures "survives k draws" — a number that falls with the length of
the attack list. The audit instead **selects, then evaluates**:

1. **Selection (attack time).** Example ``i`` has candidates: its clean input and every
   attack's output on it (each escalation round and the other side's final input — transfer —
   add more). Each candidate ``c`` is classified on ``S`` *selection draws* ``u^sel_{i,1..S}``
   (host maps, :func:`~neurodeploy.encoding.host_uniform`, from the stream ``select``: the same
   draws for every candidate of example ``i``, so its rate is a function of ``c`` alone)::

       r_i(c) = (1/S) Σ_s 1[f(1[c > u^sel_{i,s}]) = y_i]

   The example keeps ``argmin_c r_i(c)`` (the earliest candidate on ties). Attacks run only on
   examples whose kept rate is still > 0. Attacks themselves use EoT over random draws.
2. **Evaluation (held out).** The kept input ``x*_i`` is classified on ``H`` *held-out draws*
   (stream ``holdout``, seen by no attack and no selection)::

       robust accuracy = (1/N) Σ_i (1/H) Σ_h 1[f(1[x*_i > u^ho_{i,h}]) = y_i]

   with an interval over examples × draws: Wilson on the effective sample size
   (:func:`neurodeploy.audit.stats.clustered_proportion_ci`, the Rao–Scott design effect of
   the draws clustered in examples).

Listing more (or weaker) attacks can change which input an example keeps — never how often it
is evaluated: the same kept inputs give the same number whatever list produced them (tested,
with a property test over random lists). Draw seeds depend on the example index, the stream
and the draw only, so a number does not depend on batch composition either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.attacks.base import is_correct, select_rows, to_logits
from neurodeploy.encoding import host_uniform

#: at most this many bits of a stream seed (host_uniform multiplies it by ~10⁶)
_SEED_BITS = 40


def stream_seed(seed: int, stream: str, draw: int) -> int:
    """The host seed of draw ``draw`` of ``stream`` (``select`` / ``holdout``)."""
    from neurodeploy.attacks.engine import step_seed

    return step_seed(seed, "unknown-draw", stream, draw) % (1 << _SEED_BITS)


@dataclass(frozen=True)
class DrawScorer:
    """Classify inputs on seeded Bernoulli draws: ``make(u)`` is a classifier bound to the maps
    ``u`` ``[T, B, …]`` (the known-draw classifier of a side)."""

    make: Callable[[torch.Tensor], Any]
    num_steps: int
    seed: int

    def correct(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, stream: str,
                draws: int) -> torch.Tensor:
        """``[draws, len(rows)]`` bool: is example ``rows[j]`` (input ``x[j]``) right on draw d."""
        out = []
        for d in range(draws):
            u = host_uniform(rows, stream_seed(self.seed, stream, d), self.num_steps,
                             tuple(x.shape[1:]))
            with torch.no_grad():
                z = to_logits(self.make(u)(x), x.device)
            out.append(is_correct(z, y.to(x.device)).cpu())
        return torch.stack(out) if out else torch.zeros(0, len(rows), dtype=torch.bool)


@dataclass
class Selection:
    """Per ε: each example's kept input, its selection-draw survival rate and where it came
    from; ``done`` the finished steps (resume)."""

    chosen: dict[float, torch.Tensor]
    rate: dict[float, torch.Tensor]
    source: dict[float, list[str]]
    select_draws: int
    done: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, scorer: DrawScorer, x: torch.Tensor, y: torch.Tensor, eps: list[float],
              select_draws: int) -> Selection:
        """Every example keeps its clean input, rated on the selection draws."""
        rate = scorer.correct(x, y, torch.arange(len(y)), "select", select_draws).float().mean(0)
        return cls({float(e): x.clone() for e in eps}, {float(e): rate.clone() for e in eps},
                   {float(e): ["clean"] * len(y) for e in eps}, select_draws)

    def open_rows(self, eps: float) -> torch.Tensor:
        """Examples some selection draw still classifies right (worth attacking)."""
        return (self.rate[float(eps)] > 0).nonzero()[:, 0]

    def offer(self, scorer: DrawScorer, eps: float, rows: torch.Tensor, cand: torch.Tensor,
              y: torch.Tensor, label: str) -> int:
        """Rate candidates ``cand`` (for examples ``rows``) and keep those that lower an
        example's rate (strictly: the earlier candidate wins ties). Returns how many."""
        e = float(eps)
        if rows.numel() == 0:
            return 0
        r = scorer.correct(cand, y, rows, "select", self.select_draws).float().mean(0)
        better = r < self.rate[e][rows]
        hit = rows[better]
        self.rate[e][hit] = r[better]
        self.chosen[e][hit] = cand[better].detach().cpu()
        for i in hit.tolist():
            self.source[e][i] = label
        return int(better.sum())

    def state(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "rate": self.rate, "source": self.source,
                "select_draws": self.select_draws, "done": list(self.done)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Selection:
        return cls(d["chosen"], d["rate"], d["source"], int(d["select_draws"]), list(d["done"]))


def attack_cascade(sel: Selection, clf: Any, scorer: DrawScorer, x: torch.Tensor,
                   y: torch.Tensor, specs: list[Any], eps: list[float], seed: int,
                   eot: int | None, tag: str, save: Callable[[], None] | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run ``specs`` (EoT over ``eot`` random draws per gradient) on the still-open examples
    and offer each attack's outputs to the selection; returns per ε how many examples each
    attack lowered. Each finished (ε, attack) step is saved through ``save``."""
    from neurodeploy.attacks.engine import _build_attacks, step_seed
    from neurodeploy.attacks.presets import expand

    atk = _build_attacks(expand(list(specs), clf, seed), eot)
    lowered: dict[str, dict[str, int]] = {}
    for ei, e in enumerate(eps):
        per: dict[str, int] = {}
        for ai, a in enumerate(atk):
            label = str(getattr(a, "label", a.name))
            key = f"{tag}/{float(e)!r}/{label}"
            if key in sel.done:
                if progress:
                    progress(1)
                continue
            rows = sel.open_rows(e)
            if rows.numel():
                if hasattr(clf, "reseed"):
                    clf.reseed(step_seed(seed, "unknown-attack-model", tag, ei, ai))
                gen = torch.Generator().manual_seed(step_seed(seed, "unknown-attack", tag, ei, ai))
                xs = x[rows]
                xa = a.perturb(select_rows(clf, rows), xs, y[rows], float(e), gen).detach()
                xa = torch.minimum(torch.maximum(xa, xs - e), xs + e).clamp(0, 1)
                per[label] = sel.offer(scorer, e, rows, xa, y[rows], f"{tag}:{label}")
            sel.done.append(key)
            if save:
                save()
            if progress:
                progress(1)
        lowered[f"{float(e):g}"] = per
    return lowered


def held_out(sel: Selection, scorer: DrawScorer, y: torch.Tensor, draws: int
             ) -> dict[float, torch.Tensor]:
    """Per ε: ``[draws, N]`` bool — the kept inputs classified on the held-out draws."""
    rows = torch.arange(len(y))
    return {e: scorer.correct(sel.chosen[e], y, rows, "holdout", draws) for e in sel.chosen}


def load_or_start(path: Path, make: Callable[[], Selection]) -> Selection:
    """The selection saved at ``path`` (a resumed audit) or a new one."""
    from neurodeploy.errors import DataError
    from neurodeploy.safeload import load_torch

    if path.is_file():  # data only: a crafted state file must not run code
        state = load_torch(path, "unknown-draw selection state")
        try:
            return Selection.from_state(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"unknown-draw selection state {str(path)!r} does not fit this "
                            f"audit ({exc!r}); remove it or use a new --out") from exc
    return make()


def saver(sel: Selection, path: Path) -> Callable[[], None]:
    from neurodeploy.models import atomic_torch_save

    return lambda: atomic_torch_save(sel.state(), path)
