"""Square attack (Andriushchenko et al. 2020): score-based random search, no gradients.

Works on any ``x → logits`` callable, including non-differentiable ones (numpy emulators,
deployed-model simulators). Inputs of any shape are viewed as ``[B, C', H, W]``: the last two
non-batch dimensions are spatial, all others (channels, time steps) are folded into C'
(a 1-D input becomes ``[B, 1, 1, D]``).

``box`` domain, ℓ∞ (AutoAttack's ``square.py`` schedule): start from vertical stripes
``x + ε·u``, ``u ∈ {−1, 1}^{C'×1×W}``; then per query a random s×s window (per example) gets
a new ``±2ε`` per channel, projected to the ball and [0, 1]; the proposal is kept when the
margin ``m = z_y − max_{j≠y} z_j`` decreases. ``s = max(round(√(p·n/C')), 1)`` with
``p`` = ``p_init`` halved after queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.

``binary`` domain (spike/event inputs), ℓ0 budget k = ε flips: the same random search over
flip *sets* (Sparse-RS style): start from k random flips; per query move
``max(round(p·k), 1)`` of the flipped positions to random unflipped positions; keep the
proposal when the margin decreases. The result stays binary with exactly ≤ k flips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neurodeploy.attacks.base import (
    Attack,
    BatchFirst,
    is_correct,
    project,
    rand,
    register_attack,
    validate_common,
)
from neurodeploy.attacks.closest import NearGated, check_gate, count_scale
from neurodeploy.attacks.eot import eot_logits
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class SquareConfig:
    n_queries: int = 5000
    p_init: float = 0.8
    n_restarts: int = 1
    rescale_schedule: bool = False
    eot_iter: int = 1
    seed: int = 0
    #: > 0: only the rows within that many output spikes of a flip (``closest``)
    near_gate: float = 0.0

    def __post_init__(self) -> None:
        validate_common(self)
        check_gate(self)
        if not 0.0 < self.p_init <= 1.0:
            raise ConfigError(f"SquareConfig.p_init must be in (0, 1], got {self.p_init}")


def p_selection(p_init: float, it: int, n_queries: int, rescale: bool) -> float:
    """AutoAttack's schedule of the window fraction p."""
    if rescale:
        it = int(it / n_queries * 10000)
    for bound, div in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32),
                       (500, 16), (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / div
    return p_init


def spatial_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C', H, W)`` for a batch-first shape (module docstring)."""
    rest = shape[1:]
    if len(rest) == 1:
        return 1, 1, rest[0]
    return math.prod(rest[:-2]) if len(rest) > 2 else 1, rest[-2], rest[-1]


def margin_of(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{j≠y} z_j`` (the quantity Square minimises)."""
    zy = z.gather(1, y[:, None])[:, 0]
    other = z.masked_fill(torch.nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
    return zy - other


class Square(NearGated, Attack):
    name = "square"
    config_cls = SquareConfig
    domains = ("box", "binary")
    uses_gradients = False

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        return self.run_near(f, x, y, count_scale(classifier),
                             lambda fr, xr, yr: self._search(fr, xr, yr, eps, gen, domain))

    def _search(self, f: BatchFirst, x: torch.Tensor, y: torch.Tensor, eps: float,
                gen: torch.Generator, domain: str) -> torch.Tensor:
        """The random search on every row of ``x``."""
        c = self.config
        with torch.no_grad():
            adv = x.clone()
            robust = is_correct(eot_logits(f, x, c.eot_iter), y)
            for _ in range(c.n_restarts):
                idx = robust.nonzero()[:, 0]
                if idx.numel() == 0:
                    break
                run = self._linf if domain == "box" else self._l0
                best, fooled = run(f.rows(idx), x[idx], y[idx], eps, gen)
                adv[idx] = best
                robust[idx[fooled]] = False
        return adv

    def _query(self, f: BatchFirst, xq: torch.Tensor, yq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = eot_logits(f, xq, self.config.eot_iter)
        return margin_of(z, yq), ~is_correct(z, yq)

    def _linf(self, f, x, y, eps, gen) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        B = x.shape[0]
        C, H, W = spatial_view(tuple(x.shape))
        n_feat = C * H * W
        xv = x.reshape(B, C, H, W)
        signs = torch.where(rand((B, C, 1, W), gen, x) < 0.5, -1.0, 1.0).to(x.dtype)
        best = (xv + eps * signs).clamp(0.0, 1.0)
        margin, fooled = self._query(f, best.view_as(x), y)
        rows = torch.arange(H, device=x.device).view(1, 1, H, 1)
        cols = torch.arange(W, device=x.device).view(1, 1, 1, W)
        for it in range(c.n_queries - 1):
            act = (~fooled).nonzero()[:, 0]
            if act.numel() == 0:
                break
            n = act.numel()
            p = p_selection(c.p_init, it, c.n_queries, c.rescale_schedule)
            s = max(int(round(math.sqrt(p * n_feat / C))), 1)
            sh, sw = min(s, H), min(s, W)
            vh = (rand((n,), gen, x) * (H - sh + 1)).long().clamp(max=H - sh).view(n, 1, 1, 1)
            vw = (rand((n,), gen, x) * (W - sw + 1)).long().clamp(max=W - sw).view(n, 1, 1, 1)
            win = (rows >= vh) & (rows < vh + sh) & (cols >= vw) & (cols < vw + sw)
            sgn = torch.where(rand((n, C, 1, 1), gen, x) < 0.5, -1.0, 1.0).to(x.dtype)
            xa = xv[act]
            prop = best[act] + win.to(x.dtype) * 2 * eps * sgn
            prop = torch.minimum(torch.maximum(prop, xa - eps), xa + eps).clamp(0.0, 1.0)
            m_new, f_new = self._query(f.rows(act), prop.view(n, *x.shape[1:]), y[act])
            better = m_new < margin[act]
            upd = act[better]
            best[upd] = prop[better]
            margin[upd] = m_new[better]
            fooled[upd] = f_new[better]
        return best.view_as(x), fooled

    def _l0(self, f, x, y, eps, gen) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        B = x.shape[0]
        flat = x.reshape(B, -1)
        D = flat.shape[1]
        k = min(int(eps), D)

        def apply(mask: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
            return torch.where(mask, 1.0 - base, base)

        # start: k random flips per example
        mask = torch.zeros(B, D, dtype=torch.bool, device=x.device)
        mask.scatter_(1, rand((B, D), gen, x).topk(k, dim=1).indices, True)
        margin, fooled = self._query(f, apply(mask, flat).view_as(x), y)
        for it in range(c.n_queries - 1):
            act = (~fooled).nonzero()[:, 0]
            if act.numel() == 0:
                break
            n = act.numel()
            p = p_selection(c.p_init, it, c.n_queries, c.rescale_schedule)
            m = max(int(round(p * k)), 1)
            m = min(m, k, D - k) if D > k else 0
            if m == 0:
                break
            cur = mask[act]
            r = rand((n, D), gen, x)
            off = (r + (~cur).float() * -2.0).topk(m, dim=1).indices  # m currently-flipped
            on = (rand((n, D), gen, x) + cur.float() * -2.0).topk(m, dim=1).indices  # m unflipped
            prop = cur.clone()
            prop.scatter_(1, off, False)
            prop.scatter_(1, on, True)
            m_new, f_new = self._query(f.rows(act), apply(prop, flat[act]).view(n, *x.shape[1:]),
                                       y[act])
            better = m_new < margin[act]
            upd = act[better]
            mask[upd] = prop[better]
            margin[upd] = m_new[better]
            fooled[upd] = f_new[better]
        out = apply(mask, flat).view_as(x)
        return project(out, x, eps, "binary"), fooled


register_attack("square", SquareConfig, Square)
