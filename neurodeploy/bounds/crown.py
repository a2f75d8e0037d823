"""S-CROWN with S-IBP intermediate bounds (CROWN-IBP; paper Alg. 2, certify_snn ``snn_crown_ibp``).

The objective is the margin ``C·r`` with rates ``r = (1/T') Σ_t s_out[t]``, so the coefficient
of the output spikes at every step is ``C / T'``. Going backward through layer k (steps
t = T'−1 … 0, as in certify_snn ``BoundMemUpdate.snn_bound_back``):

1. fire at t (eq. 8): coefficients on s[t] → on m[t] (+ constant);
2. temporal t → t−1 (eq. 10): α·A_m[t] on z[t−1] = (1 − s[t−1])·m[t−1] → coefficients on
   m[t−1] (added to A_m[t−1]) and on s[t−1] (added to A_s[t−1] before its own fire step);
3. spatial (no relaxation): A_in[t] = A_m[t]·W (``conv_transpose2d`` for conv), constant A_m·b.

The input coefficients are then minimised over the input box::

    lb = Σ_t Σ_i min(A_in[t,i]·lo[t,i], A_in[t,i]·hi[t,i]) + constant
       = Σ_t [A·mid − |A|·rad] + constant                          (certify_snn ``_get_bound``)

Relaxation parameters (:class:`RelaxParams`) select members of the families of
:mod:`neurodeploy.bounds.ops`; absent entries give the paper's relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from neurodeploy.bounds.ibp import LayerBounds
from neurodeploy.bounds.network import BoundLayer
from neurodeploy.bounds.ops import BoundLinear
from neurodeploy.bounds.perturbation import InputBox


@dataclass
class RelaxParams:
    """Fractions in [0, 1] keyed by ``(layer, t)``: fire lower/upper slopes (``fire_lo``,
    ``fire_hi``) and temporal plane mixes (``temp_lo``, ``temp_hi``; key t is the step whose
    membrane receives the carry of step t−1). Shapes ``[B, *shape]`` or ``[B, S, *shape]``."""

    fire_lo: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    fire_hi: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    temp_lo: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    temp_hi: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        return [*self.fire_lo.values(), *self.fire_hi.values(), *self.temp_lo.values(),
                *self.temp_hi.values()]


def concretize_box(a_in: torch.Tensor, box: InputBox) -> torch.Tensor:
    """``min over lo ≤ s ≤ hi`` of ``Σ_t A[t]·s[t]``: ``a_in`` ``[T', B, S, *in]`` → ``[B, S]``."""
    lo = box.lo.unsqueeze(2)
    hi = box.hi.unsqueeze(2)
    v = a_in.clamp(min=0) * lo + a_in.clamp(max=0) * hi
    return v.flatten(3).sum(-1).sum(0)


class _UnstableInputTerm(torch.autograd.Function):
    """``Σ_j min(A_m[n, s]·W[:, idx[n, j]], 0)·d[n, j]`` ``[N, S]`` — the product ``A_m·W`` sampled
    at the unstable input positions only, with a hand-written backward.

    Forming ``A_m·W`` densely costs ``N·S·out·in`` multiply-adds although only a few percent of
    the input positions are unstable; gathering the ``k`` needed columns of W for all N rows at
    once (and scattering their gradient back with autograd's ``index_put``) moves ``N·k·out``
    floats through memory twice. Here rows are processed in chunks that stay in cache: gather
    the columns (``index_select`` on the contiguous ``Wᵀ``), one batched product, and in the
    backward the same gather, two batched products and one ``index_add_`` per chunk.
    """

    CHUNK = 16

    @staticmethod
    def _chunks(order: torch.Tensor, counts: torch.Tensor):
        """Rows in order of their count, in chunks of at most CHUNK, with the largest count of
        each chunk (so that a chunk pays only for its own widest row)."""
        n = order.shape[0]
        sorted_counts = counts[order]
        for c0 in range(0, n, _UnstableInputTerm.CHUNK):
            sl = slice(c0, min(c0 + _UnstableInputTerm.CHUNK, n))
            yield order[sl], int(sorted_counts[sl].max())

    @staticmethod
    def forward(ctx, a_m, weight, idx, vals, counts, order):  # noqa: D102 - see class docstring
        wt = weight.t().contiguous()  # [in, out]
        n, s, o = a_m.shape
        out = a_m.new_empty(n, s)
        gates = []
        for rows, kc in _UnstableInputTerm._chunks(order, counts):
            if kc == 0:
                out.index_fill_(0, rows, 0.0)
                gates.append(None)
                continue
            ii = idx.index_select(0, rows)[:, :kc]
            cols = wt.index_select(0, ii.reshape(-1)).view(*ii.shape, o)
            a_u = torch.bmm(a_m.index_select(0, rows), cols.transpose(1, 2))  # [c, S, kc]
            g = (a_u < 0).to(a_u.dtype) * vals.index_select(0, rows)[:, :kc].unsqueeze(1)
            gates.append(g)  # d(min(a, 0)·d)/da
            out.index_copy_(0, rows, (a_u * g).sum(-1))
        ctx.save_for_backward(a_m, wt, idx, counts, order)
        ctx.gates = gates
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        a_m, wt, idx, counts, order = ctx.saved_tensors
        gates = ctx.gates
        n, s, o = a_m.shape
        grad_a = torch.empty_like(a_m) if ctx.needs_input_grad[0] else None
        grad_wt = torch.zeros_like(wt) if ctx.needs_input_grad[1] else None
        for (rows, kc), gate in zip(_UnstableInputTerm._chunks(order, counts), gates,
                                    strict=True):
            if gate is None:
                if grad_a is not None:
                    grad_a.index_fill_(0, rows, 0.0)
                continue
            flat = idx.index_select(0, rows)[:, :kc].reshape(-1)
            g = gate * grad_out.index_select(0, rows).unsqueeze(-1)
            if grad_a is not None:
                cols = wt.index_select(0, flat).view(g.shape[0], kc, o)
                grad_a.index_copy_(0, rows, torch.bmm(g, cols))
            if grad_wt is not None:
                a_rows = a_m.index_select(0, rows)
                grad_wt.index_add_(0, flat, torch.bmm(g.transpose(1, 2), a_rows).reshape(-1, o))
        ctx.gates = None
        return grad_a, (grad_wt.t() if grad_wt is not None else None), None, None, None, None


def unstable_input_term(a_m: torch.Tensor, weight: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``Σ_i min((a_m·W)[n, s, i], 0)·d[n, i]`` ``[N, S]`` for ``a_m`` ``[N, S, out]``, ``W``
    ``[out, in]`` and ``d`` ``[N, in]`` ≥ 0, evaluated on the positions with ``d > 0`` only."""
    counts = (d > 0).sum(-1)
    k = int(counts.max()) if counts.numel() else 0
    if k == 0:
        return a_m.new_zeros(a_m.shape[:2])
    vals, idx = d.topk(k, dim=-1)  # the nonzero entries first; padding has d = 0
    return _UnstableInputTerm.apply(a_m, weight, idx, vals, counts, counts.argsort())


def concretize_first_linear(op: BoundLinear, a_m: torch.Tensor, box: InputBox,
                            fix: torch.Tensor | None = None) -> torch.Tensor:
    """Spatial backward of a first FC layer fused with the concretisation (same value as
    ``op.linear`` + :func:`concretize_box`, without forming ``A·W`` on every input position).

    With ``hi = lo + d`` (d ≥ 0), ``min(A·lo, A·hi) = A·lo + min(A, 0)·d``, and
    ``Σ_i A_in[i]·lo[i] = A_m·(W·lo)``; only the positions with d > 0 (the unstable input
    spikes, a few percent for small ε) need ``A_in = A_m·W`` explicitly::

        lb = Σ_t [A_m[t]·(W lo[t] + b) + Σ_{i: d_i > 0} min(A_m[t]·W[:, i], 0)·d_i]

    ``a_m`` ``[T', B, S, out]`` → ``[B, S]``; ``fix`` = ``W·lo + b`` ``[T', B, out]`` if the
    caller has it (S-IBP computed it: :attr:`LayerBounds.fix`).
    """
    lo = box.lo.flatten(2)
    d = (box.hi - box.lo).flatten(2)
    w = op.weight
    cur = F.linear(lo, w, op.bias) if fix is None else fix  # [T', B, out]
    out = (a_m * cur.unsqueeze(2)).sum(-1).sum(0)
    t_, b_, s_, o_ = a_m.shape
    term = unstable_input_term(a_m.reshape(t_ * b_, s_, o_), w, d.reshape(t_ * b_, -1))
    return out + term.reshape(t_, b_, s_).sum(0)


class _PaperNeuronBackward(torch.autograd.Function):
    """The backward pass of S-CROWN through one LIF layer's fire and temporal steps (all T'
    steps) with the paper's relaxations, as one autograd node with a hand-written gradient.

    Per step t = T'−1 … 0, with ``A_t`` the coefficients on s[t] ``[B, S, n]``, the fire lines
    ``lw, lb, uw, ub`` of step t and the temporal planes of step t−1 (``p = unstable·m_L``,
    ``q = unstable·θ``, ``never``)::

        am_t      = A_t⁺·lw_t + A_t⁻·uw_t + α·never_t·am_{t+1}            (coefficients on m[t])
        X_t       = am_t⁺·p_{t−1} + am_t⁻·q_{t−1}
        A_{t−1}  −= α·X_t                                                 (carry onto s[t−1])
        const    += Σ_n (A_t⁺·lb_t + A_t⁻·ub_t) + α·Σ_n X_t

    the same arithmetic as :meth:`BoundFire.linear` + :meth:`BoundMemUpdate.linear` with the
    paper's planes, without recording some twenty elementwise autograd nodes per step on
    ``[B, S, n]`` tensors. The gradient is derived by hand (forward-time sweep) and checked
    against autograd through the generic path in tests/test_bounds_fast.py.
    """

    @staticmethod
    def forward(ctx, a_in, lw, uw, lb, ub, p, q, never, alpha):  # noqa: D102
        steps = a_in.shape[0]
        a_all = a_in.clone(memory_format=torch.contiguous_format)  # updated in place below
        am_all = torch.empty_like(a_in)
        cbuf = torch.zeros_like(a_in[0])  # Σ over steps of the constant terms, summed over n at the end
        carry = None
        for t in range(steps - 1, -1, -1):
            a = a_all[t]
            ap = a.clamp(min=0)
            an = a - ap
            am = am_all[t]
            torch.mul(an, uw[t].unsqueeze(1), out=am)
            am.addcmul_(ap, lw[t].unsqueeze(1))
            cbuf.addcmul_(ap, lb[t].unsqueeze(1))
            cbuf.addcmul_(an, ub[t].unsqueeze(1))
            if carry is not None:
                am += carry
            if t > 0:
                amp = am.clamp(min=0)
                x = (am - amp).mul_(q[t - 1].unsqueeze(1))
                x.addcmul_(amp, p[t - 1].unsqueeze(1))  # X_t
                a_all[t - 1].add_(x, alpha=-alpha)
                cbuf.add_(x, alpha=alpha)
                carry = am * (alpha * never[t - 1]).unsqueeze(1)
        const = cbuf.sum(-1)
        ctx.save_for_backward(a_all, am_all, lw, uw, lb, ub, p, q, never)
        ctx.alpha = alpha
        return am_all, const

    @staticmethod
    def backward(ctx, g_am, g_c):  # noqa: D102
        a_all, am_all, lw, uw, lb, ub, p, q, never = ctx.saved_tensors
        alpha = ctx.alpha
        steps = a_all.shape[0]
        if g_am is None:
            g_am = torch.zeros_like(am_all)
        if g_c is None:
            g_c = a_all.new_zeros(a_all.shape[1:3])
        g_c3 = g_c.unsqueeze(-1)  # [B, S, 1]
        g_a = torch.empty_like(a_all)
        g_lw, g_uw, g_lb, g_ub, g_p = (torch.zeros_like(lw) for _ in range(5))
        gam_prev = ga_prev = None
        # Selectors as float masks (``torch.ge`` into a float tensor): ``torch.where`` and
        # boolean masks are several times slower than arithmetic on CPU for these shapes.
        mask = torch.empty_like(a_all[0])
        g_crow = g_c.unsqueeze(1)  # [B, 1, S]
        for t in range(steps):
            gam = g_am[t]
            if t > 0:
                am = am_all[t]
                w = g_c3 - ga_prev  # dL/dX_t / α
                torch.ge(am, 0, out=mask)
                sel = mask.mul_((p[t - 1] - q[t - 1]).unsqueeze(1)).add_(q[t - 1].unsqueeze(1))
                gam = torch.addcmul(gam, w, sel, value=alpha)
                gam.addcmul_(gam_prev, (alpha * never[t - 1]).unsqueeze(1))
                g_p[t - 1] = (w * am.clamp(min=0)).sum(1).mul_(alpha)
            a = a_all[t]
            ap = a.clamp(min=0)
            torch.ge(a, 0, out=mask)
            # where(a >= 0, lw, uw) = uw + [a >= 0]·(lw − uw), likewise for (lb, ub)
            slope = torch.addcmul(uw[t].unsqueeze(1), mask, (lw[t] - uw[t]).unsqueeze(1))
            offset = torch.addcmul(ub[t].unsqueeze(1), mask, (lb[t] - ub[t]).unsqueeze(1))
            ga = g_a[t]
            torch.mul(gam, slope, out=ga)
            ga.addcmul_(offset, g_c3)
            # Σ_s gam·a⁺ and Σ_s gam·a⁻ = Σ_s gam·a − Σ_s gam·a⁺ (likewise with g_c)
            g_lw[t] = (gam * ap).sum(1)
            g_uw[t] = (gam * a).sum(1) - g_lw[t]
            g_lb[t] = torch.bmm(g_crow, ap).squeeze(1)
            g_ub[t] = torch.bmm(g_crow, a).squeeze(1) - g_lb[t]
            gam_prev, ga_prev = gam, ga
        return g_a, g_lw, g_uw, g_lb, g_ub, g_p, None, None, None


def _paper_neuron_backward(layer: BoundLayer, lb: LayerBounds, a_s: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast path of the fire/temporal backward of one layer with the paper's relaxations:
    ``a_s`` ``[T', B, S, *shape]`` (coefficients on the layer's spikes) → (coefficients on its
    membranes, same shape; constant ``[B, S]``)."""
    steps, batch, spec = a_s.shape[:3]
    shape = a_s.shape[3:]
    flat = (steps, batch, -1)
    fire = layer.fire.relaxation(lb.m_lo, lb.m_hi)  # elementwise: all steps at once
    unstable = ((lb.s_hi == 1) & (lb.s_lo == 0)).to(lb.m_lo.dtype)
    never = (lb.s_hi == 0).to(lb.m_lo.dtype)
    p = unstable * lb.m_lo
    q = unstable * layer.mem.theta
    am, const = _PaperNeuronBackward.apply(
        a_s.reshape(steps, batch, spec, -1), fire.lw.reshape(flat), fire.uw.reshape(flat),
        fire.lb.reshape(flat), fire.ub.reshape(flat), p.reshape(flat), q.reshape(flat),
        never.reshape(flat), layer.mem.alpha,
    )
    return am.reshape(steps, batch, spec, *shape), const


def _generic_neuron_backward(layer: BoundLayer, lb: LayerBounds, a_s: list[torch.Tensor],
                             k: int, params: RelaxParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Fire/temporal backward of layer ``k`` step by step through the bounded operations
    (any member of the relaxation families; plain autograd). ``a_s``: per-step coefficients
    on the layer's spikes → (stacked coefficients on its membranes, constant ``[B, S]``)."""
    steps = len(a_s)
    a_s = list(a_s)
    const: torch.Tensor | float = 0.0
    a_m: list[torch.Tensor | None] = [None] * steps
    carry: list[torch.Tensor | int] = [0] * steps
    for t in range(steps - 1, -1, -1):
        relax = layer.fire.relaxation(
            lb.m_lo[t], lb.m_hi[t], params.fire_lo.get((k, t)), params.fire_hi.get((k, t))
        )
        am, c = layer.fire.linear(a_s[t], relax)
        am = am + carry[t]
        const = const + c
        if t > 0:
            trel = layer.mem.relaxation(
                lb.m_lo[t - 1], lb.m_hi[t - 1], lb.s_lo[t - 1], lb.s_hi[t - 1],
                params.temp_lo.get((k, t)), params.temp_hi.get((k, t)),
            )
            coef_m, coef_s, c = layer.mem.linear(am, trel)
            carry[t - 1] = coef_m
            a_s[t - 1] = a_s[t - 1] + coef_s
            const = const + c
        a_m[t] = am
    return torch.stack(a_m), const  # [T', B, S, *out]


def crown_margin_lower(
    layers: list[BoundLayer],
    bounds: list[LayerBounds],
    spec: torch.Tensor,
    box: InputBox,
    params: RelaxParams | None = None,
) -> torch.Tensor:
    """Lower bound of ``spec·r`` for every input in ``box``: ``spec`` ``[B, S, K]`` → ``[B, S]``.

    ``bounds`` are the S-IBP bounds of the same box (:func:`~neurodeploy.bounds.ibp.ibp_bounds`).
    """
    fast = params is None or not params.tensors()
    params = params or RelaxParams()
    steps = box.steps
    # coefficients on the output spikes at every step, [T', B, S, K]
    a_s = (spec / steps).unsqueeze(0).expand(steps, *spec.shape)
    const = spec.new_zeros(spec.shape[:2])
    for k in range(len(layers) - 1, -1, -1):
        layer, lb = layers[k], bounds[k]
        if fast:
            stacked, c = _paper_neuron_backward(layer, lb, a_s)
        else:
            stacked, c = _generic_neuron_backward(layer, lb, list(a_s.unbind(0)), k, params)
        const = const + c
        if k == 0 and isinstance(layer.spatial, BoundLinear) and box.unstable_fraction < 0.25:
            return concretize_first_linear(layer.spatial, stacked, box, lb.fix) + const
        t_, b_, s_ = stacked.shape[:3]
        a_in, c = layer.spatial.linear(stacked.reshape(t_ * b_, s_, *stacked.shape[3:]))
        const = const + c.reshape(t_, b_, s_).sum(0)
        a_s = a_in.reshape(t_, b_, s_, *a_in.shape[2:])
    return concretize_box(a_s, box) + const
