"""Surrogate gradients for the Heaviside spike, selected by name.

A surrogate is a callable ``spike_fn(x) -> spikes`` applied to ``x = m - θ``. The forward pass
is always the strict Heaviside ``1[x > 0]`` (Loihi and certify_snn compare with ``>``); only
the backward pass differs. Names (``name`` or ``name:param``):

- ``rect[:w]``       certify_snn's rectangle, dS/dx = 1[|x| < w], w = 0.5 (research §1.1)
- ``atan[:a]``       snntorch ``atan(alpha=a)``, a = 2
- ``fast_sigmoid[:k]`` snntorch ``fast_sigmoid(slope=k)``, k = 25
- ``sigmoid[:k]``    snntorch ``sigmoid(slope=k)``, k = 25
- ``triangle[:g]``   ZIF triangle (1/g²)·max(0, g − |x|) of SR/RAT, g = 1
- ``assg[:w]``       adaptive-sharpness arctan surrogate for *attacks* (after ASSG, Wang et al.,
                     "Towards Reliable Evaluation of Adversarial Robustness for SNNs", arXiv
                     2512.22522): dS/dx = (a/2)/(1 + (π/2·a·x)²) with the sharpness set from the
                     membrane distribution of the current forward pass, ``a = w / E|x|``, the mean
                     over the layer's neurons of the same example and step (w = 1). The paper
                     sets the sharpness per neuron from the expected |u|; taking the layer mean
                     of the example itself keeps one example's gradient independent of the
                     others in the batch. A narrow surrogate whose window misses most membranes
                     (the masking a fixed surrogate can cause) is widened automatically, a wide
                     one sharpened.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from snntorch import surrogate as snn_surrogate

from neurodeploy.errors import ConfigError

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class _Heaviside(torch.autograd.Function):
    """Forward the strict Heaviside ``1[x > 0]``; backward ``grad · deriv(x, param)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, deriv: Callable[[torch.Tensor, float], torch.Tensor],
                param: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.deriv, ctx.param = deriv, param
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.deriv(x, ctx.param).to(grad.dtype), None, None


def _rect_deriv(x: torch.Tensor, width: float) -> torch.Tensor:
    return (x.abs() < width).to(x.dtype)


def _triangle_deriv(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return (gamma - x.abs()).clamp(min=0) / (gamma * gamma)


def _assg_deriv(x: torch.Tensor, omega: float) -> torch.Tensor:
    a = adaptive_sharpness(x, omega)
    return (a / 2) / (1 + (torch.pi / 2 * a * x) ** 2)


def adaptive_sharpness(x: torch.Tensor, omega: float) -> torch.Tensor:
    """``ω / E|x|`` per example (dim 0), the mean over all other dims, broadcastable to x."""
    if x.dim() == 1:
        scale = x.abs()
    else:
        scale = x.abs().flatten(1).mean(1).view(-1, *[1] * (x.dim() - 1))
    return omega / scale.clamp_min(1e-6)


def _assg(omega: float = 1.0) -> SpikeFn:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(x, _assg_deriv, omega)

    fn.per_step = True  # type: ignore[attr-defined]  # statistics over one step's [B, …]
    return fn


def _rect(width: float = 0.5) -> SpikeFn:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(x, _rect_deriv, width)

    return fn


def _triangle(gamma: float = 1.0) -> SpikeFn:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(x, _triangle_deriv, gamma)

    return fn


SURROGATES: dict[str, tuple[Callable[[float], SpikeFn], float]] = {
    "rect": (_rect, 0.5),
    "atan": (lambda a: snn_surrogate.atan(alpha=a), 2.0),
    "fast_sigmoid": (lambda k: snn_surrogate.fast_sigmoid(slope=k), 25.0),
    "sigmoid": (lambda k: snn_surrogate.sigmoid(slope=k), 25.0),
    "triangle": (_triangle, 1.0),
    "assg": (_assg, 1.0),
}


def make_surrogate(spec: str) -> SpikeFn:
    """Build a spike function from ``"name"`` or ``"name:param"`` (see module docstring)."""
    name, _, param = spec.partition(":")
    name = name.strip().lower()
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}")
    factory, default = SURROGATES[name]
    try:
        value = float(param) if param else default
    except ValueError as exc:
        raise ConfigError(f"surrogate {spec!r}: parameter {param!r} is not a number") from exc
    if not value > 0:
        raise ConfigError(f"surrogate {spec!r}: parameter must be > 0")
    return factory(value)
