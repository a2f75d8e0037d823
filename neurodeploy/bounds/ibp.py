"""S-IBP: interval bounds through the unrolled LIF network (paper Alg. 1, certify_snn
``snn_bound``).

Layer-major: the spatial interval of layer k for all T' steps at once (one batched op on
``[T'·B, …]``), then the temporal loop over t (carry of step t−1, fire on each bound).
Returns every layer's membrane and spike bounds at every step, so that the soundness tests can
check each of them, and the margin lower bound from the output rate interval::

    r_L = mean_t s_L^out[t],  r_U = mean_t s_U^out[t],   lb(r_y − r_j) = r_L[y] − r_U[j]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.bounds.network import BoundLayer
from neurodeploy.bounds.ops import BoundLinear
from neurodeploy.bounds.perturbation import InputBox


@dataclass
class LayerBounds:
    """Bounds of one layer over the certified steps, each ``[T', B, *out_shape]``."""

    m_lo: torch.Tensor
    m_hi: torch.Tensor
    s_lo: torch.Tensor
    s_hi: torch.Tensor
    #: ``W·s_L + b`` at every step ``[T', B, out]`` — kept for the first FC layer only, where
    #: S-CROWN's concretisation needs exactly this product (:func:`~.crown.concretize_first_linear`).
    fix: torch.Tensor | None = None


def _fold(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])


def ibp_bounds(layers: list[BoundLayer], box: InputBox) -> list[LayerBounds]:
    """Interval bounds of every layer for every input spike train in ``box``."""
    s_lo, s_hi = box.lo, box.hi
    steps, batch = s_lo.shape[:2]
    out: list[LayerBounds] = []
    for k, layer in enumerate(layers):
        fix = None
        if k == 0 and isinstance(layer.spatial, BoundLinear):
            fix = layer.spatial.forward(_fold(s_lo))
            c_lo, c_hi = layer.spatial.interval(_fold(s_lo), _fold(s_hi), fix)
            fix = fix.reshape(steps, batch, -1)
        else:
            c_lo, c_hi = layer.spatial.interval(_fold(s_lo), _fold(s_hi))
        c_lo = c_lo.reshape(steps, batch, *c_lo.shape[1:])
        c_hi = c_hi.reshape(steps, batch, *c_hi.shape[1:])
        m_lo, m_hi, o_lo, o_hi = [], [], [], []
        for t in range(steps):
            if t == 0:
                ml, mh = c_lo[0], c_hi[0]
            else:
                ml, mh = layer.mem.interval(c_lo[t], c_hi[t], m_lo[-1], m_hi[-1], o_lo[-1],
                                            o_hi[-1])
            sl, sh = layer.fire.interval(ml, mh)
            m_lo.append(ml)
            m_hi.append(mh)
            o_lo.append(sl)
            o_hi.append(sh)
        lb = LayerBounds(torch.stack(m_lo), torch.stack(m_hi), torch.stack(o_lo),
                         torch.stack(o_hi), fix)
        out.append(lb)
        s_lo, s_hi = lb.s_lo, lb.s_hi
    return out


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32
                ) -> torch.Tensor:
    """The specification ``C`` ``[B, K−1, K]``: rows ``e_y − e_j`` for the K−1 classes j ≠ y,
    in increasing j (certify_snn's ``BoundLast``)."""
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    c = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # [B, K, K]
    keep = y.unsqueeze(1) != torch.arange(num_classes, device=y.device).unsqueeze(0)
    return c[keep].reshape(y.shape[0], num_classes - 1, num_classes)


def other_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Indices j ≠ y in the order of :func:`margin_spec`, ``[B, K−1]``."""
    ar = torch.arange(num_classes, device=y.device).expand(y.shape[0], num_classes)
    keep = ar != y.unsqueeze(1)
    return ar[keep].reshape(y.shape[0], num_classes - 1)


def ibp_margin_lower(out: LayerBounds, y: torch.Tensor) -> torch.Tensor:
    """``lb(r_y − r_j)`` ``[B, K−1]`` from the output spike bounds (rates over T')."""
    r_lo, r_hi = out.s_lo.mean(0), out.s_hi.mean(0)
    k = r_lo.shape[1]
    j = other_classes(y, k)
    return r_lo.gather(1, y.unsqueeze(1)) - r_hi.gather(1, j)
