"""Known-draw block search: gradient-free random level moves over the known-draw spike set.

Same threat model and level geometry as :mod:`neurodeploy.attacks.spikeset` (pixel p can take
the levels ``j ∈ [jlo_p, jhi_p]`` of its sorted known map; level j = spikes at the j smallest u).
The gradient-ranked flip searches follow a surrogate gradient; where that gradient points the
wrong way (issue 21: counterexamples the exact verifier found and the flips missed on the digits
plan), random *blocks* of level moves still find them. Per example, per iteration:

1. ``batch`` proposals, each moving ``b`` random free pixels (``jlo < jhi``; ``b`` the current
   block size, ``F/4`` of the ``F`` free pixels at the start) to a random feasible level — the lowest with probability 0.4, the highest with 0.4, uniform otherwise
   (the extremes flip the most spikes);
2. all proposals of all active examples are scored in one batched exact forward of the
   classifier on the images that produce those levels (:func:`~neurodeploy.attacks.spikeset.image_of`):
   ``S = m_cw + 10⁻³·tanh(m_mem)`` (``m_cw = max_{j≠y} z_j − z_y`` of the read-out, the
   output-membrane margin ``m_mem`` breaking ties on count plateaus where the classifier
   exposes it); a misclassifying proposal ends the example;
3. the best proposal is kept if ``S`` rises; otherwise the block size halves (down to 1) and,
   at block size 1, a stale counter grows — ``patience`` stale iterations end the example.

It needs no gradient, so it runs unchanged on the float classifier and on the deployed one
(emulator forward) — any classifier bound to known-draw maps with ``select``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from neurodeploy.attacks.base import (
    AUX_LOGITS,
    Attack,
    BatchFirst,
    attack_views,
    is_correct,
    margin_loss,
    rand,
    register_attack,
)
from neurodeploy.attacks.spikeset import TIE_WEIGHT, _Levels, _levels, image_of
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class SpikeBlockConfig:
    """Block search (module docstring): ``n_iter`` iterations of ``batch`` proposals per
    example; ``patience`` stale iterations at block size 1 end an example's run;
    ``n_restarts`` runs from the clean levels with fresh randomness, each on the examples the
    earlier ones left robust."""

    n_iter: int = 60
    batch: int = 32
    patience: int = 8
    n_restarts: int = 4
    seed: int = 0
    norm: str = "linf"
    #: the membrane margin breaks ties (read where the classifier exposes it)
    loss_on: str = "membrane"
    input_grad: str = "ste"

    def __post_init__(self) -> None:
        for name in ("n_iter", "batch", "patience", "n_restarts"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SpikeBlockConfig.{name} must be >= 1, got "
                                  f"{getattr(self, name)}")
        if self.norm != "linf":
            raise ConfigError("spike-block searches the l-inf ball's level sets: norm must be "
                              "'linf'")


def _rows(lv: _Levels, rows: torch.Tensor) -> _Levels:
    return _Levels(lv.order[:, rows], lv.rank[:, rows], lv.us[:, rows], lv.jlo[rows],
                   lv.jhi[rows], lv.j0[rows], lv.lo[rows], lv.hi[rows])


def _score(classifier: Any, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, fooled)`` of images ``x`` for the classifier's examples ``rows`` (repeats allowed):
    read-out margin plus the membrane margin as a tie-breaker (module docstring, step 2)."""
    sub = classifier.select(rows)
    views = attack_views(sub, SpikeBlockConfig()) if hasattr(sub, "set_views") else \
        contextlib.nullcontext()
    with torch.no_grad(), views:
        z = sub(x)
    s = margin_loss(z, y)
    mem = getattr(z, AUX_LOGITS, None)
    if mem is not None:
        s = s + TIE_WEIGHT * torch.tanh(margin_loss(mem, y))
    return s.detach(), ~is_correct(z.detach(), y)


