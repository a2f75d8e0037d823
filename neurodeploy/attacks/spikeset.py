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

Search (greedy top-k level moves, issue 21), per example, on the exact spiking forward:

1. ``g[t, p] = ∂L/∂s[t, p]`` of the ranking loss through the spiking network with a backward
   surrogate (``grad_mode``: the preset runs fast-sigmoid slopes 5, 10 and 20, not only the
   model's own);
2. linearised gain of level j at pixel p: ``G_p[j] = Σ_{r < j} g[order_p[r], p]`` (prefix sums in
   u order); the best feasible level ``j*_p = argmax G_p[j]`` and its gain
   ``G_p[j*_p] − G_p[j_p]`` over the current level;
3. proposals: the top-k pixels of positive gain (not on the tabu list) moved to their ``j*``,
   for every k of the ladder ``k, k/4, k/16, …, 1`` — one batched exact forward for all;
4. acceptance on the exact forward: the best proposal is kept if it raises the objective
   ``O = m_cw + ℓ_ce + 10⁻³·tanh(m_mem)`` (``objective``: ``cw`` the margin
   ``m_cw = max_{j≠y} z_j − z_y`` of the read-out, ``ce`` the cross-entropy of the spike
   counts, ``mix`` both; ``m_mem`` the output-membrane margin breaks ties on the plateaus of the
   count logits); a proposal that misclassifies is taken at once and ends the example;
5. a rejection puts the top-k pixels on a tabu list (cleared by the next acceptance), so the
   next proposal reaches further down the ranking; ``patience`` rejections in a row kick a
   fraction ``kick`` of the pixels to random feasible levels;
6. restarts after the first (which starts at the clean levels) start from random feasible
   levels (each pixel with probability ``restart_p``) and run only on examples still robust.

Near-flip restarts (``near_gate > 0``, the ``auto`` preset's last flip searches): the search
runs only on the examples that came within ``near_gate`` output spikes of a flip before — their
best CW margin over the earlier steps of a cascade (the engine's closest approach, handed over
by ``with_margins``; the clean margin when the attack runs alone) is ≥ ``−near_gate`` — and
every restart starts from random levels: the points a long random search breaks in some runs
and not in others are near ones (issue 21: every point the reference searches broke and
``auto`` missed had come within 3 spikes), so the restarts go there and nowhere else.

Tie restarts (``tie_restarts > 0``): after its ``n_restarts`` the search gives ``tie_restarts``
more from random levels, only to the examples whose closest approach so far — the larger of the
handed-over margin and the best this search reached — is within ``tie_gate`` output spikes of a
flip (a tie, or one spike short). Such points fall to one random restart with probability
≈ 0.05–0.2 (issue 21, round 6: certified ε 0.1 points 4 and 184), so a fixed few restarts leave
them to chance. The band is a handful of points per 200, and a forward of a handful of rows is
partly overhead, so the tie restarts run at once: ``tie_restarts`` copies of each band example
in one batch, copy c drawing from a stream keyed by the example and c (:func:`_tie_copies`).

Every random draw (restart levels, kicks) comes from the example's own stream
(:mod:`neurodeploy.attacks.streams`: seeded by one key from the attack's generator and a hash
of the example's image and known map), so an example's search does not depend on the other
examples of the batch (which of them break, abort or are there at all).

The returned image (a counterexample, or for a point still robust the levels of its closest
approach — the best CW margin the search reached, which a cascade keeps for its near-flip
restarts) puts every changed pixel at the midpoint of its level's interval (inside
the ε-ball and [0, 1]) and every other pixel at its clean value; the spikes it produces under
``u`` are checked against the chosen levels before return (:func:`spike_set_search` returns both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurodeploy.attacks.base import (
    AUX_LOGITS,
    LOSSES,
    Attack,
    BatchFirst,
    GradientConfig,
    ce_loss,
    is_correct,
    loss_on,
    margin_loss,
    register_attack,
)
from neurodeploy.attacks.closest import NearGated
from neurodeploy.attacks.streams import RowDraw, RowStreams, content_ids
from neurodeploy.errors import ConfigError

TIE_WEIGHT = 1e-3


OBJECTIVES = ("cw", "ce", "mix")


@dataclass(frozen=True)
class SpikeSetConfig(GradientConfig):
    """Spike-set search (module docstring). ``grad_mode``/``loss``/``loss_on`` shape the
    gradient that ranks the moves; ``objective`` is the exact acceptance objective (``cw``
    margin, ``ce`` on the spike counts, or their sum ``mix``); ``k`` the most pixels one
    proposal moves (proposals move k, k/4 and 1); ``patience`` rejections in a row kick a
    fraction ``kick`` of the pixels to random levels; restarts after the first start from
    random levels (each pixel with probability ``restart_p``)."""

    n_iter: int = 100
    n_restarts: int = 2
    k: int = 16
    objective: str = "mix"
    patience: int = 8
    kick: float = 0.05
    restart_p: float = 0.5
    loss: str = "ce"
    loss_on: str = "membrane"
    #: early abort (0: off): an example whose best objective of this restart has not risen in
    #: ``abort_after`` iterations while the best CW margin of the restart is below
    #: ``−abort_margin`` output spikes is given up for the rest of the restart
    abort_after: int = 0
    abort_margin: float = 2.0
    #: > 0: only examples whose earlier best CW margin is ≥ −near_gate output spikes, every
    #: restart from random levels (module docstring, near-flip restarts)
    near_gate: float = 0.0
    #: more restarts, each only on the examples whose closest approach so far is within
    #: ``tie_gate`` output spikes of a flip (module docstring, tie restarts)
    tie_restarts: int = 0
    tie_gate: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.abort_after) < 0 or not float(self.abort_margin) >= 0.0 or \
                not float(self.near_gate) >= 0.0 or int(self.tie_restarts) < 0 or \
                not float(self.tie_gate) >= 0.0:
            raise ConfigError(f"SpikeSetConfig.abort_after, abort_margin, near_gate, "
                              f"tie_restarts and tie_gate must be >= 0, got {self.abort_after}, "
                              f"{self.abort_margin}, {self.near_gate}, {self.tie_restarts}, "
                              f"{self.tie_gate}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"SpikeSetConfig.objective must be one of {OBJECTIVES}, got "
                              f"{self.objective!r}")
        for name in ("n_iter", "n_restarts", "k", "patience"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SpikeSetConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("kick", "restart_p"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"SpikeSetConfig.{name} must be in (0, 1], got "
                                  f"{getattr(self, name)}")
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


class _Search:
    """State shared by the stages of one search: the level geometry, the labels, the spike
    classifier and the exact objective (module docstring)."""

    def __init__(self, lv: _Levels, y: torch.Tensor, shape: torch.Size, cfg: SpikeSetConfig,
                 spike_clf: Any, count_scale: float) -> None:
        self.lv, self.y, self.shape, self.cfg, self.fn = lv, y, shape, cfg, spike_clf
        self.T = int(lv.us.shape[0])
        self.scale = float(count_scale)
        self.grad_loss = loss_on(LOSSES[cfg.loss], cfg.loss_on)

    def rows(self, rows: torch.Tensor) -> _Levels:
        lv = self.lv
        return _Levels(lv.order[:, rows], lv.rank[:, rows], lv.us[:, rows], lv.jlo[rows],
                       lv.jhi[rows], lv.j0[rows], lv.lo[rows], lv.hi[rows])

    def objective(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact objective (maximised): CW margin and/or CE of the count logits, plus the
        membrane margin as a tie-breaker."""
        kind = self.cfg.objective
        obj = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        if kind in ("cw", "mix"):
            obj = obj + margin_loss(z, y)
        if kind in ("ce", "mix"):
            obj = obj + ce_loss(self.scale * z, y)
        mem = getattr(z, AUX_LOGITS, None)
        if mem is not None:
            obj = obj + TIE_WEIGHT * torch.tanh(margin_loss(mem, y))
        return obj

    def exact(self, j: torch.Tensor, rows: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(objective, fooled, margin)`` of levels ``j`` ``[m, P]`` for examples ``rows``
        (``[m]``, repeats allowed: several candidates of one example are evaluated in one
        batch); ``margin`` is the CW margin in output spikes (``count_scale · m_cw``)."""
        # only the ranks are gathered: the candidate batch is C × the active examples
        s = (self.lv.rank[:, rows] < j.unsqueeze(0)).float().view(self.T, rows.numel(),
                                                                   *self.shape)
        with torch.no_grad():
            z = self.fn(s)
        yy = self.y[rows]
        return (self.objective(z, yy).detach(), ~is_correct(z.detach(), yy),
                self.scale * margin_loss(z.detach(), yy))

    def gain(self, j: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linearised gain ``G_p[j*_p] − G_p[j_p]`` of each pixel's best feasible level ``j*``
        (module docstring, step 2); returns ``(gain [m, P], j* [m, P])``."""
        la = self.rows(rows)
        s = spikes_of(la, j).view(self.T, rows.numel(), *self.shape).requires_grad_(True)
        with torch.enable_grad():
            li = self.grad_loss(self.fn(s), self.y[rows])
            (g,) = torch.autograd.grad(li.sum(), s)
        gs = g.reshape(self.T, rows.numel(), -1).gather(0, la.order)  # u order
        G = torch.cat([torch.zeros_like(gs[:1]), gs.cumsum(0)])  # [T+1, m, P]
        lev = torch.arange(self.T + 1, device=j.device).view(-1, 1, 1)
        feas = (lev >= la.jlo.unsqueeze(0)) & (lev <= la.jhi.unsqueeze(0))
        gbest, jbest = G.masked_fill(~feas, float("-inf")).max(0)
        gain = gbest - G.gather(0, j.unsqueeze(0))[0]
        return torch.where(jbest != j, gain, torch.zeros_like(gain)), jbest

    def random_levels(self, rows: torch.Tensor, draw: RowDraw, p: float) -> torch.Tensor:
        """Each pixel at a uniformly random feasible level with probability ``p``, else clean
        (the draws from the rows' own streams ``draw``)."""
        from neurodeploy.attacks.spikesteep import random_levels

        return random_levels(self.rows(rows), draw, p)


def _proposals(j: torch.Tensor, gain: torch.Tensor, jbest: torch.Tensor, tabu: torch.Tensor,
               ks: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates ``[C, m, P]``: for every ``k`` in ``ks`` the top-``k`` non-tabu pixels of
    positive gain moved to their best level; and the top-``max(ks)`` pixels ``[m, K]``."""
    g = gain.masked_fill(tabu, float("-inf"))
    kmax = min(max(ks), g.shape[1])
    val, idx = g.topk(kmax, dim=1)
    cands = []
    for k in ks:
        kk = min(k, kmax)
        sel = torch.zeros_like(tabu)
        sel.scatter_(1, idx[:, :kk], val[:, :kk] > 0)
        cands.append(torch.where(sel, jbest, j))
    return torch.stack(cands), idx


def spike_set_search(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    u: torch.Tensor,
    eps: float,
    gen: torch.Generator,
    cfg: SpikeSetConfig,
    spike_clf: Any,
    count_scale: float = 1.0,
    prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search the known-draw spike set (module docstring).

    ``spike_clf`` maps spike trains ``[T, B, *shape]`` to logits (carrying the membrane logits
    when the loss is on the membrane; its backward is the surrogate that ranks the moves);
    ``u`` is ``[T, B, *shape]``; ``count_scale`` turns the logits into spike counts for the CE
    objective (T for a rate read-out); ``prior`` ``[B]`` the closest approach of each example
    before this search (output spikes; the tie restarts' band, ``SpikeSetConfig.tie_gate``).
    Returns ``(x_adv, spikes, fooled)``: images in the
    ε-ball, the spikes they produce under ``u`` (``[T, B, *shape]``), and whether the exact
    forward misclassifies them."""
    B, T, shape = x.shape[0], u.shape[0], x.shape[1:]
    lv = _levels(x, u, eps)
    S = _Search(lv, y, shape, cfg, spike_clf, count_scale)
    all_rows = torch.arange(B, device=x.device)
    obj0, fooled0, m0 = S.exact(lv.j0, all_rows)
    best = _Best(fooled0, obj0, lv.j0.clone(), m0, lv.j0.clone())
    streams = RowStreams.for_batch(gen, x, u.transpose(0, 1))  # one stream per example
    for restart in range(cfg.n_restarts):
        rows = (~best.fooled).nonzero()[:, 0]
        if rows.numel() == 0:
            break
        j = lv.j0[rows].clone() if restart == 0 and not cfg.near_gate else \
            S.random_levels(rows, streams.at(rows), cfg.restart_p)
        best.keep(S, rows, j, streams.at(rows))
    if cfg.tie_restarts:
        near = best.m if prior is None else torch.maximum(best.m, prior.to(best.m))
        band = (~best.fooled & (near >= -float(cfg.tie_gate))).nonzero()[:, 0]
        if band.numel():
            _tie_copies(S, band, x, u, streams.key, best)
    # a point still robust returns its closest approach (the engine keeps it, near-flip
    # restarts go by it); a broken one its counterexample
    best_j = torch.where(best.fooled.unsqueeze(1), best.j, best.mj)
    x_adv = image_of(lv, best_j, x)
    spikes = spikes_of(lv, best_j).view(T, B, *shape)
    with torch.no_grad():
        fooled = ~is_correct(spike_clf(spikes), y)
    return x_adv, spikes, fooled


@dataclass
class _Best:
    """Per example of a search: whether it is fooled, its best objective and levels, and its
    closest approach (best CW margin in output spikes) and that approach's levels."""

    fooled: torch.Tensor
    obj: torch.Tensor
    j: torch.Tensor
    m: torch.Tensor
    mj: torch.Tensor

    def keep(self, S: _Search, rows: torch.Tensor, j: torch.Tensor, draw: RowDraw,
             copies: int = 1) -> None:
        """One restart of examples ``rows`` from levels ``j`` (``copies`` > 1: each example
        ``copies`` times in a row, each copy with its own stream in ``draw``); keeps per
        example the best of it (a fooling copy first)."""
        obj, won, marg = S.exact(j, rows)
        j, obj, won, jpk, mpk = _climb(S, rows, j, obj, won, marg, draw)
        if copies > 1:  # per example its fooling copy, else the best objective / approach
            n, inf = rows.numel() // copies, float("inf")
            pick = torch.where(won, inf, obj).view(n, copies).argmax(1)
            near = torch.where(won, inf, mpk).view(n, copies).argmax(1)
            base = torch.arange(n, device=rows.device) * copies
            at, nat = base + pick, base + near
            rows, j, obj, won = rows[at], j[at], obj[at], won[at]
            jpk, mpk = jpk[nat], mpk[nat]
        closer = mpk > self.m[rows]
        self.mj[rows[closer]], self.m[rows[closer]] = jpk[closer], mpk[closer]
        upd = (won | (obj > self.obj[rows])) & ~self.fooled[rows]
        self.j[rows[upd]] = j[upd]
        self.obj[rows[upd]] = obj[upd]
        self.fooled[rows[won]] = True


def _tie_copies(S: _Search, band: torch.Tensor, x: torch.Tensor, u: torch.Tensor, key: int,
                best: _Best) -> None:
    """The tie restarts of examples ``band`` (module docstring), run as ``tie_restarts`` copies
    of each in one batch (a handful of examples alone leaves the forward partly overhead); copy
    c of an example draws from a stream seeded by the search's key and a hash of the example's
    image, map and c, so it does not depend on the batch either."""
    R = int(S.cfg.tie_restarts)
    rep = band.repeat_interleave(R)
    copy = torch.arange(1, R + 1, dtype=torch.float32, device=x.device).repeat(band.numel())
    copy = copy.unsqueeze(1)
    ts = RowStreams(key, content_ids(x[rep], u.transpose(0, 1)[rep], copy))
    draw = ts.at(torch.arange(rep.numel(), device=rep.device))
    best.keep(S, rep, S.random_levels(rep, draw, S.cfg.restart_p), draw, copies=R)


def _climb(S: _Search, rows: torch.Tensor, j: torch.Tensor, obj: torch.Tensor,
           won: torch.Tensor, marg: torch.Tensor, draw: RowDraw
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy ascent of one restart (module docstring, steps 2–4) on examples ``rows``.

    Every iteration ranks the pixels by linearised gain, proposes the top-k moves for every k
    of the ladder, keeps the best proposal if the exact objective rises (and clears the tabu
    list), else puts the top pixels on the tabu list so the next proposal reaches further down
    the ranking; ``patience`` rejections in a row perturb ``kick`` of the pixels at random;
    with ``abort_after`` an example far from a flip whose best objective stopped rising is
    given up (``SpikeSetConfig``). Returns the levels, objective and wins at the end, and the
    levels and CW margin of the restart's closest approach to a flip."""
    cfg = S.cfg
    ks = tuple(sorted({max(1, cfg.k >> i) for i in range(0, cfg.k.bit_length(), 2)},
                      reverse=True))
    tabu = torch.zeros_like(j, dtype=torch.bool)
    stall = torch.zeros(j.shape[0], dtype=torch.long, device=j.device)
    peak, since = obj.clone(), torch.zeros_like(stall)
    mpeak = marg.clone()                 # the best CW margin of this restart (kicks lower marg)
    jpk = j.clone()                      # ... and its levels
    live = torch.ones_like(won)
    for _ in range(cfg.n_iter):
        if cfg.abort_after:
            live &= ~((since >= cfg.abort_after) & (mpeak < -cfg.abort_margin))
        act = (~won & live).nonzero()[:, 0]
        if act.numel() == 0:
            break
        ra = rows[act]
        gain, jbest = S.gain(j[act], ra)
        cands, top = _proposals(j[act], gain, jbest, tabu[act], ks)
        C, m = cands.shape[0], act.numel()
        o, f, mg = S.exact(cands.reshape(C * m, -1), ra.repeat(C))
        o, f, mg = o.view(C, m), f.view(C, m), mg.view(C, m)
        o = torch.where(f, torch.full_like(o, float("inf")), o)  # a win beats everything
        ob, cb = o.max(0)
        take = ob > obj[act]
        pick = cands[cb, torch.arange(m, device=j.device)]
        j[act[take]] = pick[take]
        obj[act[take]] = ob[take]
        marg[act[take]] = mg[cb, torch.arange(m, device=j.device)][take]
        closer = act[marg[act] > mpeak[act]]
        jpk[closer], mpeak[closer] = j[closer], marg[closer]
        rise = obj[act] > peak[act]
        peak[act] = torch.maximum(peak[act], obj[act])
        since[act] = torch.where(rise, torch.zeros_like(since[act]), since[act] + 1)
        won[act] = f[cb, torch.arange(m, device=j.device)] & take
        tabu[act[take]] = False
        stall[act[take]] = 0
        rej = act[~take]
        tabu[rej] = tabu[rej].scatter(1, top[~take], True)
        stall[rej] += 1
        kick = rej[stall[rej] >= cfg.patience]
        if kick.numel():
            jr = S.random_levels(rows[kick], draw.at(kick), cfg.kick)
            j[kick] = torch.where(jr != S.lv.j0[rows[kick]], jr, j[kick])
            obj[kick], won[kick], marg[kick] = S.exact(j[kick], rows[kick])
            tabu[kick] = False
            stall[kick] = 0
    return j, obj, won, jpk, mpeak


@dataclass(frozen=True)
class BuiltSpikes:
    """Pass-through encoder for the search's own spike trains ``[T, B, …]``: they are built
    from levels (:func:`spikes_of`), so values are in {0, 1} by construction and the value scan
    of :class:`~neurodeploy.encoding.SpikePassThrough` (a tenth of a search's time) is skipped;
    the step count is still checked."""

    num_steps: int
    name: str = "spikes"
    stochastic: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[0] != self.num_steps:
            raise ConfigError(f"spike input has {x.shape[0]} steps, the model expects "
                              f"{self.num_steps}")
        return x


class SpikeSet(NearGated, Attack):
    """Known-draw spike-set search (module docstring); needs a classifier with a known map;
    with ``near_gate`` only the rows near a flip (:mod:`neurodeploy.attacks.closest`)."""

    name = "spike-set"
    config_cls = SpikeSetConfig

    def _run(self, f: BatchFirst, x, y, eps, gen, domain, classifier) -> torch.Tensor:
        from neurodeploy.classifier import SNNClassifier

        enc = getattr(classifier, "encoder", None)
        if not isinstance(classifier, SNNClassifier) or enc is None or enc.stochastic or \
                not hasattr(enc, "uniform"):
            raise ConfigError("spike-set needs the known-draw threat model: an SNNClassifier "
                              "with a stored Bernoulli map (KnownDrawEncoder / "
                              "FixedBernoulliEncoder)")
        model = classifier.model
        u = enc.uniform(x)
        spk = SNNClassifier(model, BuiltSpikes(model.config.num_steps))
        spk.aux_logits = "membrane"
        fn: Any = spk
        if self.config.fused:
            from neurodeploy.attacks.fastsnn import fast_classifier

            fn = fast_classifier(spk) or spk
        scale = float(model.config.num_steps) if model.config.readout == "rate" else 1.0
        return self._gated_search(f, x, y, u, eps, gen, fn, scale)

    def _gated_search(self, f: BatchFirst, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                      eps: float, gen: torch.Generator, fn: Any, scale: float) -> torch.Tensor:
        """:func:`spike_set_search` on every row, or with ``near_gate`` on the rows near a flip
        (:meth:`~neurodeploy.attacks.closest.NearGated.search_near`)."""
        prior = self._prior

        def search(r: torch.Tensor) -> torch.Tensor:
            pr = None if prior is None or prior.shape[0] != x.shape[0] else \
                prior[r.cpu()].to(x.device) * scale
            return spike_set_search(None, x[r], y[r], u[:, r], eps, gen, self.config, fn,
                                    scale, prior=pr)[0]

        return self.search_near(f, x, y, scale, search)


register_attack("spike-set", SpikeSetConfig, SpikeSet)
