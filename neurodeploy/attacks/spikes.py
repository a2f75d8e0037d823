"""ℓ0 attacks on binary spike/event inputs: budget ε = number of flipped entries per sample.

Both attacks return ``x_adv ∈ {0, 1}`` with ``Σ 1[x_adv ≠ x] ≤ ε`` per sample (tested), keep
any misclassified iterate, and use the spike tensor's input gradient ``g = ∂l/∂s`` (CE,
EoT-averaged for stochastic classifiers; the surrogate/grad mode of the attack config).

``spike-g2s`` — the gradient-to-spike attack of Liang et al. (reference [19] of the
certified-training paper, ``liangling76/snn_attack``), applied directly in spike space:

1. ``g = ∂l/∂s`` at the current spikes ``s``;
2. G2S: ``mask = 1[|g| / max|g| ≥ u]``, ``u ~ U(0, 1)`` per entry; set ``s := 1`` where
   ``mask ∧ g > 0`` and ``s := 0`` where ``mask ∧ g < 0``; if all gradients of a sample are
   0, flip each entry with probability ``zero_grad_flip_prob`` (0.05, as in [19]);
3. budget: when more than ε entries differ from the clean ``x``, keep the ε differing
   entries with the largest first-order gain ``g·(s − x)`` and reset the others.

(The reference code also raises the penultimate layer's forward threshold while taking the
gradient and works on an image behind a Bernoulli encoder; neither applies to spike inputs
and both are left out.)

``spike-topk`` — probabilistic flips (Büchel et al.'s probabilistic PGD): a relaxation
``p ∈ [0, 1]^d`` (initialised at x) is ascended through Bernoulli samples ``b = 1[p > u]``
with a straight-through gradient: ``p ← clip(p + η·sign(E_u[∂l/∂b]))``; after each step only
the ε entries with the largest ``|p − x|`` may differ from x (the others are reset). Each
iterate's candidates are the rounded ``1[p > 1/2]`` and ``n_samples`` Bernoulli draws of p
(all inside the budget by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.attacks.base import (
    Attack,
    BatchFirst,
    is_correct,
    rand,
    register_attack,
    resolve_eot,
    validate_common,
)
from neurodeploy.attacks.eot import eot_logits, eot_loss_grad
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class SpikeGradConfig:
    """Fields the spike-gradient attacks share (those of GradientConfig without ``norm``:
    the threat model is the ℓ0 budget ε)."""

    eot_iter: int | None = None
    grad_mode: str = "bptt"
    seed: int = 0
    fused: bool = True  # see GradientConfig.fused

    def __post_init__(self) -> None:
        validate_common(self)


@dataclass(frozen=True)
class G2SConfig(SpikeGradConfig):
    n_iter: int = 25
    zero_grad_flip_prob: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.zero_grad_flip_prob <= 1.0:
            raise ConfigError("G2SConfig.zero_grad_flip_prob must be in [0, 1]")


@dataclass(frozen=True)
class TopKConfig(SpikeGradConfig):
    n_iter: int = 50
    step_size: float = 0.25
    n_samples: int = 4


def keep_topk_diffs(cand: torch.Tensor, x: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Batch-first binary ``cand``: keep at most k entries that differ from x, those with the
    highest ``score``; reset the others to x."""
    B = x.shape[0]
    diff = (cand != x).reshape(B, -1)
    if k >= diff.shape[1]:
        return cand
    s = torch.where(diff, score.reshape(B, -1), torch.full_like(diff, float("-inf"), dtype=score.dtype))
    keep = torch.zeros_like(diff)
    if k > 0:
        top = s.topk(k, dim=1)
        keep.scatter_(1, top.indices, torch.isfinite(top.values))
    out = torch.where(keep, cand.reshape(B, -1), x.reshape(B, -1))
    return out.view_as(x)


class _Tracker:
    """Keeps the first misclassified iterate per example."""

    def __init__(self, x: torch.Tensor) -> None:
        self.best = x.clone()
        self.fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def update(self, cand: torch.Tensor, wrong: torch.Tensor) -> None:
        new = wrong & ~self.fooled
        self.best[new] = cand[new]
        self.fooled |= new