def _propose(lv: _Levels, cur: torch.Tensor, block: torch.Tensor, batch: int,
             gen: torch.Generator) -> torch.Tensor:
    """``batch`` proposals per example ``[batch, m, P]`` (module docstring, step 1)."""
    shape = (batch, *cur.shape)
    free = lv.jhi > lv.jlo
    keys = rand(shape, gen, lv.lo).masked_fill(~free, 2.0)  # non-free pixels sort last
    kth = keys.sort(-1).values.gather(-1, (block - 1).clamp(min=0).view(1, -1, 1)
                                      .expand(batch, -1, 1))
    sel = (keys <= kth) & free  # exactly min(block, F) random free pixels
    r = rand(shape, gen, lv.lo)
    span = (lv.jhi - lv.jlo + 1).float()
    uni = torch.minimum(lv.jlo + (rand(shape, gen, lv.lo) * span).long(), lv.jhi)
    lev = torch.where(r < 0.4, lv.jlo.expand(shape),
                      torch.where(r < 0.8, lv.jhi.expand(shape), uni))
    return torch.where(sel, lev, cur.expand(shape))


def spike_block_search(classifier: Any, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                       eps: float, gen: torch.Generator, cfg: SpikeBlockConfig
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The block search (module docstring) on ``classifier`` (bound to the rows of ``x``, known
    maps ``u`` ``[T, B, *shape]``); returns ``(x_adv, fooled)``."""
    lv = _levels(x, u, eps)
    all_rows = torch.arange(x.shape[0], device=x.device)
    best_j = lv.j0.clone()
    _, won = _score(classifier, x, y, all_rows)
    for _ in range(cfg.n_restarts):
        if bool(won.all()):
            break
        j, w = _run_once(classifier, lv, x, y, gen, cfg, won.clone())
        best_j[w & ~won] = j[w & ~won]
        won |= w
    x_adv = image_of(lv, best_j, x)
    _, fooled = _score(classifier, x_adv, y, all_rows)
    return x_adv, fooled


def _run_once(classifier: Any, lv: _Levels, x: torch.Tensor, y: torch.Tensor,
              gen: torch.Generator, cfg: SpikeBlockConfig, won: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One run from the clean levels (module docstring, steps 1–3) on the examples not ``won``;
    returns the levels and which examples they fool."""
    B = x.shape[0]
    cur = lv.j0.clone()
    best, _ = _score(classifier, x, y, torch.arange(B, device=x.device))
    done = won.clone()
    won = torch.zeros_like(done)
    nfree = (lv.jhi > lv.jlo).sum(1)
    block = (nfree // 4).clamp(min=1)
    stale = torch.zeros(B, dtype=torch.long, device=x.device)
    for _ in range(cfg.n_iter):
        act = (~won & ~done & (stale < cfg.patience) & (nfree > 0)).nonzero()[:, 0]
        if act.numel() == 0:
            break
        la, m = _rows(lv, act), act.numel()
        props = _propose(la, cur[act], block[act], cfg.batch, gen)
        rep = act.repeat(cfg.batch)
        imgs = image_of(_rows(lv, rep), props.reshape(cfg.batch * m, -1), x[rep])
        s, f = _score(classifier, imgs, y[rep], rep)
        s, f = s.view(cfg.batch, m), f.view(cfg.batch, m)
        s = torch.where(f, torch.full_like(s, float("inf")), s)
        sb, kb = s.max(0)
        take = sb > best[act]
        ar = torch.arange(m, device=x.device)
        cur[act[take]] = props[kb, ar][take]
        best[act[take]] = sb[take]
        won[act[take]] = f[kb, ar][take]
        rej = act[~take]
        stale[rej] += (block[rej] == 1).long()
        block[rej] = (block[rej] // 2).clamp(min=1)
    return cur, won


class SpikeBlock(Attack):
    """Known-draw block search (module docstring); needs a classifier bound to known maps."""

    name = "spike-block"
    config_cls = SpikeBlockConfig
    uses_gradients = False

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        enc = getattr(classifier, "encoder", None)
        if enc is None or getattr(enc, "stochastic", True) or not hasattr(enc, "uniform") or \
                not hasattr(classifier, "select"):
            raise ConfigError("spike-block needs the known-draw threat model: a classifier "
                              "bound to stored Bernoulli maps (KnownDrawEncoder)")
        x_adv, _ = spike_block_search(classifier, x, y, enc.uniform(x), eps, gen, self.config)
        return x_adv


register_attack("spike-block", SpikeBlockConfig, SpikeBlock)
