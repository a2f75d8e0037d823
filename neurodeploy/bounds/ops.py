"""Bounded operations of the unrolled LIF network, one class per operation (auto_LiRPA shape).

The certified network is the canonical LIF of :mod:`neurodeploy.neurons` unrolled over T' steps,
per layer k and step t::

    I[t] = W·s_in[t] + b                                    # spatial   (BoundLinear/Conv2d/Pool)
    m[t] = I[t] + α · z[t-1],   z[t-1] = (1 − s[t-1])·m[t-1] # temporal  (BoundMemUpdate)
    s[t] = 1[m[t] > θ]                                      # fire      (BoundFire)

Every class has three methods:

- ``forward``  — the concrete operation (what :class:`~neurodeploy.models.SpikingNet` computes);
- ``interval`` — S-IBP: bounds of the output from bounds of the inputs;
- ``linear``   — S-CROWN: given the coefficients ``A`` of a linear objective on the output,
  return coefficients on the inputs and a constant, such that (objective) ≥ A_in·inputs + c for
  every input in its bounds (a *lower* bound: positive coefficients take the lower linear
  relaxation, negative ones the upper; the same convention as certify_snn's ``*_bound_backward``).

Shapes. Spatial operations work on a folded batch ``N = T'·B``: inputs ``[N, *in_shape]``,
outputs ``[N, *out_shape]``; backward coefficients carry a specification axis ``S``
(one row per margin r_y − r_j): ``A`` is ``[N, S, *out_shape]`` → ``[N, S, *in_shape]`` and the
constant is ``[N, S]``. Neuron operations (fire, temporal) work on one step: bounds
``[B, *shape]``, coefficients ``[B, S, *shape]``; relaxation parameters are ``[B, *shape]`` or,
per specification (α-CROWN), ``[B, S, *shape]``.

The relaxations are those of Liang et al. (NeurIPS 2022) as implemented in certify_snn
(``snn_bound_layers.py``; research/seeds_code.md §1.3–1.4), plus a parametrised family that
contains them (``frac`` arguments, optimised in :mod:`neurodeploy.bounds.alpha`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def _heaviside(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _lift(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Insert the specification axis: ``[B, *shape]`` → ``[B, 1, *shape]`` (already lifted
    tensors, ``[B, S, *shape]``, are returned as they are)."""
    return t if t.dim() == like.dim() else t.unsqueeze(1)


def _floor(t: torch.Tensor, tiny: float = 1e-12) -> torch.Tensor:
    """``max(t, tiny)`` (zero gradient below ``tiny``, like ``clamp``) with masks instead of
    ``clamp``, whose backward runs a slow ``where`` on CPU."""
    above = (t >= tiny).to(t.dtype)
    return t * above + (1.0 - above) * tiny  # exact: t or tiny


def _sum_spatial(t: torch.Tensor) -> torch.Tensor:
    """``[B, S, *shape]`` → ``[B, S]``."""
    return t.flatten(2).sum(-1)


# ----------------------------------------------------------------------------- spatial


class BoundLinear:
    """Fully connected synapse ``I = W·s + b`` (``W`` ``[out, in]``).

    S-IBP for binary inputs with ``s_L ≤ s ≤ s_U`` (certify_snn ``BoundLinear.snn_bound``)::

        m_FIX = W s_L + b,  xor = s_U − s_L,  I_U = m_FIX + W⁺ xor,  I_L = m_FIX + W⁻ xor

    which equals interval arithmetic ``W⁺ s_U + W⁻ s_L + b`` (also for real-valued boxes).
    Backward: ``A_in = A·W``, constant ``A·b`` (no relaxation: the operation is linear).
    ``in_shape`` is the unflattened input shape (a flatten precedes FC after a conv layer).
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, in_shape: tuple[int, ...]
    ) -> None:
        self.weight = weight
        self.bias = bias
        self.in_shape = tuple(in_shape)
        self.out_shape = (int(weight.shape[0]),)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``[N, *in_shape]`` → ``[N, out]``."""
        return F.linear(s.flatten(1), self.weight, self.bias)

    def interval(
        self, lo: torch.Tensor, hi: torch.Tensor, m_fix: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, *in_shape]`` ×2 → ``(I_L, I_U)`` ``[N, out]`` ×2 (``m_fix`` = ``forward(lo)``
        when the caller already has it)."""
        if m_fix is None:
            m_fix = F.linear(lo.flatten(1), self.weight, self.bias)
        xor = (hi - lo).flatten(1)
        return (
            m_fix + F.linear(xor, self.weight.clamp(max=0)),
            m_fix + F.linear(xor, self.weight.clamp(min=0)),
        )

    def linear(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` ``[N, S, out]`` → ``(A·W`` ``[N, S, *in_shape]``, ``A·b`` ``[N, S])``."""
        a_in = A.matmul(self.weight).reshape(*A.shape[:2], *self.in_shape)
        const = A.matmul(self.bias) if self.bias is not None else A.new_zeros(A.shape[:2])
        return a_in, const


