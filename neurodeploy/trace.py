"""One backend contract: ``run(spikes [T, B, …], record) -> Trace`` for every way of running a
network — the float model (:class:`~neurodeploy.models.SpikingNet`), the bit-exact emulator
(:class:`~neurodeploy.sims.emulator.Emulator`), the hardware twin
(:class:`~neurodeploy.sims.twin.HardwareTwin`) and Lava
(:class:`~neurodeploy.sims.backends.LavaBackend`).

All tensors are time-first. Spikes go in as ``[T, B, *input_shape]`` in {0, 1} (the host's
encoding: :func:`neurodeploy.encoding.host_spikes`); a :class:`Trace` comes out. Membranes and
thresholds are in each backend's own units: float units for the float model, v units
(``vth << threshold_shift``) for the integer backends (divide by the plan format's
:meth:`~neurodeploy.exporters.profiles.FixedPointFormat.v_per_float` to compare).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Trace:
    """What one run of a backend produced.

    Attributes
    ----------
    out_spikes : ``[T, B, classes]`` spikes of the output layer (always).
    logits : ``[B, classes]`` the readout (spike counts for the integer backends and Lava; the
        model's readout — count, rate or membrane mean — for the float model).
    spikes : per layer ``[T, B, *shape_k]`` (filled when run with ``record``).
    v : per layer ``[T, B, *shape_k]`` membrane *before* the step's reset — the value the spike
        decision compared (float model and twin with ``record``; the emulator with
        ``record_v``; empty when not recorded or not observable, e.g. Lava).
    theta : per layer the threshold ``[T, B, *shape_k]`` of adaptive neurons, or None for a
        fixed threshold (the float model fills every layer's, as it always has).
    v_after : per layer the membrane *after* the reset, i.e. the integer state carried to the
        next step (the emulator with ``record_v``).
    backend : ``float``, ``emulator``, ``twin`` or ``lava``.
    meta : backend notes (Lava: timings and schedule).
    """

    out_spikes: torch.Tensor
    logits: torch.Tensor
    spikes: tuple[torch.Tensor, ...] = ()
    v: tuple[torch.Tensor, ...] = ()
    theta: tuple[torch.Tensor | None, ...] = ()
    v_after: tuple[torch.Tensor, ...] = ()
    backend: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    # ---- the names of the former per-backend result types (read-only views) ----
    @property
    def counts(self) -> torch.Tensor:
        """Output spike counts ``[B, classes]`` (int64)."""
        return self.out_spikes.sum(0, dtype=torch.int64)

    @property
    def layer_spikes(self) -> list[torch.Tensor]:
        """Former ``EmulatorResult.layer_spikes``: :attr:`spikes`."""
        return list(self.spikes)

    @property
    def layer_theta(self) -> list[torch.Tensor | None]:
        """Former ``EmulatorResult.layer_theta``: :attr:`theta`."""
        return list(self.theta)

    @property
    def layer_v(self) -> list[torch.Tensor]:
        """Former ``EmulatorResult.layer_v`` (after reset): :attr:`v_after`."""
        return list(self.v_after)

    @property
    def mems(self) -> list[torch.Tensor]:
        """Former ``SNNTrace.mems`` (before reset): :attr:`v`."""
        return list(self.v)

    @property
    def thetas(self) -> list[torch.Tensor | None]:
        """Former ``SNNTrace.thetas``: :attr:`theta`."""
        return list(self.theta)


@runtime_checkable
class Backend(Protocol):
    """Anything that runs a network on host spikes."""

    name: str

    def run(self, spikes: torch.Tensor, record: bool = False) -> Trace:
        """Run on ``spikes`` ``[T, B, *input_shape]``; ``record`` keeps every layer."""
        ...
