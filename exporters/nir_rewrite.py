"""Exact rewrites of a :class:`~neurodeploy.exporters.nir_dgraph.DGraph` before compiling.

Each pass returns an equal network (same spikes and membranes up to float round-off; the tests
run :mod:`~neurodeploy.exporters.nir_interp` before and after each pass on random inputs):

* :func:`drop_identities` — a ``Flatten`` of an already flat tensor.
* :func:`fuse_scale` — ``Scale → Affine`` becomes ``Affine(W·diag(s))``; ``Affine → Scale``
  becomes ``Affine(diag(s)·W, s⊙b)``; ``Scale → Conv2d`` with one scale per channel folds into
  the kernel.
* :func:`fuse_pool` — a pooling node feeding a linear node with no neuron between (sinabs:
  ``IF → SumPool2d → Conv2d``) is one linear map: ``Pool → Conv2d`` becomes one ``Conv2d``
  (kernel (k_c − 1)·s_p + k_p, stride s_c·s_p, padding p_c·s_p; only when that is exact, see
  :func:`_pool_conv`), ``Pool → Flatten → Affine`` becomes ``Flatten → Affine(W·P)``.
* :func:`fold_leak` — a neuron's per-step leak term ``b`` (Euler: ``dt/τ·v_leak``) moves into
  the bias of the linear node feeding it, divided by the neuron's input gain: ``b_syn += b/g``
  (per channel for a convolution, so only when ``b/g`` is uniform within each channel).
* :func:`mark_if` — a LIF with α = 1 (τ = ∞) is an IF.
* :func:`normalize_thresholds` — per-neuron thresholds become 1 by dividing each neuron's
  input row by its θ (so a chip population has one θ).
"""

from __future__ import annotations

import math

import numpy as np

from neurodeploy.exporters.nir_dgraph import (
    DConv,
    DFlatten,
    DGraph,
    DLinear,
    DNeuron,
    DPool,
    DScale,
)


def _only_succ(g: DGraph, name: str) -> str | None:
    s = g.succs(name)
    return s[0] if len(s) == 1 else None


def _only_pred(g: DGraph, name: str) -> str | None:
    p = g.preds(name)
    return p[0] if len(p) == 1 else None


def _splice_out(g: DGraph, name: str) -> None:
    """Remove a node with one predecessor: its successors read the predecessor instead."""
    pre = _only_pred(g, name)
    assert pre is not None
    g.edges = [(pre if s == name else s, d) for s, d in g.edges if d != name]
    del g.nodes[name]


def _merge_into_second(g: DGraph, first: str, second: str) -> None:
    """``first → second`` (first's only successor, second's only predecessor) → ``second``."""
    g.edges = [(s, second if d == first else d) for s, d in g.edges
               if not (s == first and d == second)]
    g.edges = [(s, d) for s, d in g.edges if s != first]
    del g.nodes[first]


def drop_identities(g: DGraph) -> DGraph:
    for name in list(g.nodes):
        n = g.nodes[name]
        if isinstance(n, DFlatten) and n.in_shape == n.out_shape and _only_pred(g, name):
            _splice_out(g, name)
            g.notes.append(f"rewrite: Flatten {n.source!r} of a flat tensor removed")
    return g


def fuse_scale(g: DGraph) -> DGraph:
    changed = True
    while changed:
        changed = False
        for name in list(g.nodes):
            n = g.nodes.get(name)
            if not isinstance(n, DScale):
                continue
            s = np.broadcast_to(n.scale, n.in_shape).astype(np.float64)
            nxt, pre = _only_succ(g, name), _only_pred(g, name)
            m = g.nodes.get(nxt) if nxt else None
            p = g.nodes.get(pre) if pre else None
            if isinstance(m, DLinear) and _only_pred(g, nxt) == name:
                m.weight = m.weight * s.reshape(1, -1)
                m.source = f"{n.source}+{m.source}"
                _merge_into_second(g, name, nxt)
            elif isinstance(m, DConv) and _only_pred(g, nxt) == name and np.all(
                    s == s[:, :1, :1]):
                c = s[:, 0, 0]
                cin_g = m.weight.shape[1]
                for grp in range(m.groups):
                    cout_g = m.weight.shape[0] // m.groups
                    m.weight[grp * cout_g:(grp + 1) * cout_g] *= \
                        c[grp * cin_g:(grp + 1) * cin_g].reshape(1, -1, 1, 1)
                m.source = f"{n.source}+{m.source}"
                _merge_into_second(g, name, nxt)
            elif isinstance(p, DLinear) and _only_succ(g, pre) == name:
                p.weight = p.weight * s.reshape(-1, 1)
                p.bias = p.bias * s.reshape(-1) if p.bias is not None else None
                p.source = f"{p.source}+{n.source}"
                _splice_out(g, name)
            else:
                continue
            g.notes.append(f"rewrite: Scale {n.source!r} fused into the adjacent linear node")
            changed = True
    return g