class SpikeG2S(Attack):
    name = "spike-g2s"
    config_cls = G2SConfig
    domains = ("binary",)

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        k = int(eps)
        tr = _Tracker(x)
        s = x.clone()
        for _ in range(c.n_iter):
            act = (~tr.fooled).nonzero()[:, 0]
            if act.numel() == 0:
                break
            xa, sa, ya = x[act], s[act], y[act]
            z, _, g = eot_loss_grad(f.rows(act), sa, ya, self.loss("ce"), eot)
            tr_sub_wrong = ~is_correct(z, ya)
            wrong_full = torch.zeros_like(tr.fooled)
            wrong_full[act] = tr_sub_wrong
            tr.update(s, wrong_full)
            n = act.numel()
            gmax = g.abs().reshape(n, -1).amax(1).view(-1, *[1] * (x.dim() - 1))
            mask = (g.abs() / gmax.clamp_min(1e-30)) >= rand(g.shape, gen, g)
            prop = torch.where(mask & (g > 0), torch.ones_like(sa), sa)
            prop = torch.where(mask & (g < 0), torch.zeros_like(sa), prop)
            zero = (gmax.reshape(n) == 0).view(-1, *[1] * (x.dim() - 1))
            rnd_flip = rand(g.shape, gen, g) < c.zero_grad_flip_prob
            prop = torch.where(zero, torch.where(rnd_flip, 1.0 - sa, sa), prop)
            gain = g * (prop - xa)
            gain = torch.where(zero.expand_as(gain), rand(g.shape, gen, g), gain)
            s[act] = keep_topk_diffs(prop, xa, gain, k)
        z = eot_logits(f, s, eot)
        tr.update(s, ~is_correct(z, y))
        return torch.where(tr.fooled.view(-1, *[1] * (x.dim() - 1)), tr.best, s)


class SpikeTopK(Attack):
    name = "spike-topk"
    config_cls = TopKConfig
    domains = ("binary",)

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        c = self.config
        eot = resolve_eot(c.eot_iter, classifier)
        k = int(eps)
        B = x.shape[0]
        tr = _Tracker(x)
        p = x.clone()
        last = x.clone()
        for _ in range(c.n_iter):
            act = (~tr.fooled).nonzero()[:, 0]
            if act.numel() == 0:
                break
            pa, xa, ya = p[act], x[act], y[act]
            u = rand(pa.shape, gen, pa)

            fa = f.rows(act)

            def fb(pp: torch.Tensor, _u: torch.Tensor = u, _f: BatchFirst = fa) -> torch.Tensor:
                reps = pp.shape[0] // _u.shape[0]
                uu = _u.repeat(reps, *[1] * (_u.dim() - 1))
                return _f(_bernoulli_ste(pp, uu))

            _, _, g = eot_loss_grad(fb, pa, ya, self.loss("ce"), eot)
            pa = (pa + c.step_size * g.sign()).clamp(0.0, 1.0)
            dev = (pa - xa).abs()
            n = act.numel()
            flat = dev.reshape(n, -1)
            if k < flat.shape[1]:
                keep = torch.zeros_like(flat, dtype=torch.bool)
                if k > 0:
                    keep.scatter_(1, flat.topk(k, dim=1).indices, True)
                pa = torch.where(keep.view_as(pa), pa, xa)
            p[act] = pa
            cands = [(pa > 0.5).to(x.dtype)]
            for _ in range(c.n_samples):
                cands.append((pa > rand(pa.shape, gen, pa)).to(x.dtype))
            for cand in cands:
                cand = keep_topk_diffs(cand, xa, (cand - xa).abs(), k)
                z = eot_logits(fa, cand, eot)
                wrong = torch.zeros(B, dtype=torch.bool, device=x.device)
                wrong[act] = ~is_correct(z, ya)
                full = last.clone()
                full[act] = cand
                tr.update(full, wrong)
            last[act] = cands[0]
        return torch.where(tr.fooled.view(-1, *[1] * (x.dim() - 1)), tr.best, last)


class _BernoulliSTEFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (p > u).to(p.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def _bernoulli_ste(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return _BernoulliSTEFn.apply(p, u)


register_attack("spike-g2s", G2SConfig, SpikeG2S)
register_attack("spike-topk", TopKConfig, SpikeTopK)
