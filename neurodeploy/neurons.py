"""Spiking neurons with explicit state: one canonical LIF step, several thin modules.

The canonical LIF (certify_snn's, and Lava's LIF with ``du = 4095``), per layer and step t::

    m[t] = I[t] + α · m[t-1] · (1 − s[t-1])        # integrate; hard reset to 0
    s[t] = 1[m[t] + ξ[t] > θ[t]]                   # strict '>'

with ``I[t] = W·s_in[t] + b`` computed by the synapse, ``ξ = 0`` except for the noisy LIF of
TGO, and ``θ[t] = θ`` except for HoSNN's TA-LIF. ``m`` is stored *pre-reset*; the reset is
the factor ``(1 − s[t-1])`` at the next step, so ``m`` is also what bounds and NDS use.

Every neuron module has the same interface::

    state = neuron.init_state(current)                 # zeros, shaped like the current
    out = neuron(current, state, t)                    # -> StepOut(spk, mem, theta, state)

State is passed explicitly; no module keeps per-sample state between calls. The plain
:class:`LIF` is snntorch's ``snn.Leaky(reset_mechanism="zero")``; tests hold it equal to
:func:`lif_step`, which the adaptive and noisy neurons use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import snntorch as snn
import torch
from torch import nn

from neurodeploy.registry import Registry
from neurodeploy.surrogates import SpikeFn, make_surrogate


class StepOut(NamedTuple):
    """Result of one neuron step: spikes, pre-reset membrane, threshold used, next state."""

    spk: torch.Tensor
    mem: torch.Tensor
    theta: torch.Tensor | float
    state: tuple[torch.Tensor, ...]


def lif_step(
    current: torch.Tensor,
    mem_prev: torch.Tensor,
    spk_prev: torch.Tensor,
    alpha: float | torch.Tensor,
    theta: float | torch.Tensor,
    spike_fn: SpikeFn,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical LIF step (see module docstring). Returns ``(spk, mem)``.

    The reset factor uses ``spk_prev`` detached, as snntorch does (``mem_reset`` detaches);
    the forward values are unaffected.
    """
    mem = lif_integrate(current, mem_prev, spk_prev, alpha)
    return lif_fire(mem, theta, spike_fn, noise), mem


def lif_integrate(
    current: torch.Tensor,
    mem_prev: torch.Tensor,
    spk_prev: torch.Tensor,
    alpha: float | torch.Tensor,
) -> torch.Tensor:
    """Integrate half of :func:`lif_step`: ``m[t] = I[t] + α·m[t-1]·(1 − s[t-1])``.

    Split out so that neurons whose threshold depends on ``m[t]`` (HoSNN's TA-LIF) can compute
    ``θ[t]`` between integrating and firing while still using the one step body.
    """
    return current + alpha * mem_prev * (1.0 - spk_prev.detach())


def lif_fire(
    mem: torch.Tensor,
    theta: float | torch.Tensor,
    spike_fn: SpikeFn,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fire half of :func:`lif_step`: ``s[t] = 1[m[t] + ξ[t] > θ[t]]`` (surrogate backward)."""
    drive = mem - theta if noise is None else mem + noise - theta
    return spike_fn(drive)


class LIF(nn.Module):
    """Canonical LIF built on snntorch's ``Leaky(reset_mechanism="zero")``.

    State: ``(mem,)`` — snntorch's pre-reset membrane; snntorch derives the reset from it
    (``reset = 1[mem[t-1] > θ]``), which equals ``s[t-1]`` for a fixed threshold.
    """

    kind = "lif"

    def __init__(self, alpha: float, theta: float, surrogate: str = "rect") -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.theta = float(theta)
        self.surrogate = surrogate
        self.leaky = snn.Leaky(
            beta=self.alpha,
            threshold=self.theta,
            spike_grad=make_surrogate(surrogate),
            reset_mechanism="zero",
            init_hidden=False,
        )

    @property
    def spike_fn(self) -> SpikeFn:
        return self.leaky.spike_grad

    @spike_fn.setter
    def spike_fn(self, fn: SpikeFn) -> None:
        self.leaky.spike_grad = fn

    def init_state(self, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.zeros_like(current),)

    def forward(self, current: torch.Tensor, state: tuple[torch.Tensor, ...], t: int) -> StepOut:
        spk, mem = self.leaky(current, state[0])
        return StepOut(spk, mem, self.theta, (mem,))


class LeakyIntegrator(nn.Module):
    """Non-spiking output layer for the membrane readout: ``m[t] = I[t] + α·m[t-1]``."""

    kind = "li"

    def __init__(self, alpha: float, theta: float, surrogate: str = "rect") -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.theta = float(theta)
        self.spike_fn = make_surrogate(surrogate)

    def init_state(self, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.zeros_like(current),)

    def forward(self, current: torch.Tensor, state: tuple[torch.Tensor, ...], t: int) -> StepOut:
        mem = current + self.alpha * state[0]
        return StepOut(torch.zeros_like(mem), mem, self.theta, (mem,))


# Registry of hidden-layer neuron kinds. A factory takes (model_config, layer_index, out_shape)
# and returns a neuron module. The defense modules listed register theirs (``talif``, ``noisy``);
# they are imported on the first lookup of a kind not registered yet (neurodeploy.registry).
NeuronFactory = Callable[..., nn.Module]
NEURON_KINDS: Registry[NeuronFactory] = Registry(
    "neuron kind", modules=("neurodeploy.defenses.hosnn", "neurodeploy.defenses.tgo"))


def register_neuron(kind: str, factory: NeuronFactory) -> None:
    """Register a hidden-layer neuron kind (idempotent for the same factory)."""
    NEURON_KINDS[kind] = factory


register_neuron("lif", lambda cfg, index, shape: LIF(cfg.alpha, cfg.theta, cfg.surrogate))