def pool_matrix(pool: DPool) -> np.ndarray:
    """The pooling map as a dense matrix ``[C·Ho·Wo, C·H·W]`` (flat CHW order)."""
    C, H, W = pool.in_shape
    _, Ho, Wo = pool.out_shape
    m = 1.0 / (pool.kernel[0] * pool.kernel[1]) if pool.mode == "avg" else 1.0
    P = np.zeros((C * Ho * Wo, C * H * W))
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                row = (c * Ho + i) * Wo + j
                for a in range(pool.kernel[0]):
                    for b in range(pool.kernel[1]):
                        y = i * pool.stride[0] - pool.padding[0] + a
                        x = j * pool.stride[1] - pool.padding[1] + b
                        if 0 <= y < H and 0 <= x < W:
                            P[row, (c * H + y) * W + x] += m
    return P


def _pool_conv(pool: DPool, conv: DConv) -> DConv | None:
    """The single convolution equal to ``conv(pool(x))``, or None when it is not exact."""
    if pool.padding != (0, 0) or conv.dilation != (1, 1):
        return None
    C, H, W = pool.in_shape
    kp, sp, sc, pc = pool.kernel, pool.stride, conv.stride, conv.padding
    for d, n in ((0, H), (1, W)):
        if pc[d] > 0 and (kp[d] > sp[d] or (n - kp[d]) % sp[d] != 0 or kp[d] != sp[d]):
            return None
    m = 1.0 / (kp[0] * kp[1]) if pool.mode == "avg" else 1.0
    Co, Cg, kh, kw = conv.weight.shape
    K = ((kh - 1) * sp[0] + kp[0], (kw - 1) * sp[1] + kp[1])
    w = np.zeros((Co, Cg, K[0], K[1]))
    for a in range(kh):
        for b in range(kw):
            for p in range(kp[0]):
                for q in range(kp[1]):
                    w[:, :, a * sp[0] + p, b * sp[1] + q] += m * conv.weight[:, :, a, b]
    fused = DConv(source=f"{pool.source}+{conv.source}", in_shape=pool.in_shape,
                  out_shape=conv.out_shape, weight=w,
                  bias=None if conv.bias is None else conv.bias.copy(),
                  stride=(sc[0] * sp[0], sc[1] * sp[1]),
                  padding=(pc[0] * sp[0], pc[1] * sp[1]), groups=conv.groups)
    ho = (H + 2 * fused.padding[0] - K[0]) // fused.stride[0] + 1
    wo = (W + 2 * fused.padding[1] - K[1]) // fused.stride[1] + 1
    if (Co, ho, wo) != tuple(conv.out_shape):
        return None
    return fused


def fuse_pool(g: DGraph) -> DGraph:
    for name in list(g.nodes):
        n = g.nodes.get(name)
        if not isinstance(n, DPool):
            continue
        nxt = _only_succ(g, name)
        if nxt is None or _only_pred(g, nxt) != name:
            continue
        m = g.nodes[nxt]
        if isinstance(m, DConv):
            fused = _pool_conv(n, m)
            if fused is None:
                continue
            g.nodes[nxt] = fused
            _merge_into_second(g, name, nxt)
        elif isinstance(m, DFlatten) and m.start_dim == 0 and m.end_dim in (-1, 2):
            lin = _only_succ(g, nxt)
            if lin is None or _only_pred(g, lin) != nxt or not isinstance(g.nodes[lin], DLinear):
                continue
            L = g.nodes[lin]
            L.weight = L.weight @ pool_matrix(n)
            L.in_shape = (int(math.prod(n.in_shape)),)
            L.source = f"{n.source}+{L.source}"
            m.in_shape = n.in_shape
            m.out_shape = L.in_shape
            _merge_into_second(g, name, nxt)
        else:
            continue
        g.notes.append(f"rewrite: pooling {n.source!r} with no neuron after it fused into the "
                       f"next linear node")
    return g


