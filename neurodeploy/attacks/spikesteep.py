"""Steepest single-pixel level ascent over the known-draw spike set, from random levels.

The restarted phase of :mod:`neurodeploy.attacks.spikeblock` (issue 21: the exact verifier's
counterexamples on the digits plan that one gradient-free block search and every gradient-ranked
flip search missed fall to restarted local searches; a single run finds a given one with
probability ~0.1–0.5, so the restarts are where the search gains). Same level geometry as
:mod:`neurodeploy.attacks.spikeset`: pixel p takes the levels ``j ∈ [jlo_p, jhi_p]``.

One run, per example (all active examples batched into one exact forward per step):

1. start at uniformly random feasible levels ``j_p ~ U{jlo_p … jhi_p}``;
2. score single-pixel moves ``j_p → j`` (``j ≠ j_p`` feasible): all of them, or ``moves``
   drawn at random without replacement where there are more, with the block search's score
   ``S = m_cw + 10⁻³·tanh(m_mem)`` on the exact forward; a misclassifying move ends the example;
3. take the best move if ``S`` rises (steepest ascent); at a local maximum kick each pixel with
   probability 1/8 to a random feasible level and accept the next step's best move whatever its
   score (``S ← −∞``); after ``kicks`` kicks (or ``steps`` steps) the run ends.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.attacks.spikeset import _Levels, image_of
from neurodeploy.attacks.streams import RowDraw


def random_levels(lv: _Levels, draw: RowDraw, p: float = 1.0,
                  base: torch.Tensor | None = None) -> torch.Tensor:
    """Each pixel at a uniformly random feasible level with probability ``p``, else at
    ``base`` (default the clean level ``j0``); ``draw`` holds the streams of ``lv``'s rows
    (:mod:`neurodeploy.attacks.streams`)."""
    base = lv.j0 if base is None else base
    span = (lv.jhi - lv.jlo + 1).float()
    shape = lv.j0.shape[1:]
    jr = torch.minimum(lv.jlo + (draw.rand(shape, lv.lo) * span).long(), lv.jhi)
    return torch.where(draw.rand(shape, lv.lo) < p, jr, base)


def single_moves(lv: _Levels, cur: torch.Tensor, moves: int, draw: RowDraw) -> torch.Tensor:
    """Proposals ``[K, m, P]``: ``K = min(moves, most moves of any example)`` single-pixel
    moves per example (step 2 of the module docstring); an example with fewer feasible moves
    repeats its current levels in the spare slots."""
    T1 = int(lv.us.shape[0]) + 1
    lev = torch.arange(T1, device=cur.device).view(1, T1, 1)
    ok = (lev >= lv.jlo.unsqueeze(1)) & (lev <= lv.jhi.unsqueeze(1)) & (lev != cur.unsqueeze(1))
    keys = draw.rand(ok.shape[1:], lv.lo).masked_fill(~ok, -1.0).flatten(1)  # [m, T1·P]
    K = max(1, min(int(moves), int(ok.flatten(1).sum(1).max())))
    val, idx = keys.topk(K, dim=1)
    level, pix = idx // ok.shape[2], idx % ok.shape[2]  # [m, K]
    props = cur.unsqueeze(0).repeat(K, 1, 1)
    new = torch.where(val > 0, level, cur.gather(1, pix)).T  # [K, m]
    props.scatter_(2, pix.T.unsqueeze(2), new.unsqueeze(2))
    return props


def steepest_run(score: Any, lv: _Levels, x: torch.Tensor, y: torch.Tensor,
                 act: torch.Tensor, draw: RowDraw, moves: int, kicks: int, steps: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One run (module docstring) on examples ``act`` of the batch (``draw``: their random
    streams); ``score(images, y, rows)`` returns ``(S, fooled)``. Returns the final levels
    ``[m, P]`` of ``act`` and which fool."""
    from neurodeploy.attacks.spikeblock import _rows

    la, m = _rows(lv, act), act.numel()
    cur = random_levels(la, draw)
    best, won = score(image_of(la, cur, x[act]), y[act], act)
    kicked = torch.zeros(m, dtype=torch.long, device=x.device)
    free = la.jhi > la.jlo
    ar = torch.arange(m, device=x.device)
    for _ in range(steps):
        on = (~won & (kicked <= kicks) & free.any(1)).nonzero()[:, 0]
        if on.numel() == 0:
            break
        lo = _rows(la, on)
        props = single_moves(lo, cur[on], moves, draw.at(on))
        K = props.shape[0]
        rep = act[on].repeat(K)
        s, f = score(image_of(_rows(lv, rep), props.reshape(K * on.numel(), -1), x[rep]),
                     y[rep], rep)
        s, f = s.view(K, -1), f.view(K, -1)
        s = torch.where(f, torch.full_like(s, float("inf")), s)
        sb, kb = s.max(0)
        take = sb > best[on]
        pick = props[kb, ar[: on.numel()]]
        cur[on[take]] = pick[take]
        best[on[take]] = sb[take]
        won[on[take]] = f[kb, ar[: on.numel()]][take]
        stuck = on[~take]
        kicked[stuck] += 1
        if stuck.numel():
            cur[stuck] = random_levels(_rows(la, stuck), draw.at(stuck), 0.125, cur[stuck])
            best[stuck] = float("-inf")
    return cur, won
