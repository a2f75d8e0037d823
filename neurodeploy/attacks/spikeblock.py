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
   ``S = m_cw + 10⁻³·tanh(m_mem)`` (``m_cw = max_{j≠y} (z_j − z_y + ½·[j < y])`` of the
   read-out, the half output spike rewarding the lower classes that win a tie; the
   output-membrane margin ``m_mem`` breaking ties on count plateaus where the classifier
   exposes it); a misclassifying proposal ends the example;
3. the best proposal is kept if ``S`` rises; otherwise the block size halves (down to 1) and,
   at block size 1, a stale counter grows — ``patience`` stale iterations end the example.

After ``n_restarts`` such runs from the clean levels, ``steep_restarts`` rounds of a steepest
single-pixel ascent from random levels (:mod:`neurodeploy.attacks.spikesteep`) followed by one
more block run, each on the examples still robust — the restarts are what finds the exact
verifier's hardest counterexamples on the digits plan (issue 21: a single run finds one with
probability ~0.1–0.5). The rounds skip an example whose block runs stayed more than
``steep_gate`` output spikes from a flip (best ``m_cw`` below ``−steep_gate``, in spikes: the
logits times :func:`count_scale`), so hopeless examples cost only the block runs; and
``steep_restarts`` counts the rounds of a ``steep_pixels``-pixel input, fewer on larger ones
(:func:`steep_rounds`: a round on a 784-pixel MNIST image costs ≈ 9 s of CPU against ≈ 0.5 s on
the 64-pixel digits, issue 21 round 4).