def fold_leak(g: DGraph) -> DGraph:
    order, back = g.order()
    for name in order:
        n = g.nodes[name]
        if not isinstance(n, DNeuron) or n.beta is not None or not np.any(n.bias != 0):
            continue
        fwd = [p for p in g.preds(name) if (p, name) not in back]
        if len(fwd) != 1 or _only_succ(g, fwd[0]) != name or np.any(n.gain == 0):
            continue
        syn = g.nodes[fwd[0]]
        shift = n.bias / n.gain
        if isinstance(syn, DLinear):
            syn.bias = (syn.bias if syn.bias is not None else 0.0) + shift.reshape(-1)
        elif isinstance(syn, DConv):
            per_ch = shift.reshape(shift.shape[0], -1)
            if not np.all(per_ch == per_ch[:, :1]):
                continue
            syn.bias = (syn.bias if syn.bias is not None else 0.0) + per_ch[:, 0]
        else:
            continue
        n.bias = np.zeros_like(n.bias)
        g.notes.append(f"rewrite: leak term of {n.source!r} (v_leak) moved into the bias of "
                       f"{syn.source!r}")
    return g


def mark_if(g: DGraph) -> DGraph:
    for n in g.nodes.values():
        if isinstance(n, DNeuron) and n.kind == "lif" and np.all(n.alpha == 1.0):
            n.kind = "if"
            g.notes.append(f"rewrite: LIF {n.source!r} with τ = ∞ is an IF")
    return g


def rewrite_all(g: DGraph) -> DGraph:
    for p in PASSES:
        g = p(g)
    return g


def normalize_thresholds(g: DGraph) -> DGraph:
    """Per-neuron thresholds → θ = 1 by scaling each neuron's input row (exact: the spike
    ``v > θ_i`` is ``v/θ_i > 1``, and every term of v — input, bias, reset, initial value —
    scales by 1/θ_i). Applies to a spiking population whose θ differs between neurons and
    whose only input is one Affine (or a Conv2d when θ is uniform per channel); a chip
    population then needs one θ. Per-neuron decays cannot be rescaled and stay as they are
    (the compiler names them)."""
    order, back = g.order()
    for name in order:
        n = g.nodes[name]
        if not isinstance(n, DNeuron) or not n.spiking or np.all(n.theta == n.theta.flat[0]):
            continue
        pre = g.preds(name)
        if len(pre) != 1 or (pre[0], name) in back or _only_succ(g, pre[0]) != name:
            continue
        if np.any(n.theta <= 0):
            continue
        syn = g.nodes[pre[0]]
        th = n.theta
        if isinstance(syn, DLinear):
            inv = 1.0 / th.reshape(-1)
            syn.weight = syn.weight * inv[:, None]
            syn.bias = syn.bias * inv if syn.bias is not None else None
        elif isinstance(syn, DConv):
            per_ch = th.reshape(th.shape[0], -1)
            if not np.all(per_ch == per_ch[:, :1]):
                continue
            inv = 1.0 / per_ch[:, 0]
            syn.weight = syn.weight * inv[:, None, None, None]
            syn.bias = syn.bias * inv if syn.bias is not None else None
        else:
            continue
        n.bias = n.bias / th
        n.v_reset = n.v_reset / th if n.v_reset is not None else None
        n.reset_amount = n.reset_amount / th if n.reset_amount is not None else None
        n.v_init = n.v_init / th if n.v_init is not None else None
        n.v_floor = n.v_floor / th if n.v_floor is not None else None
        n.theta = np.ones_like(th)
        g.notes.append(f"rewrite: per-neuron thresholds of {n.source!r} normalised to 1 (rows of "
                       f"{syn.source!r} divided by θ)")
    return g


PASSES = (drop_identities, fuse_scale, fuse_pool, fold_leak, mark_if, normalize_thresholds)
"""The passes :func:`rewrite_all` runs, in this order."""