class BoundConv2d:
    """2-D convolution synapse (certify_snn ``BoundConv2d``): the same binary-spike interval
    as :class:`BoundLinear` with ``conv2d`` in place of the matrix product; backward through
    ``conv_transpose2d`` with the output padding that restores ``in_shape``."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: int,
        padding: int,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
    ) -> None:
        self.weight = weight
        self.bias = bias
        self.stride = int(stride)
        self.padding = int(padding)
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        k = int(weight.shape[-1])
        self.output_padding = tuple(
            self.in_shape[1 + i] - ((self.out_shape[1 + i] - 1) * self.stride - 2 * self.padding + k)
            for i in range(2)
        )

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, w, b, self.stride, self.padding)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` → ``[N, C', H', W']``."""
        return self._conv(s, self.weight, self.bias)

    def interval(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m_fix = self._conv(lo, self.weight, self.bias)
        xor = hi - lo
        return (
            m_fix + self._conv(xor, self.weight.clamp(max=0), None),
            m_fix + self._conv(xor, self.weight.clamp(min=0), None),
        )

    def linear(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` ``[N, S, C', H', W']`` → (``[N, S, C, H, W]``, ``[N, S]``)."""
        n, s = A.shape[:2]
        a_in = F.conv_transpose2d(
            A.reshape(n * s, *self.out_shape),
            self.weight,
            None,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
        ).reshape(n, s, *self.in_shape)
        if self.bias is None:
            return a_in, A.new_zeros(n, s)
        return a_in, (A.sum((3, 4)) * self.bias).sum(2)


class BoundPool:
    """k×k average (``scale = 1/k²``) or sum (``scale = 1``) pooling with stride k, written as a
    depthwise convolution with the constant kernel ``scale``. Its weights are non-negative, so
    the interval is ``(pool(s_L), pool(s_U))`` (= the binary form m_FIX + W⁺ xor, W⁻ = 0)."""

    def __init__(
        self, kernel: int, scale: float, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> None:
        self.kernel = int(kernel)
        self.scale = float(scale)
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.output_padding = tuple(
            self.in_shape[1 + i] - self.out_shape[1 + i] * self.kernel for i in range(2)
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(s, self.kernel) * (self.scale * self.kernel * self.kernel)

    def interval(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(lo), self.forward(hi)

    def linear(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, s = A.shape[:2]
        c = self.out_shape[0]
        w = A.new_full((c, 1, self.kernel, self.kernel), self.scale)
        a_in = F.conv_transpose2d(
            A.reshape(n * s, *self.out_shape),
            w,
            None,
            stride=self.kernel,
            groups=c,
            output_padding=self.output_padding,
        ).reshape(n, s, *self.in_shape)
        return a_in, A.new_zeros(n, s)


SpatialOp = BoundLinear | BoundConv2d | BoundPool


# ----------------------------------------------------------------------------- fire


@dataclass
class LinearRelaxation:
    """Elementwise lines ``lw·v + lb ≤ f(v) ≤ uw·v + ub`` (shapes ``[B, *shape]`` or lifted
    ``[B, S, *shape]``)."""

    lw: torch.Tensor
    lb: torch.Tensor
    uw: torch.Tensor
    ub: torch.Tensor


class BoundFire:
    """Fire ``s = 1[m > θ]`` (strict '>').

    ``interval``: ``(1[m_L > θ], 1[m_U > θ])`` with the model's spike function, so that the
    surrogate gradient flows through the bounds in certified training (certify_snn applies its
    ``fire_func`` to both bounds).

    ``relaxation`` (paper eq. 8; certify_snn ``_fire_bound_backward``): always firing
    (m_L > θ) → s = 1; never firing (m_U ≤ θ) → s = 0; unstable (m_L ≤ θ < m_U)::

        lower  s ≥ a·(m − θ),      a ∈ [0, 1/(m_U − θ)]   (line through (θ, 0))
        upper  s ≤ 1 + c·(m − θ),  c ∈ [0, 1/(θ − m_L)]   (line through (θ, 1))

    Both families are valid for every a, c in their ranges (at m ≤ θ, s = 0 ≥ a(m−θ) and
    1 + c(m−θ) ≥ 1 − c(θ − m_L) ≥ 0; at m > θ, s = 1 ≥ a(m_U − θ) ≥ a(m−θ)). The paper's
    "parallel" choice follows the larger side: if m_U − θ ≥ θ − m_L then a = 1/(m_U − θ),
    c = 0 (s ≤ 1); otherwise a = 0 (s ≥ 0), c = 1/(θ − m_L), i.e. s ≤ (m − m_L)/(θ − m_L).
    ``lower_frac``/``upper_frac`` ∈ [0, 1] pick a = frac·a_max, c = frac·c_max instead
    (α-CROWN); ``None`` gives the paper's choice.
    """

    def __init__(self, theta: float, spike_fn: SpikeFn | None = None) -> None:
        self.theta = float(theta)
        self.spike_fn = spike_fn or _heaviside

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.spike_fn(m - self.theta)

    def interval(self, m_lo: torch.Tensor, m_hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.spike_fn(m_lo - self.theta), self.spike_fn(m_hi - self.theta)

    def paper_fracs(
        self, m_lo: torch.Tensor, m_hi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's choice as fractions: (1, 0) where m_U − θ ≥ θ − m_L, else (0, 1)."""
        upper_side = ((m_hi - self.theta) >= (self.theta - m_lo)).to(m_lo.dtype)
        return upper_side, 1.0 - upper_side

    def relaxation(
        self,
        m_lo: torch.Tensor,
        m_hi: torch.Tensor,
        lower_frac: torch.Tensor | None = None,
        upper_frac: torch.Tensor | None = None,
    ) -> LinearRelaxation:
        th = self.theta
        always = m_lo > th
        never = m_hi <= th
        unstable = ~(always | never)
        if lower_frac is None or upper_frac is None:
            pl, pu = self.paper_fracs(m_lo, m_hi)
            lower_frac = pl if lower_frac is None else lower_frac
            upper_frac = pu if upper_frac is None else upper_frac
        # Slope caps; the clamp only matters off the unstable set (masked out below) and at
        # m_L = θ exactly, where any c ≥ 0 is valid.
        # Masks as 0/1 factors (exact: the other factor is finite), cheaper than ``where``.
        a_max = 1.0 / _floor(m_hi - th)
        c_max = 1.0 / _floor(th - m_lo)
        unstable_f = unstable.to(m_lo.dtype)
        a = lower_frac * _lift(a_max * unstable_f, lower_frac)
        c = upper_frac * _lift(c_max * unstable_f, upper_frac)
        lw = a
        lb = -a * th + _lift(always, a).to(a.dtype)
        uw = c
        ub = (1.0 - c * th) * _lift((~never).to(c.dtype), c)
        return LinearRelaxation(lw, lb, uw, ub)

    @staticmethod
    def linear(A: torch.Tensor, r: LinearRelaxation) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients ``A`` ``[B, S, *shape]`` on s → (coefficients on m, constant ``[B, S]``):
        the lower line where A ≥ 0, the upper line where A < 0."""
        pos = A >= 0
        a_m = A * torch.where(pos, _lift(r.lw, A), _lift(r.uw, A))
        const = _sum_spatial(A * torch.where(pos, _lift(r.lb, A), _lift(r.ub, A)))
        return a_m, const


# ----------------------------------------------------------------------------- temporal


@dataclass
class TemporalRelaxation:
    """Planes for ``z = x·y`` with ``x = 1 − s[t-1]`` ∈ {0, 1} and ``y = m[t-1]``::

        ax_l·x + ay_l·y + c_l  ≤  z  ≤  ax_u·x + ay_u·y + c_u
    """

    ax_l: torch.Tensor
    ay_l: torch.Tensor
    c_l: torch.Tensor
    ax_u: torch.Tensor
    ay_u: torch.Tensor
    c_u: torch.Tensor


class BoundMemUpdate:
    """Temporal update ``m[t] = I[t] + α·(1 − s[t-1])·m[t-1]`` (leak with hard reset).

    ``interval`` (certify_snn ``BoundMemUpdate.snn_bound``), with ``z = (1 − s)·m`` of step t−1:

    - always fired (s_L = 1): z = 0;
    - never fired (s_U = 0):  z ∈ [m_L, m_U];
    - unstable: z ∈ [min(m_L, 0), θ] (fired → 0; not fired → m ≤ θ);

    then ``m[t] ∈ I[t] + α·[z_L, z_U]``.

    ``relaxation`` (paper eq. 10; certify_snn ``_temporal_bound_backward3``): x fixed → exact
    (x = 1: z = y; x = 0: z = 0); unstable (``frac`` = 0, the paper)::

        y_L·x ≤ z ≤ θ·x

    The family used for α-CROWN (``lower_frac`` β_l, ``upper_frac`` β_u ∈ [0, 1])::

        z ≥ (1 − β_l)·y_L·x + β_l·(y − y_U·(1 − x))
        z ≤ θ·x + β_u·(y − θ)

    Both are valid on the two branches (x = 1: y ∈ [y_L, θ], z = y; x = 0: y ∈ (θ, y_U],
    z = 0) for every β ∈ [0, 1]; β = 0 is the paper's relaxation, β_l = 1 is McCormick's.
    """

    def __init__(self, alpha: float, theta: float) -> None:
        self.alpha = float(alpha)
        self.theta = float(theta)

    def forward(
        self, current: torch.Tensor, m_prev: torch.Tensor, s_prev: torch.Tensor
    ) -> torch.Tensor:
        return current + self.alpha * (m_prev * (1.0 - s_prev))

    def carry_interval(
        self,
        m_lo: torch.Tensor,
        m_hi: torch.Tensor,
        s_lo: torch.Tensor,
        s_hi: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds of ``z = (1 − s)·m`` of the previous step (masks from detached spikes)."""
        never = s_hi.detach() == 0
        unstable = (s_hi.detach() == 1) & (s_lo.detach() == 0)
        # 0/1 factors instead of ``where`` (same values: the other factors are finite)
        never_f = never.to(m_lo.dtype)
        z_hi = never_f * m_hi + unstable.to(m_lo.dtype) * self.theta
        z_lo = (never | (unstable & (m_lo < 0))).to(m_lo.dtype) * m_lo
        return z_lo, z_hi

    def interval(
        self,
        cur_lo: torch.Tensor,
        cur_hi: torch.Tensor,
        m_lo: torch.Tensor,
        m_hi: torch.Tensor,
        s_lo: torch.Tensor,
        s_hi: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds of ``m[t]`` from the current's bounds and the bounds of step t−1."""
        z_lo, z_hi = self.carry_interval(m_lo, m_hi, s_lo, s_hi)
        return cur_lo + self.alpha * z_lo, cur_hi + self.alpha * z_hi

    def relaxation(
        self,
        m_lo: torch.Tensor,
        m_hi: torch.Tensor,
        s_lo: torch.Tensor,
        s_hi: torch.Tensor,
        lower_frac: torch.Tensor | None = None,
        upper_frac: torch.Tensor | None = None,
    ) -> TemporalRelaxation:
        never = (s_hi == 0).to(m_lo.dtype)  # x = 1 fixed: z = y
        unstable = ((s_hi == 1) & (s_lo == 0)).to(m_lo.dtype)
        zero = torch.zeros_like(m_lo)
        if lower_frac is None and upper_frac is None:  # the paper's planes (shared y-part)
            return TemporalRelaxation(unstable * m_lo, never, zero, unstable * self.theta,
                                      never, zero)
        if lower_frac is None:
            ax_l, ay_l, c_l = unstable * m_lo, never, zero
        else:
            u, bl = _lift(unstable, lower_frac), lower_frac
            ax_l = u * ((1 - bl) * _lift(m_lo, bl) + bl * _lift(m_hi, bl))
            ay_l = _lift(never, bl) + u * bl
            c_l = -u * bl * _lift(m_hi, bl)
        if upper_frac is None:
            ax_u, ay_u, c_u = unstable * self.theta, never, zero
        else:
            u, bu = _lift(unstable, upper_frac), upper_frac
            ax_u = u * self.theta
            ay_u = _lift(never, bu) + u * bu
            c_u = -u * bu * self.theta
        return TemporalRelaxation(ax_l, ay_l, c_l, ax_u, ay_u, c_u)

    def linear(
        self, A: torch.Tensor, r: TemporalRelaxation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coefficients ``A`` ``[B, S, *shape]`` on m[t] → (coefficients on m[t-1], coefficients on
        s[t-1], constant ``[B, S]``), after substituting x = 1 − s."""
        a = self.alpha * A
        pos = a >= 0
        coef_x = a * torch.where(pos, _lift(r.ax_l, a), _lift(r.ax_u, a))
        if r.ay_l is r.ay_u and r.c_l is r.c_u:  # the paper's planes: same y-part both sides
            coef_y = a * _lift(r.ay_l, a)
            const = _sum_spatial(a * _lift(r.c_l, a)) if r.c_l.abs().sum() > 0 else 0.0
        else:
            coef_y = a * torch.where(pos, _lift(r.ay_l, a), _lift(r.ay_u, a))
            const = _sum_spatial(a * torch.where(pos, _lift(r.c_l, a), _lift(r.c_u, a)))
        # coef_x·x = coef_x − coef_x·s
        return coef_y, -coef_x, const + _sum_spatial(coef_x)
