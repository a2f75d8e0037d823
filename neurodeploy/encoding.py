"""Input encoders: images ``[B, *shape]`` in [0, 1] → time-first trains ``[T, B, *shape]``.

- :class:`BernoulliEncoder` — rate coding ``s[t] = 1[x > u[t]]``, ``u ~ U(0, 1)`` drawn per step
  and pixel (certify_snn's convention, strict '>'). Randomness comes from an explicit
  ``torch.Generator``: the same seed gives the same spikes. The backward pass is
  straight-through (∂s/∂x = 1), so white-box attacks get a gradient; use EoT over draws.
- :class:`DirectEncoder` — current coding: the analog image repeated T times.
- :class:`SpikePassThrough` — inputs that already are spikes ``[T, B, …]`` in {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.errors import ConfigError, DataError


class _BernoulliSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (x.unsqueeze(0) > u).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad.sum(0), None


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@dataclass(frozen=True)
class BernoulliEncoder:
    """Rate coding with a shared uniform map ``u`` of shape ``[T, B, *shape]``."""

    num_steps: int
    name: str = "bernoulli"
    stochastic: bool = True

    def uniform(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw the uniform map ``u[t] ~ U(0,1)`` for a batch like ``x``."""
        return torch.rand(
            (self.num_steps, *x.shape), generator=generator, device=x.device, dtype=x.dtype
        )

    def encode_with(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Spikes ``1[x > u]`` for a given uniform map (shared-map certification uses this)."""
        return _BernoulliSTE.apply(x, u)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        return self.encode_with(x, self.uniform(x, generator))


@dataclass(frozen=True)
class DirectEncoder:
    """Current coding: ``x`` repeated over T steps (deterministic)."""

    num_steps: int
    name: str = "direct"
    stochastic: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        return x.unsqueeze(0).expand(self.num_steps, *x.shape)


@dataclass(frozen=True)
class SpikePassThrough:
    """Inputs that already are spike trains ``[T, B, …]`` with values in {0, 1}."""

    num_steps: int
    name: str = "spikes"
    stochastic: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[0] != self.num_steps:
            raise DataError(f"spike input has {x.shape[0]} steps, the model expects {self.num_steps}")
        if not torch.isfinite(x).all() or ((x != 0) & (x != 1)).any():
            raise DataError("spike input must contain only 0 and 1")
        return x


Encoder = BernoulliEncoder | DirectEncoder | SpikePassThrough

ENCODERS = {"bernoulli": BernoulliEncoder, "direct": DirectEncoder, "spikes": SpikePassThrough}


def make_encoder(name: str, num_steps: int) -> Encoder:
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoding {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](num_steps)


def _check_image(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise DataError("input contains NaN or inf")