Every random draw (proposals, the rounds' start levels, moves and kicks) comes from the
example's own stream (:mod:`neurodeploy.attacks.streams`), so an example's search does not
depend on the other examples of the batch.

With ``near_gate`` (the ``auto`` preset: 9, the flip searches' abort margin) it runs only on the
examples some earlier step of the cascade brought within that many output spikes of a flip
(:mod:`neurodeploy.attacks.closest`): a random search does not cross ten output spikes.

It needs no gradient, so it runs unchanged on the float classifier and on the deployed one
(emulator forward) — any classifier bound to known-draw maps with ``select``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from neurodeploy.attacks.base import (
    AUX_LOGITS,
    Attack,
    BatchFirst,
    attack_views,
    is_correct,
    margin_loss,
    register_attack,
)
from neurodeploy.attacks.closest import NearGated, count_scale, require_known_draw
from neurodeploy.attacks.spikeset import TIE_WEIGHT, _Levels, _levels, image_of
from neurodeploy.attacks.spikesteep import steepest_run
from neurodeploy.attacks.streams import RowDraw, RowStreams
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
    #: rounds of a steepest single-pixel ascent from random levels followed by one more block
    #: run, on the examples still robust (:mod:`neurodeploy.attacks.spikesteep`)
    steep_restarts: int = 0
    #: single-pixel moves scored per step (all where there are fewer)
    steep_moves: int = 256
    #: kicks (random perturbations at local maxima) per steepest run, and its step cap
    steep_kicks: int = 30
    steep_steps: int = 300
    #: the steepest rounds run only on examples whose block runs came within ``steep_gate``
    #: output spikes of a flip (best CW margin ≥ −steep_gate; 0: no gate)
    steep_gate: float = 0.0
    #: ``steep_restarts`` is the count for an input of at most ``steep_pixels`` pixels: an input
    #: of P pixels gets ``max(1, min(R, ⌊R · steep_pixels / P⌋))`` rounds (R = steep_restarts;
    #: a round's cost grows with P: more pixels to move, a dearer forward); 0: no scaling
    steep_pixels: int = 0
    #: the block runs of the steepest rounds: proposals per iteration, iterations, patience
    round_batch: int = 64
    round_iter: int = 200
    round_patience: int = 20
    #: > 0: only the examples some earlier step brought within ``near_gate`` output spikes of
    #: a flip (:mod:`neurodeploy.attacks.closest`); the others come back clean
    near_gate: float = 0.0
    seed: int = 0
    norm: str = "linf"
    #: the membrane margin breaks ties (read where the classifier exposes it)
    loss_on: str = "membrane"
    input_grad: str = "ste"

    def __post_init__(self) -> None:
        if int(self.steep_restarts) < 0 or not float(self.steep_gate) >= 0.0 or \
                int(self.steep_pixels) < 0 or not float(self.near_gate) >= 0.0:
            raise ConfigError(f"SpikeBlockConfig.steep_restarts, steep_gate, steep_pixels and "
                              f"near_gate must be >= 0, got {self.steep_restarts}, "
                              f"{self.steep_gate}, {self.steep_pixels}, {self.near_gate}")
        for name in ("n_iter", "batch", "patience", "n_restarts", "steep_moves", "steep_kicks",
                     "steep_steps", "round_batch", "round_iter", "round_patience"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SpikeBlockConfig.{name} must be >= 1, got "
                                  f"{getattr(self, name)}")
        if self.norm != "linf":
            raise ConfigError("spike-block searches the l-inf ball's level sets: norm must be "
                              "'linf'")


def _rows(lv: _Levels, rows: torch.Tensor) -> _Levels:
    return _Levels(lv.order[:, rows], lv.rank[:, rows], lv.us[:, rows], lv.jlo[rows],
                   lv.jhi[rows], lv.j0[rows], lv.lo[rows], lv.hi[rows])


def tie_margin(z: torch.Tensor, y: torch.Tensor, half: float) -> torch.Tensor:
    """``max_{j≠y} (z_j − z_y + half·[j < y])``: the CW margin with the decision's tie rule (a
    tie goes to the lower class, so a lower class needs only a tie: ``half`` = half an output
    spike in logit units rewards it over a higher class equally far)."""
    zy = z.gather(1, y[:, None])
    low = torch.arange(z.shape[1], device=z.device)[None, :] < y[:, None]
    m = z - zy + half * low.to(z.dtype)
    return m.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)


def _score(classifier: Any, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, fooled)`` of images ``x`` for the classifier's examples ``rows`` (repeats allowed):
    read-out margin plus the membrane margin as a tie-breaker (module docstring, step 2)."""
    sub = classifier.select(rows)
    views = attack_views(sub, SpikeBlockConfig()) if hasattr(sub, "set_views") else \
        contextlib.nullcontext()
    with torch.no_grad(), views:
        z = sub(x)
    s = tie_margin(z, y, 0.5 / count_scale(classifier))
    mem = getattr(z, AUX_LOGITS, None)
    if mem is not None:
        s = s + TIE_WEIGHT * torch.tanh(margin_loss(mem, y))
    return s.detach(), ~is_correct(z.detach(), y)


def _propose(lv: _Levels, cur: torch.Tensor, block: torch.Tensor, batch: int,
             draw: RowDraw) -> torch.Tensor:
    """``batch`` proposals per example ``[batch, m, P]`` (module docstring, step 1; ``draw``:
    the examples' own random streams)."""
    shape = (batch, *cur.shape)

    def rand() -> torch.Tensor:  # [batch, m, P], each example's from its own stream
        return draw.rand((batch, cur.shape[1]), lv.lo).transpose(0, 1)

    free = lv.jhi > lv.jlo
    keys = rand().masked_fill(~free, 2.0)  # non-free pixels sort last
    kth = keys.sort(-1).values.gather(-1, (block - 1).clamp(min=0).view(1, -1, 1)
                                      .expand(batch, -1, 1))
    sel = (keys <= kth) & free  # exactly min(block, F) random free pixels
    r = rand()
    span = (lv.jhi - lv.jlo + 1).float()
    uni = torch.minimum(lv.jlo + (rand() * span).long(), lv.jhi)
    lev = torch.where(r < 0.4, lv.jlo.expand(shape),
                      torch.where(r < 0.8, lv.jhi.expand(shape), uni))
    return torch.where(sel, lev, cur.expand(shape))


def spike_block_search(classifier: Any, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                       eps: float, gen: torch.Generator, cfg: SpikeBlockConfig
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The block search (module docstring) on ``classifier`` (bound to the rows of ``x``, known
    maps ``u`` ``[T, B, *shape]``); returns ``(x_adv, fooled)``."""
    lv = _levels(x, u, eps)
    streams = RowStreams.for_batch(gen, x, u.transpose(0, 1))  # one stream per example
    all_rows = torch.arange(x.shape[0], device=x.device)
    best_j = lv.j0.clone()
    peak, won = _score(classifier, x, y, all_rows)
    for _ in range(cfg.n_restarts):
        if bool(won.all()):
            break
        j, w, s = _run_once(classifier, lv, x, y, streams, won.clone(), cfg)
        best_j[w & ~won] = j[w & ~won]
        won |= w
        peak = torch.maximum(peak, s)
    # the steepest rounds: only where the block runs came near a flip (hopeless ones skipped)
    skip = won.clone()
    if cfg.steep_gate > 0:
        skip |= peak * count_scale(classifier) < -cfg.steep_gate
    longer = replace(cfg, batch=cfg.round_batch, n_iter=cfg.round_iter,
                     patience=cfg.round_patience)
    for _ in range(steep_rounds(cfg, x[0].numel())):
        for run in (partial(_steep_once, cfg=cfg), partial(_run_once, cfg=longer)):
            if bool(skip.all()):
                break
            j, w = run(classifier, lv, x, y, streams, won=skip.clone())[:2]
            best_j[w & ~skip] = j[w & ~skip]
            won |= w
            skip |= w
    x_adv = image_of(lv, best_j, x)
    _, fooled = _score(classifier, x_adv, y, all_rows)
    return x_adv, fooled


def steep_rounds(cfg: SpikeBlockConfig, pixels: int) -> int:
    """The steepest rounds an input of ``pixels`` pixels gets (``SpikeBlockConfig.steep_pixels``)."""
    if cfg.steep_restarts == 0 or cfg.steep_pixels == 0:
        return int(cfg.steep_restarts)
    r = int(cfg.steep_restarts)
    return max(1, min(r, r * int(cfg.steep_pixels) // max(int(pixels), 1)))


def _run_once(classifier: Any, lv: _Levels, x: torch.Tensor, y: torch.Tensor,
              streams: RowStreams, won: torch.Tensor, cfg: SpikeBlockConfig
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One run from the clean levels (module docstring, steps 1–3) on the examples not ``won``;
    returns the levels, which examples they fool and the best score ``S`` each reached."""
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
        props = _propose(la, cur[act], block[act], cfg.batch, streams.at(act))
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
    return cur, won, best


def _steep_once(classifier: Any, lv: _Levels, x: torch.Tensor, y: torch.Tensor,
                streams: RowStreams, won: torch.Tensor, cfg: SpikeBlockConfig
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One steepest-ascent run (:func:`~neurodeploy.attacks.spikesteep.steepest_run`) on the
    examples not ``won``; returns the levels and which examples they fool."""
    cur, out = lv.j0.clone(), torch.zeros_like(won)
    act = (~won).nonzero()[:, 0]
    j, w = steepest_run(partial(_score, classifier), lv, x, y, act,
                        streams.at(act), cfg.steep_moves, cfg.steep_kicks, cfg.steep_steps)
    cur[act], out[act] = j, w
    return cur, out


class SpikeBlock(NearGated, Attack):
    """Known-draw block search (module docstring); needs a classifier bound to known maps; with
    ``near_gate`` only the rows near a flip (:mod:`neurodeploy.attacks.closest`)."""

    name = "spike-block"
    config_cls = SpikeBlockConfig
    uses_gradients = False

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        require_known_draw(classifier, "spike-block")
        return self.search_known(f, x, y, classifier, lambda sub, xr, yr, ur: spike_block_search(
            sub, xr, yr, ur, eps, gen, self.config)[0])


register_attack("spike-block", SpikeBlockConfig, SpikeBlock)
