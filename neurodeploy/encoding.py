"""Input encoders: images ``[B, *shape]`` in [0, 1] → time-first trains ``[T, B, *shape]``.

- :class:`BernoulliEncoder` — rate coding ``s[t] = 1[x > u[t]]``, ``u ~ U(0, 1)`` drawn per step
  and pixel (certify_snn's convention, strict '>'). Randomness comes from an explicit
  ``torch.Generator``: the same seed gives the same spikes. The backward pass is
  straight-through (∂s/∂x = 1), so white-box attacks get a gradient; use EoT over draws.
- :class:`DirectEncoder` — current coding: the analog image repeated T times.
- :class:`SpikePassThrough` — inputs that already are spikes ``[T, B, …]`` in {0, 1}.
- :class:`FixedBernoulliEncoder` — Bernoulli coding with one stored uniform map (deterministic).
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


@dataclass(frozen=True, eq=False)
class FixedBernoulliEncoder:
    """Bernoulli coding with one *stored* uniform map ``u`` ``[T, 1, *shape]``, shared by every
    batch element and every call: ``s[t] = 1[x > u[t]]`` is a deterministic function of x
    (certify_snn's shared-map convention, applied to evaluation). Attack comparisons between
    implementations use it so that every implementation sees the same function."""

    num_steps: int
    u: torch.Tensor
    name: str = "bernoulli-fixed"
    stochastic: bool = False

    def __post_init__(self) -> None:
        if self.u.dim() < 3 or self.u.shape[0] != self.num_steps or self.u.shape[1] != 1:
            raise ConfigError(
                f"fixed uniform map must be [T={self.num_steps}, 1, *shape], got "
                f"{tuple(self.u.shape)}"
            )

    @classmethod
    def draw(cls, num_steps: int, shape: tuple[int, ...], seed: int = 0) -> FixedBernoulliEncoder:
        """A map drawn from ``torch.Generator().manual_seed(seed)`` (CPU, float32)."""
        g = torch.Generator().manual_seed(int(seed))
        return cls(num_steps, torch.rand(num_steps, 1, *shape, generator=g))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        if tuple(x.shape[1:]) != tuple(self.u.shape[2:]):
            raise DataError(f"input shape {tuple(x.shape[1:])} does not match the fixed map's "
                            f"{tuple(self.u.shape[2:])}")
        u = self.u.to(device=x.device, dtype=x.dtype)
        return _BernoulliSTE.apply(x, u.expand(self.num_steps, *x.shape))


Encoder = BernoulliEncoder | DirectEncoder | SpikePassThrough | FixedBernoulliEncoder

ENCODERS = {"bernoulli": BernoulliEncoder, "direct": DirectEncoder, "spikes": SpikePassThrough}


def make_encoder(name: str, num_steps: int) -> Encoder:
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoding {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](num_steps)


def _check_image(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise DataError("input contains NaN or inf")
