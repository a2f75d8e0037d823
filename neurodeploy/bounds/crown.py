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


def concretize_first_linear(op: BoundLinear, a_m: torch.Tensor, box: InputBox
                            ) -> torch.Tensor:
    """Spatial backward of a first FC layer fused with the concretisation (same value as
    ``op.linear`` + :func:`concretize_box`, without forming ``A·W`` on every input position).

    With ``hi = lo + d`` (d ≥ 0), ``min(A·lo, A·hi) = A·lo + min(A, 0)·d``, and
    ``Σ_i A_in[i]·lo[i] = A_m·(W·lo)``; only the positions with d > 0 (the unstable input
    spikes, a few percent for small ε) need ``A_in = A_m·W`` explicitly::

        lb = Σ_t [A_m[t]·(W lo[t] + b) + Σ_{i: d_i > 0} min(A_m[t]·W[:, i], 0)·d_i]

    ``a_m`` ``[T', B, S, out]`` → ``[B, S]``.
    """
    lo = box.lo.flatten(2)
    d = (box.hi - box.lo).flatten(2)
    w = op.weight
    cur = F.linear(lo, w, op.bias)  # [T', B, out]
    out = (a_m * cur.unsqueeze(2)).sum(-1).sum(0)
    k = int((d > 0).sum(-1).max())
    if k == 0:
        return out
    vals, idx = d.topk(k, dim=-1)  # [T', B, k]; padding entries have d = 0
    w_cols = w.t()[idx]  # [T', B, k, out]
    a_u = torch.einsum("tbso,tbko->tbsk", a_m, w_cols)
    return out + (a_u.clamp(max=0) * vals.unsqueeze(2)).sum(-1).sum(0)


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
    params = params or RelaxParams()
    steps = box.steps
    a_s = [spec / steps for _ in range(steps)]  # coefficients on the output spikes, per step
    const = spec.new_zeros(spec.shape[:2])
    for k in range(len(layers) - 1, -1, -1):
        layer, lb = layers[k], bounds[k]
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
        stacked = torch.stack(a_m)  # [T', B, S, *out]
        if k == 0 and isinstance(layer.spatial, BoundLinear) and box.unstable_fraction < 0.25:
            return concretize_first_linear(layer.spatial, stacked, box) + const
        t_, b_, s_ = stacked.shape[:3]
        a_in, c = layer.spatial.linear(stacked.reshape(t_ * b_, s_, *stacked.shape[3:]))
        const = const + c.reshape(t_, b_, s_).sum(0)
        a_in = a_in.reshape(t_, b_, s_, *a_in.shape[2:])
        a_s = list(a_in.unbind(0))
    return concretize_box(torch.stack(a_s), box) + const
