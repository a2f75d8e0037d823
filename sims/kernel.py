"""The one integer step of a deployment plan, written once with its arithmetic as a parameter.

Every layer is a synapse kind (``dense``, ``conv``/``pool``) followed by a neuron kind (``lif``,
``talif``). Each kind is written here once, in terms of an :class:`Arithmetic` — the rounding,
wrap and saturation operations — so the same body serves every integer interpreter:

- :class:`ExactArithmetic` (:class:`~neurodeploy.sims.emulator.Emulator`): exact integers held
  in float64, updated in place (fast), the spike a boolean;
- :class:`FusableExactArithmetic` (the emulator's ``compile_steps``): the same integers out of
  place, the spike a float 0/1 — the form ``torch.compile`` fuses into one loop;
- :class:`~neurodeploy.sims.twin.StraightThroughArithmetic` (the hardware twin): the same
  values out of place, every rounding/wrap/saturation passing the gradient straight through,
  the spike a surrogate in float units.

Per layer k and step t (every constant a field of the plan's
:class:`~neurodeploy.exporters.profiles.FixedPointFormat` ``fmt``; ``>>₀`` rounds toward zero)::

    dense:  a = wrap_port(floor((W_eff · s) · 2^weight_exp))     W_eff: Lava's clip + truncate
            (+ W_eff(weights_lo) · s: a second synapse group, folded into one matrix)
    conv:   a = wrap_conv(conv(s, W))                               (pool: a grouped conv)
    lif:    u = over_u(wrap_port((u·f_u) >>₀ decay_bits + wrap_port(a << activation_shift)))
            v = over_v(wrap_port((v·f_v) >>₀ decay_bits + u + (bias_mant << bias_exp)))
            s = v ≻ θ          θ = vth << threshold_shift,  ≻ = fmt.spike_comparison
            v = reset(v, s)    zero: v·(1 − s);  subtract: v − s·θ
            v = max(v, v_min)  sublif kinds with ``neuron_params["v_min"]`` only
    talif:  as lif, with θ = sat_θ(θ + (θ_v·(v − NDS[min(t, T_nds − 1)])) >>₀ θ_v_shift)
            updated before the spike (θ = vth << threshold_shift at t = 0)

``f_u = fmt.u_factor(du)``, ``f_v = fmt.v_factor(dv)`` — per neuron when the plan layer
carries ``neuron_arrays["du"]``/``["dv"]`` (NIR populations with per-neuron decays). The port wraps (int32 in Lava's Python
models) and u's overflow are skipped where :func:`prepare_layer`'s static bound proves them
no-ops (identical values and, straight-through, identical gradients).

The literal one-step-at-a-time numpy transcription of the Lava network
(:func:`~neurodeploy.sims.emulator.reference_lava_network`) and the Lava processes themselves
are independent of this module: the tests hold all three equal.

Adding a neuron kind: a class with ``init`` and ``step`` below, registered in
:data:`NEURON_KINDS` (the Lava side adds its process in ``sims/lava_procs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import PlanError, PlanLayer
from neurodeploy.exporters.profiles import FixedPointFormat
from neurodeploy.sims.lava_runner import TALIFFixed  # numpy-only: the Lava side reads it too

#: Integers below these magnitudes are exact in float32 / float64 (mantissa bits + 1).
FLOAT32_EXACT = 2 ** (np.finfo(np.float32).nmant + 1)
FLOAT64_EXACT = 2 ** (np.finfo(np.float64).nmant + 1)


# ----------------------------------------------------------------------------- arithmetic


class Arithmetic(Protocol):
    """The operations an interpreter supplies. Values are float tensors holding integers.

    ``decay``, ``add`` and ``saturate`` may work in place on their first argument (the exact
    arithmetic does); callers use only the returned tensor.
    """

    def decay(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        """``trunc(x · factor)`` (factor = f / 2^decay_bits): the decay's ``>>₀``."""

    def shift_trunc(self, x: torch.Tensor, inv: float) -> torch.Tensor:
        """``trunc(x · inv)`` for a fresh ``x`` (inv = 2^−k): ``x >>₀ k``."""

    def floor(self, x: torch.Tensor) -> torch.Tensor:
        """``floor(x)`` of a fresh tensor: an arithmetic right shift."""

    def add(self, x: torch.Tensor, y: torch.Tensor | float) -> torch.Tensor:
        """``x + y``."""

    def wrap(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        """Two's-complement wrap to ``bits`` signed bits."""

    def wrap_once(self, x: torch.Tensor, half: float) -> torch.Tensor:
        """Lava's single conditional wrap: ``x − 2·half`` if ``x > half``, ``x + 2·half`` if
        ``x ≤ −half``."""

    def saturate(self, x: torch.Tensor, lim: float) -> torch.Tensor:
        """Clip to ``[−lim, lim]``."""

    def at_least(self, x: torch.Tensor, lo: float) -> torch.Tensor:
        """``max(x, lo)`` (a v floor; may work in place on a tensor the step owns)."""

    def count(self, v: torch.Tensor, theta: float, n_max: float) -> torch.Tensor:
        """The graded spike ``clip(⌊v/θ⌋, 0, n_max)`` of integer ``v`` (a new tensor)."""

    def fire(self, v: torch.Tensor, theta: torch.Tensor | float, unit: float,
             inclusive: bool) -> torch.Tensor:
        """The spike ``v > θ`` (``v ≥ θ`` when ``inclusive``); ``unit`` = v units per float
        unit (the twin's surrogate width)."""

    def reset(self, v: torch.Tensor, s: torch.Tensor, theta: torch.Tensor | float,
              subtract: bool) -> torch.Tensor:
        """``v`` after the spike ``s``: 0 where it fired, or ``v − θ`` when ``subtract``."""

    def matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x @ w.T`` as exact integers (in ``w``'s float dtype: float32 only where the caller
        proved every partial sum below 2^24)."""

    def conv(self, x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> torch.Tensor:
        """PyTorch-layout grouped cross-correlation ``[N, C, H, W]`` → ``[N, C', H', W']``
        (exact integers, in ``w``'s float dtype as for :meth:`matmul`)."""


class ExactArithmetic:
    """Exact integer arithmetic on float64 (the emulator's): in place where the protocol
    allows it, boolean spikes. Exact because every value stays below 2^53.
    ``inplace_reset = False`` leaves the pre-reset v intact (to record it).

    Synaptic sums may arrive in float32 (the emulator uses float32 weights only where every
    partial sum is an integer below 2^24, :data:`FLOAT32_EXACT`); scaling them by a power of
    two, flooring them and adding them to float64 state is exact in float32, and the one
    operation that is not — :meth:`wrap`, whose ``x + 2^(bits−1)`` can leave float32's exact
    range — first widens to float64.
    """

    def __init__(self, inplace_reset: bool = True) -> None:
        self.inplace_reset = inplace_reset

    def decay(self, x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(factor, torch.Tensor):   # one factor for the layer
            if factor == 0.0:   # du/dv = max: nothing is kept (trunc(x·0) = 0)
                return x.zero_()
            if factor == 1.0:   # no decay: trunc(x) = x for the integer x
                return x
        return x.mul_(factor).trunc_()   # per-neuron factors broadcast

    def shift_trunc(self, x: torch.Tensor, inv: float) -> torch.Tensor:
        return x.mul_(inv).trunc_()

    def floor(self, x: torch.Tensor) -> torch.Tensor:
        return x.floor_()

    def add(self, x: torch.Tensor, y: torch.Tensor | float) -> torch.Tensor:
        return x.add_(y)

    def wrap(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        return wrap_signed(x.to(torch.float64), bits)  # no copy when already float64

    def wrap_once(self, x: torch.Tensor, half: float) -> torch.Tensor:
        return wrap_once(x, half)

    def saturate(self, x: torch.Tensor, lim: float) -> torch.Tensor:
        return x.clamp_(-lim, lim)

    def at_least(self, x: torch.Tensor, lo: float) -> torch.Tensor:
        return x.clamp_min_(lo) if self.inplace_reset else torch.clamp_min(x, lo)

    def count(self, v: torch.Tensor, theta: float, n_max: float) -> torch.Tensor:
        # exact: v, θ integers below 2^24, so v/θ in float64 is within 2^-28 of the quotient
        # and at least 1/θ ≥ 2^-23 below the next integer — the floor is the integer floor
        return torch.floor(v / theta).clamp_(0.0, n_max)

    def fire(self, v: torch.Tensor, theta: torch.Tensor | float, unit: float,
             inclusive: bool) -> torch.Tensor:
        return torch.ge(v, theta) if inclusive else torch.gt(v, theta)

    def reset(self, v: torch.Tensor, s: torch.Tensor, theta: torch.Tensor | float,
              subtract: bool) -> torch.Tensor:
        # Through uint8 views of the boolean spike: torch's bool→float conversion and
        # masked_fill are several times slower than a uint8 multiply on CPU. v·0 may give
        # −0.0, the same integer 0 (equal in every comparison, sum and int64 cast).
        if subtract:
            drop = _as_uint8(s).to(v.dtype).mul_(theta)
            return v.sub_(drop) if self.inplace_reset else v - drop
        keep = _as_uint8(torch.logical_not(s))
        return v.mul_(keep) if self.inplace_reset else v * keep

    def matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x.to(w.dtype) @ w.T

    def conv(self, x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> torch.Tensor:
        return conv_exact(x.to(w.dtype), w, L)


class FusableExactArithmetic(ExactArithmetic):
    """:class:`ExactArithmetic` out of place, with the spike a float 0/1 instead of a boolean:
    the form ``torch.compile`` fuses a whole block of steps into one vectorised C++ loop
    (inductor stores boolean masks element by element, ~10× slower than the eager passes).

    Exact as :class:`ExactArithmetic`: every operand is an integer below 2^53, so ``v − θ`` is
    exact and, for integers, ``v > θ ⇔ v − θ ≥ 1 ⇔ clamp(v − θ, 0, 1) = 1`` (``v ≥ θ``: add 1
    first); the reset ``v·(1 − s)`` / ``v − s·θ`` multiplies by exact 0/1. Out of place, a
    returned tensor is never changed by a later step (a compiled block may keep them all).
    """

    def __init__(self) -> None:
        super().__init__(inplace_reset=False)

    def decay(self, x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(factor, torch.Tensor) and factor == 1.0:
            return x
        return torch.trunc(x * factor)

    def shift_trunc(self, x: torch.Tensor, inv: float) -> torch.Tensor:
        return torch.trunc(x * inv)

    def floor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    def add(self, x: torch.Tensor, y: torch.Tensor | float) -> torch.Tensor:
        return x + y

    def saturate(self, x: torch.Tensor, lim: float) -> torch.Tensor:
        return torch.clamp(x, -lim, lim)

    def at_least(self, x: torch.Tensor, lo: float) -> torch.Tensor:
        return torch.clamp_min(x, lo)

    def count(self, v: torch.Tensor, theta: float, n_max: float) -> torch.Tensor:
        return torch.clamp(torch.floor(v / theta), 0.0, n_max)

    def fire(self, v: torch.Tensor, theta: torch.Tensor | float, unit: float,
             inclusive: bool) -> torch.Tensor:
        return torch.clamp(v - theta + (1.0 if inclusive else 0.0), 0.0, 1.0)

    def reset(self, v: torch.Tensor, s: torch.Tensor, theta: torch.Tensor | float,
              subtract: bool) -> torch.Tensor:
        return v - s * theta if subtract else v * (1.0 - s)


def _as_uint8(s: torch.Tensor) -> torch.Tensor:
    """A 0/1 spike tensor as uint8 (a view of a boolean one)."""
    return s.view(torch.uint8) if s.dtype == torch.bool else s.to(torch.uint8)


def wrap_once(x: torch.Tensor, half: float) -> torch.Tensor:
    """Lava's asymmetric single wrap of u: ``x > half → x − 2·half``; ``x ≤ −half → x + 2·half``."""
    return torch.where(x > half, x - 2 * half, torch.where(x <= -half, x + 2 * half, x))


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap to ``bits`` (signed) of exact integers held in float64:
    ``x − 2^bits · floor((x + 2^(bits−1)) / 2^bits)`` (exact for |x| < 2^53)."""
    m = float(1 << bits)
    return x - m * torch.floor((x + m / 2) / m)


#: PyTorch convolution backends that sum plain products ``w·x`` (direct convolution or
#: im2col + GEMM): on integers whose partial sums all stay below the dtype's exact range they
#: are exact in any summation order. Winograd, FFT, NNPACK and cuDNN (which may pick either)
#: transform the operands into non-integers and are not used.
_EXACT_CONV_BACKENDS = frozenset({"Mkldnn", "Slow2d"})


def conv_backend(x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> str | None:
    """The name of the backend ``F.conv2d(x, w, …)`` would run with layer ``L``'s geometry
    (``torch._C._select_conv_backend``), or None where this torch cannot say."""
    try:
        backend = torch._C._select_conv_backend(
            x, w, None, [int(v) for v in L.stride], [int(v) for v in L.padding], [1, 1],
            False, [0, 0], int(L.groups))
    except (AttributeError, RuntimeError, TypeError):  # private API: absent or changed
        return None
    return str(getattr(backend, "name", backend))


def conv_exact(x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> torch.Tensor:
    """Grouped PyTorch-layout cross-correlation of exact integers: ``F.conv2d`` where torch
    runs it as a direct or im2col convolution (:data:`_EXACT_CONV_BACKENDS`; oneDNN's direct
    kernels are 3–10× faster than unfold + matmul on CPU), else :func:`conv_unfold`.

    Exactness is the caller's bound: every partial sum of ``Σ w·x`` over any subset of one
    output's fan-in is at most ``Σ|w|`` in magnitude (inputs are 0/1 spikes), so with that
    below 2^24 (float32) / 2^53 (float64) every sum is exact whatever the order."""
    if conv_backend(x, w, L) in _EXACT_CONV_BACKENDS:
        out = F.conv2d(x, w, stride=tuple(L.stride), padding=tuple(L.padding),
                       groups=int(L.groups))
        if tuple(out.shape[1:]) != tuple(L.out_shape):
            raise PlanError(f"plan layer {L.name}: conv output {tuple(out.shape[1:])} does "
                            f"not match out_shape {L.out_shape}")
        return out
    return conv_unfold(x, w, L)


def conv_unfold(x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> torch.Tensor:
    """Grouped PyTorch-layout cross-correlation as unfold + matmul (no Winograd/FFT, so exact
    on integers): ``[N, C, H, W]`` → ``[N, C_out, H', W']``."""
    N = x.shape[0]
    C_out, cin_g, kh, kw = w.shape
    g = int(L.groups)
    cols = F.unfold(x, (kh, kw), padding=tuple(L.padding), stride=tuple(L.stride))  # [N, C·k·k, P]
    P = cols.shape[-1]
    cols = cols.reshape(N, g, cin_g * kh * kw, P)
    wg = w.reshape(g, C_out // g, cin_g * kh * kw)
    out = torch.einsum("gok,ngkp->ngop", wg, cols).reshape(N, C_out, P)
    if tuple(out.shape[1:]) != (C_out, int(np.prod(L.out_shape[1:]))):
        raise PlanError(f"plan layer {L.name}: conv output {tuple(out.shape[1:])} does not match "
                        f"out_shape {L.out_shape}")
    return out.reshape(N, *L.out_shape)


# ----------------------------------------------------------------------------- layer data


def dense_effective_weights(w: np.ndarray, fmt: FixedPointFormat,
                            num_weight_bits: int | None = None) -> np.ndarray:
    """The weights Lava's ``PyDenseModelBitAcc`` actually uses (weightutils clip + truncate).

    Sign mode from the matrix: all ≥ 0 excitatory ``[0, 2^wb − 1]``, all ≤ 0 inhibitory
    ``[−(2^wb − 1), 0]``, else mixed ``[−2^wb, 2^wb − 1]`` with one more LSB dropped when
    ``fmt.mixed_sign_drops_lsb`` (arithmetic shift ⇒ floor to even).
    """
    w = np.asarray(w).astype(np.int64)
    mode = FixedPointFormat.weight_sign_mode(w)
    mixed = int(mode == "mixed")
    x = -w if mode == "inhibitory" else w
    nb = fmt.weight_bits
    num_weight_bits = nb if num_weight_bits is None else int(num_weight_bits)
    x = np.clip(x, -(2**nb) * mixed, 2**nb - 1)
    drop = nb - num_weight_bits + (mixed if fmt.mixed_sign_drops_lsb else 0)
    x = (x >> drop) << drop
    return (-x if mode == "inhibitory" else x).astype(np.int64)


@dataclass(frozen=True)
class LayerData:
    """One plan layer's integers, prepared once from the plan and its format (numpy, device-
    free; each interpreter moves them to its tensors).

    weights : effective integer weights (dense: Lava's clip + truncate; conv: as in the plan);
    bias : ``bias_mant << bias_exp`` ``[N]``; vth_scaled : ``vth << threshold_shift``;
    u_factor, v_factor : the decay factors (with per-neuron ``du``: u's largest, for the
    static bound; the step reads the per-neuron factors from :func:`neuron_constants`);
    bound : worst |Σ W·s| of one step;
    small : the static bound proves every port wrap a no-op; u_may_overflow : False when
    u = a << activation_shift provably stays in range (du makes u's factor 0);
    unit : v units per float unit (``scale · 2^threshold_shift``); talif : TA-LIF data;
    v_min : the layer's v floor (``neuron_params["v_min"]``, sublif kinds) or None;
    graded_max : ``2^graded_bits − 1`` for a layer sending graded spike counts, else None;
    weight_exp : the exponent applied to ``weights`` (the layer's; 0 when a second synapse
    group ``weights_lo`` is folded into ``weights = W_eff·2^weight_exp + W_eff(lo)``, exact).
    ``bound`` counts inputs of up to ``in_max`` per step (after a graded layer).
    """

    layer: PlanLayer
    fmt: FixedPointFormat
    weights: np.ndarray
    bias: np.ndarray
    vth_scaled: int
    u_factor: int
    v_factor: int
    bound: int
    small: bool
    u_may_overflow: bool
    unit: float
    talif: TALIFFixed | None
    v_min: int | None = None
    graded_max: int | None = None
    weight_exp: int = 0


def check_format_supported(fmt: FixedPointFormat) -> None:
    """Every rule the format names has an implementation here (else ConfigError)."""
    for name, have in (("u_overflow", _OVERFLOWS), ("v_overflow", _OVERFLOWS)):
        if getattr(fmt, name) not in have:
            raise ConfigError(f"the integer kernel has no {name} rule {getattr(fmt, name)!r}; "
                              f"implemented: {sorted(have)}")


def prepare_layer(L: PlanLayer, fmt: FixedPointFormat, in_max: int = 1) -> LayerData:
    """Check ``L`` against what the kernel runs and compute its integers and static bounds
    (``in_max``: the largest input value per step, ``plan.in_max(k)``; 1 for spikes)."""
    where = f"plan layer {L.name}"
    if L.kind not in SYNAPSE_KINDS:
        raise PlanError(f"{where}: layer kind {L.kind!r} has no integer synapse; known: "
                        f"{sorted(SYNAPSE_KINDS)}")
    if L.neuron not in NEURON_KINDS:
        raise PlanError(f"{where}: neuron {L.neuron!r} has no integer step; known: "
                        f"{sorted(NEURON_KINDS)}")
    if not 0 <= int(L.bias_exp) <= fmt.bias_exp_max:
        raise PlanError(f"{where}: bias_exp {L.bias_exp} outside [0, {fmt.bias_exp_max}]")
    weight_exp = int(L.weight_exp)
    if L.kind == "dense":
        w = dense_effective_weights(L.weights, fmt)
        if L.weights_lo is not None:  # two synapse groups = one exact integer matrix
            w = w * (1 << weight_exp) + dense_effective_weights(L.weights_lo, fmt)
            weight_exp = 0
        bound = int(np.abs(w).sum(axis=1).max(initial=0))
        # skip edges add into the same input port (each its own Dense, own sign mode)
        bound += sum(int(np.abs(dense_effective_weights(ws, fmt)).sum(axis=1).max(initial=0))
                     for ws in L.skip_weights)
        bound *= int(in_max)
        a_bound = bound << weight_exp if weight_exp > 0 else bound
    else:
        w = np.asarray(L.weights).astype(np.int64)
        if L.weights_lo is not None:  # two conv groups = one exact integer kernel
            w = (w << weight_exp) + np.asarray(L.weights_lo).astype(np.int64)
            weight_exp = 0
        bound = int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)) * int(in_max)
        a_bound = min(bound, 1 << (fmt.conv_output_bits - 1))
    if bound >= FLOAT64_EXACT:
        raise PlanError(f"{where}: synaptic sums up to {bound} exceed 2^53 (cannot be summed "
                        f"exactly)")
    bias = np.asarray(L.bias_mant).astype(np.int64) << int(L.bias_exp)
    act_bound = a_bound << fmt.activation_shift
    # If |a << act| ≤ 2^state_bits, one conditional wrap keeps |u| ≤ 2^(state_bits−1), so u,
    # v (+ a bias of at most 2^(bias_mant_bits−1+bias_exp_max)) and every intermediate stay far
    # inside the port word: the port wraps are provably no-ops.
    b_max = int(np.abs(bias).max(initial=0))
    small = (act_bound <= 2 * fmt.state_half
             and 2 * fmt.state_half + act_bound + b_max < (1 << (fmt.port_bits - 1)))
    u_factor = fmt.u_factor(L.du)
    if "du" in L.neuron_arrays and L.neuron != "talif":  # per neuron: u's largest factor
        u_factor = max((fmt.u_factor(d) for d in np.asarray(L.neuron_arrays["du"]).ravel()),
                       default=u_factor)
    return LayerData(
        layer=L, fmt=fmt, weights=w, bias=bias, vth_scaled=fmt.vth_scaled(L.vth),
        u_factor=u_factor, v_factor=fmt.v_factor(L.dv), bound=bound, small=small,
        u_may_overflow=not (u_factor == 0 and act_bound < fmt.state_half),
        unit=fmt.v_per_float(L.scale),
        talif=TALIFFixed.from_layer(L, fmt) if L.neuron == "talif" else None,
        v_min=(int(L.neuron_params["v_min"]) if "v_min" in L.neuron_params else None),
        graded_max=((1 << int(L.neuron_params["graded_bits"])) - 1
                    if "graded_bits" in L.neuron_params else None),
        weight_exp=weight_exp,
    )


# ----------------------------------------------------------------------------- synapses


class DenseSynapse:
    """``a = wrap_port(floor((W_eff · s) · 2^weight_exp))`` (the shift floors)."""

    @staticmethod
    def apply(ar: Arithmetic, P: LayerData, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, *in_shape]`` → ``a`` ``[N, *out_shape]``."""
        L = P.layer
        acc = ar.matmul(x.reshape(x.shape[0], -1), w)
        if P.weight_exp > 0:
            acc = acc * float(2**P.weight_exp)
        elif P.weight_exp < 0:
            acc = ar.floor(acc * float(2.0**P.weight_exp))
        if not P.small:
            acc = ar.wrap(acc, P.fmt.port_bits)  # int64 sum → port word
        return acc.reshape(x.shape[0], *L.out_shape)


class ConvSynapse:
    """``a = wrap_conv(conv(s, W))`` (``weight_exp`` is not applied: Lava's Conv ignores it and
    the plan check refuses a non-zero one). The wrap is skipped where the static bound
    ``|a| ≤ Σ|W| < 2^(conv_output_bits − 1)`` makes it the identity."""

    @staticmethod
    def apply(ar: Arithmetic, P: LayerData, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        L = P.layer
        acc = ar.conv(x.reshape(x.shape[0], *L.in_shape), w, L)
        if P.bound < 1 << (P.fmt.conv_output_bits - 1):
            return acc
        return ar.wrap(acc, P.fmt.conv_output_bits)


#: Layer kind → its synapse (pool is a grouped conv with fixed weights).
SYNAPSE_KINDS: dict[str, Any] = {"dense": DenseSynapse, "conv": ConvSynapse,
                                 "pool": ConvSynapse}


# ----------------------------------------------------------------------------- neurons


def _overflow(ar: Arithmetic, x: torch.Tensor, rule: str, fmt: FixedPointFormat
              ) -> torch.Tensor:
    if rule == "wrap_once":
        return ar.wrap_once(x, float(fmt.state_half))
    if rule == "saturate":
        return ar.saturate(x, float(fmt.state_max))
    return ar.wrap(x, fmt.state_bits)


_OVERFLOWS = frozenset({"wrap_once", "saturate", "wrap"})


@dataclass
class NeuronState:
    """Per-step state of a population ``[B, *shape]``: current u, voltage v and (adaptive
    neurons) threshold θ in v units."""

    u: torch.Tensor
    v: torch.Tensor
    theta: torch.Tensor | None = None


class LIF:
    """Loihi's CUBA LIF (see the module docstring): integrate u, then v, spike, reset."""

    kind: ClassVar[str] = "lif"

    @staticmethod
    def init(P: LayerData, like: torch.Tensor) -> NeuronState:
        """Zero state shaped and typed like ``like`` (``[B, *shape]``)."""
        return NeuronState(torch.zeros_like(like), torch.zeros_like(like))

    @staticmethod
    def integrate(ar: Arithmetic, P: LayerData, st: NeuronState, act_t: torch.Tensor,
                  consts: dict[str, Any]) -> NeuronState:
        """The sub-threshold update of u and v (``act_t`` = ``a << activation_shift``); the
        decay factors are per neuron (``consts["u_decay"]``/``["v_decay"]``, f / 2^12) when
        the plan carries ``neuron_arrays["du"]``/``["dv"]``, else the layer's."""
        fmt = P.fmt
        unity = float(fmt.decay_unity)
        u = ar.add(ar.decay(st.u, consts.get("u_decay", P.u_factor / unity)), act_t)
        if not P.small:
            u = ar.wrap(u, fmt.port_bits)
        if P.u_may_overflow:
            u = _overflow(ar, u, fmt.u_overflow, fmt)
        v = ar.add(ar.add(ar.decay(st.v, consts.get("v_decay", P.v_factor / unity)), u),
                   consts["bias"])
        if not P.small:
            v = ar.wrap(v, fmt.port_bits)
        v = _overflow(ar, v, fmt.v_overflow, fmt)
        return NeuronState(u, v, st.theta)

    @staticmethod
    def fire(ar: Arithmetic, P: LayerData, st: NeuronState, theta: torch.Tensor | float
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        """(spike, v before reset, state after reset) for threshold ``theta``."""
        fmt = P.fmt
        s = ar.fire(st.v, theta, P.unit, fmt.spike_comparison == ">=")
        v_pre = st.v
        v = ar.reset(st.v, s, theta, fmt.reset == "subtract")
        return s, v_pre, NeuronState(st.u, v, st.theta)

    @classmethod
    def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
             act_t: torch.Tensor, t: int
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        """One step: (spike, v before reset — aliases the new v for in-place arithmetic —,
        new state). ``consts`` holds the interpreter's tensors (``bias``)."""
        st = cls.integrate(ar, P, st, act_t, consts)
        return cls.fire(ar, P, st, float(P.vth_scaled))


class TALIF(LIF):
    """HoSNN's threshold-adaptive LIF (the ``sims/lava_procs/talif`` process): LIF integration,
    then ``θ = sat_θ(θ + (θ_v·(v − NDS[min(t, T_nds − 1)])) >>₀ k)`` before the spike."""

    kind: ClassVar[str] = "talif"

    @staticmethod
    def init(P: LayerData, like: torch.Tensor) -> NeuronState:
        return NeuronState(torch.zeros_like(like), torch.zeros_like(like),
                           torch.full_like(like, float(P.vth_scaled)))

    @classmethod
    def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
             act_t: torch.Tensor, t: int
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        st = cls.integrate(ar, P, st, act_t, consts)
        tal = P.talif
        assert tal is not None  # prepare_layer sets it for every talif layer
        nds = consts["nds"]
        row = nds[min(t, nds.shape[0] - 1)]
        step = ar.shift_trunc((st.v - row) * consts["theta_v"], 1.0 / float(1 << tal.shift))
        theta = ar.saturate(ar.add(st.theta, step), float(tal.theta_max))
        st = NeuronState(st.u, st.v, theta)
        return cls.fire(ar, P, st, theta)

    @staticmethod
    def constants(P: LayerData, dtype: torch.dtype, device: torch.device
                  ) -> dict[str, torch.Tensor]:
        """θ_v ``[*shape]`` and NDS ``[T_nds, *shape]`` as tensors."""
        tal = P.talif
        assert tal is not None
        shape = tuple(P.layer.out_shape)
        return {
            "theta_v": torch.as_tensor(tal.theta_v, dtype=dtype, device=device).reshape(shape),
            "nds": torch.as_tensor(tal.nds, dtype=dtype, device=device).reshape(
                tal.nds.shape[0], *shape),
        }


class SubLIF(LIF):
    """LIF whose spike subtracts the threshold, ``v ← v − θ`` (the ``sims/lava_procs/sublif``
    process): a per-layer neuron kind, whatever the format's plan-wide ``reset``. NIR graphs
    from sinabs, rockpool and snntorch's default ``Leaky`` reset this way."""

    kind: ClassVar[str] = "sublif"

    @staticmethod
    def fire(ar: Arithmetic, P: LayerData, st: NeuronState, theta: torch.Tensor | float
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        if P.graded_max is not None:  # a count: n = clip(⌊v/θ⌋, 0, 2^b − 1), v ← v − n·θ
            s = ar.count(st.v, theta, float(P.graded_max))
        else:
            s = ar.fire(st.v, theta, P.unit, P.fmt.spike_comparison == ">=")
        v_pre = st.v
        v = ar.reset(st.v, s, theta, True)
        if P.v_min is not None:  # v ← max(v, v_min) after the reset (plan version 3)
            v = ar.at_least(v, float(P.v_min))
        return s, v_pre, NeuronState(st.u, v, st.theta)


class SubLIFDelayed(LIF):
    """Subtract reset one step late, as snntorch's default ``Leaky`` (``reset_delay=True``):
    no reset at the spike; the next step subtracts θ after the decay::

        p = v > θ (the stored, unreset v: last step's spike);  u, v integrate as LIF;
        v = v − p·θ;  s = v > θ

    ``p`` is recomputed from the stored v, so the state is u, v only (the
    ``sims/lava_procs/sublif`` process with ``delayed=True``)."""

    kind: ClassVar[str] = "sublif_delayed"

    @classmethod
    def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
             act_t: torch.Tensor, t: int
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        theta = float(P.vth_scaled)
        inclusive = P.fmt.spike_comparison == ">="
        pending = ar.fire(st.v, theta, P.unit, inclusive)  # before the in-place integration
        st = cls.integrate(ar, P, st, act_t, consts)
        v = ar.reset(st.v, pending, theta, True)
        s = ar.fire(v, theta, P.unit, inclusive)
        return s, v, NeuronState(st.u, v, st.theta)


class ZeroLIFDelayed(LIF):
    """Zero reset one step late, as snntorch's ``Synaptic``/``RLeaky``/``RSynaptic`` with
    ``reset_mechanism="zero"`` (``reset_delay=True``): nothing is reset at the spike; on the
    next step the new membrane (this step's input included) is set to 0::

        p = v > θ (the stored, unreset v: last step's spike);  u, v integrate as LIF;
        v = 0 where p;  s = v > θ

    (the ``sims/lava_procs/sublif`` process with ``reset="zero_delayed"``)."""

    kind: ClassVar[str] = "lif_delayed"

    @classmethod
    def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
             act_t: torch.Tensor, t: int
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        theta = float(P.vth_scaled)
        inclusive = P.fmt.spike_comparison == ">="
        pending = ar.fire(st.v, theta, P.unit, inclusive)  # before the in-place integration
        st = cls.integrate(ar, P, st, act_t, consts)
        v = ar.reset(st.v, pending, theta, False)
        s = ar.fire(v, theta, P.unit, inclusive)
        return s, v, NeuronState(st.u, v, st.theta)


class LI(LIF):
    """Non-spiking read-out (NIR ``LI``/``CubaLI``/``I``; the ``sims/lava_procs/sublif``
    process with ``reset="none"``, sending v): LIF integration, no spike, no reset; the
    output is v itself (the plan's ``readout`` is ``membrane``)."""

    kind: ClassVar[str] = "li"

    @classmethod
    def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
             act_t: torch.Tensor, t: int
             ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
        st = cls.integrate(ar, P, st, act_t, consts)
        return torch.zeros_like(st.v), st.v, st


@dataclass
class RecurrentState(NeuronState):
    """:class:`NeuronState` plus the population's spikes of the previous step."""

    s_prev: torch.Tensor | None = None


def recurrent(base: Any, suffix: str = "_rec") -> Any:
    """The neuron kind ``base`` with extra synaptic input (kind ``<base><suffix>``): the plan's
    integer ``neuron_arrays["w_rec"]`` ``[N, N]`` (``_rec``; flat plan neuron order, used as
    they are — the compiler puts them on the weight grid) add ``W_rec · s[t − 1]``
    (``s[−1] = 0``), and ``neuron_arrays["a_bias"]`` ``[N]`` (``_cb``, optional with ``_rec``)
    a constant input — a bias that enters a CubaLIF's current, not v::

        a_t = a_forward[t] + W_rec · s[t−1] + a_bias;   then ``base``'s step

    With the plan-version-3 precision fields (:data:`~neurodeploy.exporters.plan.REC_LO_KEYS`,
    :data:`~neurodeploy.exporters.plan.FINE_CURRENT_BIAS_KEYS`) — a second recurrent group
    ``w_rec_lo`` under ``W_rec``'s exponent ``k = w_rec_exp``, and the current bias as
    ``a_bias_mant << a_bias_exp`` in u units::

        rec   = wrap_port((W_rec · s[t−1]) · 2^k + W_rec_lo · s[t−1] + a_bias)
        act_t = wrap_port(act_forward[t] + (rec << activation_shift) + (a_bias_mant << e))

    The Lava side runs it inside the neuron process (``sims/lava_procs/sublif``), so the
    per-sample reset clears ``s[t−1]`` with u and v."""

    class Recurrent(base):  # type: ignore[misc, valid-type]
        kind: ClassVar[str] = f"{base.kind}{suffix}"

        @staticmethod
        def constants(P: LayerData, dtype: torch.dtype, device: torch.device
                      ) -> dict[str, torch.Tensor]:
            arrays = P.layer.neuron_arrays
            n = P.layer.out_size
            w = np.asarray(arrays.get("w_rec", np.zeros((n, n)))).astype(np.int64)
            if "w_rec_lo" in arrays:  # two recurrent groups = one exact integer matrix
                w = (w << int(P.layer.neuron_params["w_rec_exp"])) \
                    + np.asarray(arrays["w_rec_lo"]).astype(np.int64)
            b = np.asarray(arrays.get("a_bias", np.zeros(n))).astype(np.int64)
            fine = np.zeros(n, np.int64)
            if "a_bias_mant" in arrays:  # the fine current bias, in u units
                fine = np.asarray(arrays["a_bias_mant"]).astype(np.int64) \
                    << int(P.layer.neuron_params["a_bias_exp"])
            return {"w_rec": torch.as_tensor(w, dtype=torch.float64, device=device),
                    "a_bias": torch.as_tensor(b.reshape(1, n), dtype=torch.float64,
                                              device=device),
                    "u_bias": torch.as_tensor(fine.reshape(1, n), dtype=torch.float64,
                                              device=device)}

        @staticmethod
        def init(P: LayerData, like: torch.Tensor) -> NeuronState:
            st = base.init(P, like)
            return RecurrentState(st.u, st.v, st.theta, torch.zeros_like(like))

        @classmethod
        def step(cls, ar: Arithmetic, P: LayerData, consts: dict[str, Any], st: NeuronState,
                 act_t: torch.Tensor, t: int
                 ) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
            assert isinstance(st, RecurrentState) and st.s_prev is not None
            prev = st.s_prev.reshape(st.s_prev.shape[0], -1)
            rec = ar.matmul(prev.to(consts["w_rec"].dtype), consts["w_rec"]) + consts["a_bias"]
            rec = ar.wrap(rec, P.fmt.port_bits) * float(1 << P.fmt.activation_shift)
            rec = (rec + consts["u_bias"]).reshape(act_t.shape)  # u units
            act = ar.wrap(act_t + rec, P.fmt.port_bits)
            s, v_pre, new = base.step(ar, P, consts, NeuronState(st.u, st.v, st.theta), act, t)
            return s, v_pre, RecurrentState(new.u, new.v, new.theta, s.to(act_t.dtype))

    Recurrent.__name__ = Recurrent.__qualname__ = f"{base.__name__}Recurrent"
    return Recurrent


#: Neuron kind → its integer step (the Lava side's processes: ``sims/lava_runner``).
NEURON_KINDS: dict[str, Any] = {"lif": LIF, "talif": TALIF, "sublif": SubLIF,
                                "sublif_delayed": SubLIFDelayed, "lif_delayed": ZeroLIFDelayed}
NEURON_KINDS.update({f"{k}{sfx}": recurrent(v, sfx) for k, v in list(NEURON_KINDS.items())
                     if k != "talif" for sfx in ("_rec", "_cb")})
NEURON_KINDS.update({"li": LI, "li_cb": recurrent(LI, "_cb")})


def neuron_constants(P: LayerData, dtype: torch.dtype, device: torch.device
                     ) -> dict[str, torch.Tensor]:
    """The tensors a layer's neuron step reads (bias ``[*shape]`` + the kind's own)."""
    consts = {"bias": torch.as_tensor(P.bias, dtype=dtype, device=device).reshape(
        tuple(P.layer.out_shape))}
    kind = NEURON_KINDS[P.layer.neuron]
    arrays, fmt = P.layer.neuron_arrays, P.fmt
    for key, factor in (("du", fmt.u_factor), ("dv", fmt.v_factor)):
        if key in arrays and P.layer.neuron != "talif":  # per-neuron decays: f / 2^12
            f = np.array([factor(d) for d in np.asarray(arrays[key]).reshape(-1)], np.float64)
            consts[f"{key[1]}_decay"] = torch.as_tensor(
                f / fmt.decay_unity, dtype=dtype, device=device).reshape(
                tuple(P.layer.out_shape))
    if hasattr(kind, "constants"):
        consts.update(kind.constants(P, dtype, device))
    return consts


def activation(ar: Arithmetic, P: LayerData, a: torch.Tensor) -> torch.Tensor:
    """``wrap_port(a << activation_shift)`` of a fresh tensor of synaptic inputs."""
    act = a * float(1 << P.fmt.activation_shift)
    return act if P.small else ar.wrap(act, P.fmt.port_bits)
