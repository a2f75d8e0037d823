"""Known-draw spike-set attack: search the exact set of spike trains an ε-ball can produce.

Threat model *known draw*: the attacker knows the uniform map ``u`` ``[T, *shape]`` the host
uses for an example (:class:`~neurodeploy.encoding.KnownDrawEncoder`). Pixel p of an image
``x'`` produces the train ``s[t, p] = 1[x'_p > u[t, p]]``; as ``x'_p`` moves over
``[lo_p, hi_p] = [x_p − ε, x_p + ε] ∩ [0, 1]`` that train runs through a monotone family:
with ``u`` sorted per pixel, ``u_(1) ≤ … ≤ u_(T)``, level ``j`` = "spikes at the j steps of the
smallest u", reached by every ``x'_p ∈ (u_(j), u_(j+1)]``. The feasible levels are exactly
``j ∈ [#{t: u_t < lo_p}, #{t: u_t < hi_p}]`` — at most T+1 patterns per pixel, and the set the
chip can be made to see is the product of these per-pixel families. Nothing else is reachable,
and every member is reached by a real image.

Search (gradient-guided coordinate ascent over levels, with restarts):

1. ``g[t, p] = ∂L/∂s[t, p]`` of the attack loss through the spiking network (any backward
   surrogate / loss view, the fused path when eligible);
2. linearised gain of level j at pixel p: ``G_p[j] = Σ_{r < j} g[order_p[r], p]`` (prefix sums in
   u order); the best feasible level ``j*_p = argmax G_p[j]`` and its gain over the current one;
3. the ``k_b`` pixels of largest positive gain move to their ``j*`` (``k_b`` per example starts
   at ``frac · P``; a proposal whose exact objective does not improve is rejected and ``k_b``
   halves, an accepted one keeps it);
4. the exact objective is the readout margin ``max_{j≠y} z_j − z_y`` (decides success) with the
   output-membrane margin as a tie-breaker (``+ 10⁻³·tanh(·)``): spike-count logits are flat on
   large plateaus, and the membrane says which way is uphill on them;
5. restarts from random feasible levels run only on examples still robust.

The returned image puts every changed pixel at the midpoint of its level's interval (inside
the ε-ball and [0, 1]) and every other pixel at its clean value; the spikes it produces under
``u`` are checked against the chosen levels before return (:func:`spike_set_search` returns both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurodeploy.attacks.base import (
    LOSSES,
    Attack,
    BatchFirst,
    GradientConfig,
    is_correct,
    loss_on,
    margin_loss,
    rand,
    register_attack,
)
from neurodeploy.errors import ConfigError

TIE_WEIGHT = 1e-3


@dataclass(frozen=True)
class SpikeSetConfig(GradientConfig):
    """Spike-set search (module docstring). ``loss``/``loss_on``/``grad_mode`` shape the
    gradient; ``frac`` is the initial fraction of pixels moved per step."""

    n_iter: int = 100
    n_restarts: int = 2
    frac: float = 0.05
    loss: str = "ce"
    loss_on: str = "membrane"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.frac <= 1.0:
            raise ConfigError(f"SpikeSetConfig.frac must be in (0, 1], got {self.frac}")
        if self.input_grad != "ste":
            raise ConfigError("spike-set searches the spikes directly: input_grad does not apply")


@dataclass
class _Levels:
    """Per-pixel level geometry of a batch: ``order`` [T, B, P] (u order), ``us`` sorted u,
    feasible ``[jlo, jhi]`` and the clean level ``j0`` ``[B, P]``."""

    order: torch.Tensor
    rank: torch.Tensor
    us: torch.Tensor
    jlo: torch.Tensor
    jhi: torch.Tensor
    j0: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def _levels(x: torch.Tensor, u: torch.Tensor, eps: float) -> _Levels:
    B = x.shape[0]
    xf = x.reshape(B, -1)
    uf = u.reshape(u.shape[0], B, -1)
    lo = (xf - eps).clamp(0.0, 1.0)
    hi = (xf + eps).clamp(0.0, 1.0)
    us, order = uf.sort(0)
    rank = order.argsort(0)
    jlo = (uf < lo.unsqueeze(0)).sum(0)
    jhi = (uf < hi.unsqueeze(0)).sum(0)
    j0 = (uf < xf.unsqueeze(0)).sum(0)
    return _Levels(order, rank, us, jlo, jhi, j0, lo, hi)


def spikes_of(lv: _Levels, j: torch.Tensor) -> torch.Tensor:
    """Spike trains ``[T, B, P]`` of levels ``j`` ``[B, P]``: spikes at the j smallest u."""
    return (lv.rank < j.unsqueeze(0)).float()


def image_of(lv: _Levels, j: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """An image producing levels ``j``: the clean pixel where ``j = j0``, else the midpoint of
    ``(u_(j), u_(j+1)] ∩ [lo, hi]``."""
    B = x.shape[0]
    xf = x.reshape(B, -1)
    T = lv.us.shape[0]
    below = torch.where(j > 0, lv.us.gather(0, (j - 1).clamp(min=0).unsqueeze(0))[0], lv.lo)
    above = torch.where(j < T, lv.us.gather(0, j.clamp(max=T - 1).unsqueeze(0))[0], lv.hi)
    a = torch.maximum(below, lv.lo)
    b = torch.minimum(above, lv.hi)
    mid = 0.5 * (a + b)
    return torch.where(j == lv.j0, xf, mid).view_as(x)


def spike_set_search(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    u: torch.Tensor,
    eps: float,
    gen: torch.Generator,
    cfg: SpikeSetConfig,
    spike_clf: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search the known-draw spike set (module docstring).

    ``spike_clf`` maps spike trains ``[T, B, *shape]`` to logits (carrying the membrane logits
    when the loss is on the membrane); ``u`` is ``[T, B, *shape]``. Returns ``(x_adv, spikes,
    fooled)``: images in the ε-ball, the spikes they produce under ``u`` (``[T, B, *shape]``),
    and whether the exact forward misclassifies them."""
    B = x.shape[0]
    T = u.shape[0]
    shape = x.shape[1:]
    lv = _levels(x, u, eps)
    P = lv.j0.shape[1]
    base = LOSSES[cfg.loss]
    grad_loss = loss_on(base, cfg.loss_on)

    def objective(z: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        from neurodeploy.classifier import AUX_LOGITS

        obj = margin_loss(z, yy)
        mem = getattr(z, AUX_LOGITS, None)
        if mem is not None:
            obj = obj + TIE_WEIGHT * torch.tanh(margin_loss(mem, yy))
        return obj

    def evaluate(j: torch.Tensor, rows: torch.Tensor, need_grad: bool):
        s = spikes_of(lv_rows(rows), j).view(T, rows.numel(), *shape)
        if need_grad:
            s = s.requires_grad_(True)
        with torch.enable_grad() if need_grad else torch.no_grad():
            z = spike_clf(s)
            g = None
            if need_grad:
                li = grad_loss(z, y[rows])
                (g,) = torch.autograd.grad(li.sum(), s)
                g = g.reshape(T, rows.numel(), P)
        return z.detach(), objective(z, y[rows]).detach(), g

    def lv_rows(rows: torch.Tensor) -> _Levels:
        return _Levels(lv.order[:, rows], lv.rank[:, rows], lv.us[:, rows], lv.jlo[rows],
                       lv.jhi[rows], lv.j0[rows], lv.lo[rows], lv.hi[rows])

    best_j = lv.j0.clone()
    all_rows = torch.arange(B, device=x.device)
    z0, obj0, _ = evaluate(best_j, all_rows, False)
    fooled = ~is_correct(z0, y)
    best_obj = obj0.clone()
    levels_j = torch.arange(T + 1, device=x.device).view(T + 1, 1, 1)
    for restart in range(cfg.n_restarts):
        rows = (~fooled).nonzero()[:, 0]
        if rows.numel() == 0:
            break
        sub = lv_rows(rows)
        if restart == 0:
            j = sub.j0.clone()
        else:  # a random feasible level per pixel
            r = rand(sub.j0.shape, gen, x)
            j = sub.jlo + (r * (sub.jhi - sub.jlo + 1).float()).long().clamp(max=T)
            j = torch.minimum(j, sub.jhi)
        _, obj, _ = evaluate(j, rows, False)
        k = torch.full((rows.numel(),), max(1, int(round(cfg.frac * P))), device=x.device)
        cur_best_j, cur_best_obj = j.clone(), obj.clone()
        for _ in range(cfg.n_iter):
            act = (~fooled[rows]).nonzero()[:, 0]
            if act.numel() == 0:
                break
            ra = rows[act]
            la = lv_rows(ra)
            _, _, g = evaluate(j[act], ra, True)
            gs = g.gather(0, la.order)  # gradients in u order [T, n, P]
            G = torch.cat([torch.zeros_like(gs[:1]), gs.cumsum(0)])  # [T+1, n, P]
            feas = (levels_j >= la.jlo.unsqueeze(0)) & (levels_j <= la.jhi.unsqueeze(0))
            G = G.masked_fill(~feas, float("-inf"))
            gbest, jbest = G.max(0)
            gain = gbest - G.gather(0, j[act].unsqueeze(0))[0]
            gain = torch.where(jbest != j[act], gain, torch.zeros_like(gain))
            order = gain.argsort(1, descending=True)
            pos = order.argsort(1)
            move = (pos < k[act].unsqueeze(1)) & (gain > 0)
            if not move.any():  # a local optimum of the linearisation: perturb randomly
                r = rand(j[act].shape, gen, x) < 0.02
                jr = la.jlo + (rand(j[act].shape, gen, x) * (la.jhi - la.jlo + 1).float()).long()
                prop = torch.where(r, torch.minimum(jr, la.jhi), j[act])
            else:
                prop = torch.where(move, jbest, j[act])
            zp, objp, _ = evaluate(prop, ra, False)
            acc = objp > obj[act]
            j[act[acc]] = prop[acc]
            obj[act[acc]] = objp[acc]
            k[act[~acc]] = (k[act[~acc]] // 2).clamp(min=1)
            newly = ~is_correct(zp, y[ra])
            fooled[ra[newly]] = True
            imp = act[acc]
            better = obj[imp] > cur_best_obj[imp]
            cur_best_j[imp[better]] = j[imp[better]]
            cur_best_obj[imp[better]] = obj[imp[better]]
            win = act[newly]  # a misclassifying proposal is the result for that example
            cur_best_j[win] = prop[newly]
            cur_best_obj[win] = float("inf")
        upd = cur_best_obj > best_obj[rows]
        best_j[rows[upd]] = cur_best_j[upd]
        best_obj[rows[upd]] = cur_best_obj[upd]
    x_adv = image_of(lv, best_j, x)
    spikes = spikes_of(lv, best_j).view(T, B, *shape)
    with torch.no_grad():
        fooled = ~is_correct(spike_clf(spikes), y)
    return x_adv, spikes, fooled


class SpikeSet(Attack):
    """Known-draw spike-set search (module docstring); needs a classifier with a known map."""

    name = "spike-set"
    config_cls = SpikeSetConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        from neurodeploy.classifier import SNNClassifier
        from neurodeploy.encoding import SpikePassThrough

        enc = getattr(classifier, "encoder", None)
        if not isinstance(classifier, SNNClassifier) or enc is None or enc.stochastic or \
                not hasattr(enc, "uniform"):
            raise ConfigError("spike-set needs the known-draw threat model: an SNNClassifier "
                              "with a stored Bernoulli map (KnownDrawEncoder / "
                              "FixedBernoulliEncoder)")
        model = classifier.model
        u = enc.uniform(x)
        spk = SNNClassifier(model, SpikePassThrough(model.config.num_steps))
        spk.aux_logits = "membrane"
        fn: Any = spk
        if self.config.fused:
            from neurodeploy.attacks.fastsnn import fast_classifier

            fn = fast_classifier(spk) or spk
        x_adv, _, _ = spike_set_search(model, x, y, u, eps, gen, self.config, fn)
        return x_adv


register_attack("spike-set", SpikeSetConfig, SpikeSet)
