"""Gradient modes for the spiking non-linearity, selected per attack.

The forward pass (spikes, logits) is *identical* in every mode; only the backward rule of each
spiking neuron changes. With input current ``I[t]`` of a neuron, spikes ``s[t]`` and
``r̄ = (1/T) Σ_t s[t]``, ``Ī = (1/T) Σ_t I[t]``:

- ``bptt`` / ``bptt:<surrogate>`` — exact unrolled graph (membrane recurrence included); the
  Heaviside derivative is the model's surrogate, or the named one
  (:func:`neurodeploy.surrogates.make_surrogate`, e.g. ``bptt:atan``, ``bptt:triangle:0.5``).
- ``bptr`` — backprop through rate (Ding et al. 2022, SNN-RAT ``RateBp``):
  ``∂L/∂I[t] = ∂L/∂s[t] · 1[r̄ > 0]``; no gradient through the membrane (no temporal credit).
- ``rga`` — rate gradient approximation (Bu et al. 2023): every step gets the slope of the
  steady-state rate with respect to the mean current, ``∂L/∂I[t] = ∂L/∂s[t] · g(Ī/θ)/θ`` with
  (τ = the neuron's leak α, γ = 0.2)::

      g(u) = 0.2                              0 ≤ u ≤ 1 − τ
           = (1 − γ + γτ) / (τ + 1)           1 − τ ≤ u ≤ 2
           = 0                                otherwise

  (the RGA code's rule with threshold 1; dividing by θ maps it to threshold θ).

BPTR and RGA need the *whole* spike train / current of a neuron, which a step-wise neuron does
not have when it fires. They are implemented without a second forward pass: each spiking
neuron is temporarily wrapped; the wrapper runs the original neuron on the *detached* current
(so its forward values are unchanged and no gradient flows through the membrane) and emits
``s[t]`` through a custom autograd function whose backward multiplies by a coefficient that is
computed from the buffers of *that* forward call (all T steps are done before any backward).
Non-spiking output integrators (membrane readout) keep their exact gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from neurodeploy.errors import ConfigError
from neurodeploy.surrogates import make_surrogate

MODES = ("bptt", "bptr", "rga")
RGA_GAMMA = 0.2


def parse_mode(mode: str) -> tuple[str, str | None]:
    """``"bptt:atan"`` → ``("bptt", "atan")``; validates the mode and surrogate name."""
    base, _, arg = str(mode).strip().lower().partition(":")
    if base not in MODES:
        raise ConfigError(f"unknown gradient mode {mode!r}; choose one of {MODES} (bptt:<surrogate>)")
    if arg and base != "bptt":
        raise ConfigError(f"gradient mode {base!r} takes no argument, got {mode!r}")
    if arg:
        make_surrogate(arg)  # raises ConfigError for an unknown surrogate
    return base, (arg or None)


def spiking_nets(obj: Any) -> list[nn.Module]:
    """Modules inside ``obj`` that hold a ``neurons`` ModuleList (SpikingNet and alike)."""
    if not isinstance(obj, nn.Module):
        return []
    return [m for m in obj.modules() if isinstance(getattr(m, "neurons", None), nn.ModuleList)]


def _is_spiking(neuron: nn.Module) -> bool:
    return getattr(neuron, "kind", None) != "li"


class _Holder:
    """Per-forward-call buffers of one wrapped neuron."""

    def __init__(self) -> None:
        self.spk_sum: torch.Tensor | None = None
        self.cur_sum: torch.Tensor | None = None
        self.steps = 0
        self._coef: torch.Tensor | None = None

    def add(self, spk: torch.Tensor, cur: torch.Tensor) -> None:
        self.spk_sum = spk if self.spk_sum is None else self.spk_sum + spk
        self.cur_sum = cur if self.cur_sum is None else self.cur_sum + cur
        self.steps += 1
        self._coef = None


class _LateScale(torch.autograd.Function):
    """Forward: the spikes. Backward: ``grad · holder.coef()`` to the current."""

    @staticmethod
    def forward(ctx, spk: torch.Tensor, cur: torch.Tensor, wrapper: Any, holder: _Holder):  # type: ignore[override]
        ctx.wrapper = wrapper
        ctx.holder = holder
        return spk.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, grad * ctx.wrapper.coef(ctx.holder).to(grad.dtype), None, None


class RateGradNeuron(nn.Module):
    """Wrap a spiking neuron: same forward, BPTR or RGA backward (see module docstring)."""

    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        self.inner = inner
        self.mode = mode
        self._holder: _Holder | None = None

    # the attributes other code reads from neurons
    @property
    def kind(self) -> str:
        return getattr(self.inner, "kind", "lif")

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.inner, "stochastic", False))

    def init_state(self, current: torch.Tensor) -> Any:
        return self.inner.init_state(current)

    def coef(self, holder: _Holder) -> torch.Tensor:
        if holder._coef is None:
            if holder.spk_sum is None or holder.cur_sum is None:
                raise ConfigError("rate-gradient backward before any forward step")
            if self.mode == "bptr":
                holder._coef = (holder.spk_sum > 0).float()
            else:
                theta = _theta(self.inner)
                tau = float(getattr(self.inner, "alpha", 0.0))
                u = holder.cur_sum / holder.steps / theta
                mid = (1.0 - RGA_GAMMA + RGA_GAMMA * tau) / (tau + 1.0)
                g = torch.where(
                    (u >= 0) & (u <= 1 - tau),
                    torch.full_like(u, RGA_GAMMA),
                    torch.where((u >= 1 - tau) & (u <= 2), torch.full_like(u, mid), torch.zeros_like(u)),
                )
                holder._coef = g / theta
        return holder._coef

    def forward(self, current: torch.Tensor, state: Any, t: int) -> Any:
        if t == 0 or self._holder is None:
            self._holder = _Holder()
        holder = self._holder
        out = self.inner(current.detach(), state, t)
        spk = out.spk.detach()
        holder.add(spk, current.detach())
        spk_g = _LateScale.apply(spk, current, self, holder)
        return out._replace(spk=spk_g)


def _theta(neuron: nn.Module) -> float:
    th = getattr(neuron, "theta", None)
    if th is None:
        th = getattr(getattr(neuron, "config", None), "theta", 0.25)
    if torch.is_tensor(th):
        th = float(th.detach().float().mean())
    return float(th)


@contextlib.contextmanager
def gradient_mode(model_or_classifier: Any, mode: str) -> Iterator[None]:
    """Temporarily switch the backward rule of every spiking neuron (module docstring).

    ``bptt`` without a surrogate name is a no-op (works on any callable, e.g. an ANN).
    The original neurons / spike functions are restored on exit, also after an exception.
    """
    base, surrogate = parse_mode(mode)
    if base == "bptt" and surrogate is None:
        yield
        return
    nets = spiking_nets(model_or_classifier)
    if not nets:
        raise ConfigError(
            f"gradient mode {mode!r} needs a spiking model (a module with a `neurons` list); "
            f"got {type(model_or_classifier).__name__}"
        )
    restore: list[tuple[Any, ...]] = []
    try:
        for net in nets:
            for k, neuron in enumerate(net.neurons):
                if not _is_spiking(neuron):
                    continue
                if base == "bptt":
                    if hasattr(neuron, "spike_fn"):
                        restore.append(("fn", neuron, neuron.spike_fn))
                        neuron.spike_fn = make_surrogate(surrogate or "rect")
                else:
                    restore.append(("mod", net, k, neuron))
                    net.neurons[k] = RateGradNeuron(neuron, base)
        yield
    finally:
        for item in reversed(restore):
            if item[0] == "fn":
                item[1].spike_fn = item[2]
            else:
                item[1].neurons[item[2]] = item[3]
