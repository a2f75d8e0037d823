"""Input encoders: images ``[B, *shape]`` in [0, 1] → time-first trains ``[T, B, *shape]``.

- :class:`BernoulliEncoder` — rate coding ``s[t] = 1[x > u[t]]``, ``u ~ U(0, 1)`` drawn per step
  and pixel (certify_snn's convention, strict '>'). Randomness comes from an explicit
  ``torch.Generator``: the same seed gives the same spikes. The backward pass is
  straight-through (∂s/∂x = 1), so white-box attacks get a gradient; use EoT over draws.
- :class:`DirectEncoder` — current coding: the analog image repeated T times.
- :class:`SpikePassThrough` — inputs that already are spikes ``[T, B, …]`` in {0, 1}.
- :class:`FixedBernoulliEncoder` — Bernoulli coding with one stored uniform map (deterministic).
- :class:`KnownDrawEncoder` — Bernoulli coding with one stored uniform map *per example*
  (the host's map, :func:`host_uniform`): the *known draw* threat model, where the attacker
  knows the map the chip is fed. Rows are bound with :meth:`KnownDrawEncoder.select`.

**One host encoder, one seeding rule.** Everything that needs "the spikes this example gets"
(the audit, simulation, certification, the known-draw attacks) draws example ``i``'s uniform
map from ``torch.Generator().manual_seed(seed·1000003 + i)`` (:func:`host_uniform`), so the same
example gets the same map in every batch, on every backend and in every replay.

**Input gradients.** The forward pass of Bernoulli coding is always ``1[x > u]``. Its backward
is selected by ``input_grad`` (:func:`parse_input_grad`):

- ``ste`` — straight-through, ``∂s[t]/∂x = 1`` (the default; training uses it);
- ``sigmoid:k`` — a smooth surrogate of the threshold around the known ``u``:
  ``∂s[t]/∂x = k·σ(k(x − u[t]))·(1 − σ(k(x − u[t])))`` — the gradient concentrates on pixels
  whose value is close to a threshold of their map, i.e. where a small change flips a spike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.errors import ConfigError, DataError

HOST_SEED_STRIDE = 1_000_003


def host_uniform(
    index: torch.Tensor | list[int], seed: int, num_steps: int, shape: tuple[int, ...]
) -> torch.Tensor:
    """The host's uniform maps ``u`` ``[T, B, *shape]`` (float32, CPU) for examples ``index``.

    Example ``i`` draws from ``torch.Generator().manual_seed(seed·1000003 + i)``: its map does
    not depend on the batch it is in (module docstring)."""
    idx = index.tolist() if torch.is_tensor(index) else list(index)
    out = torch.empty((num_steps, len(idx), *shape), dtype=torch.float32)
    for j, i in enumerate(idx):
        g = torch.Generator().manual_seed(int(seed) * HOST_SEED_STRIDE + int(i))
        out[:, j] = torch.rand((num_steps, *shape), generator=g)
    return out


def host_spikes(x: torch.Tensor, index: torch.Tensor, seed: int, num_steps: int) -> torch.Tensor:
    """Bernoulli spikes ``1[x_i > u_i]`` with the host maps of :func:`host_uniform`: the same
    example gets the same spikes on every backend and in every replay, whatever batch it is in.
    Returns float32 ``[T, B, *shape]`` in {0, 1}."""
    u = host_uniform(index, seed, num_steps, tuple(x.shape[1:]))
    return (x.detach().float().cpu().unsqueeze(0) > u).float()


INPUT_GRADS = ("ste", "sigmoid")


def parse_input_grad(spec: str) -> tuple[str, float]:
    """``"ste"`` → ``("ste", 0)``; ``"sigmoid:k"`` → ``("sigmoid", k)`` (k > 0, default 20)."""
    name, _, arg = str(spec).strip().lower().partition(":")
    if name not in INPUT_GRADS:
        raise ConfigError(f"unknown input gradient {spec!r}; choose 'ste' or 'sigmoid[:k]'")
    if name == "ste":
        if arg:
            raise ConfigError(f"input gradient 'ste' takes no argument, got {spec!r}")
        return "ste", 0.0
    try:
        k = float(arg) if arg else 20.0
    except ValueError as exc:
        raise ConfigError(f"input gradient {spec!r}: {arg!r} is not a number") from exc
    if not k > 0:
        raise ConfigError(f"input gradient {spec!r}: the sharpness must be > 0")
    return "sigmoid", k


def threshold_grad_weight(x: torch.Tensor, u: torch.Tensor, k: float) -> torch.Tensor:
    """``∂s/∂x`` of the smooth threshold surrogate: ``k·σ'(k(x − u))`` ``[T, B, *shape]``."""
    sg = torch.sigmoid(k * (x.unsqueeze(0) - u))
    return k * sg * (1 - sg)


class _BernoulliSmooth(torch.autograd.Function):
    """Forward ``1[x > u]``; backward the smooth threshold surrogate (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor, k: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, u)
        ctx.k = k
        return (x.unsqueeze(0) > u).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, u = ctx.saved_tensors
        return (grad * threshold_grad_weight(x, u, ctx.k)).sum(0), None, None


def bernoulli_spikes(x: torch.Tensor, u: torch.Tensor, input_grad: str = "ste") -> torch.Tensor:
    """``1[x > u]`` ``[T, B, *shape]`` with the backward selected by ``input_grad``."""
    name, k = parse_input_grad(input_grad)
    if name == "ste":
        return _BernoulliSTE.apply(x, u)
    return _BernoulliSmooth.apply(x, u, k)


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

    def encode_with(self, x: torch.Tensor, u: torch.Tensor, input_grad: str = "ste") -> torch.Tensor:
        """Spikes ``1[x > u]`` for a given uniform map (shared-map certification uses this)."""
        return bernoulli_spikes(x, u, input_grad)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        return _BernoulliSTE.apply(x, self.uniform(x, generator))


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

    def uniform(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The stored map, broadcast to ``x``'s batch (``generator`` is not used)."""
        if tuple(x.shape[1:]) != tuple(self.u.shape[2:]):
            raise DataError(f"input shape {tuple(x.shape[1:])} does not match the fixed map's "
                            f"{tuple(self.u.shape[2:])}")
        return self.u.to(device=x.device, dtype=x.dtype).expand(self.num_steps, *x.shape)

    def encode_with(self, x: torch.Tensor, u: torch.Tensor, input_grad: str = "ste") -> torch.Tensor:
        return bernoulli_spikes(x, u, input_grad)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        return self.encode_with(x, self.uniform(x))


@dataclass(frozen=True, eq=False)
class KnownDrawEncoder:
    """Bernoulli coding with a stored uniform map per example, ``u`` ``[T, N, *shape]``.

    Row ``b`` of a batch is encoded with ``u[:, b]``: the encoder is *bound* to N examples, in
    order, and :meth:`select` binds it to a subset (what the attack engine and the attacks do
    when they work on the still-robust points). A batch of ``k·N`` rows (EoT folding) uses the
    maps tiled k times. Deterministic: the known-draw threat model has no randomness left."""

    num_steps: int
    u: torch.Tensor
    name: str = "bernoulli-known"
    stochastic: bool = False

    def __post_init__(self) -> None:
        if self.u.dim() < 3 or self.u.shape[0] != self.num_steps:
            raise ConfigError(f"known-draw maps must be [T={self.num_steps}, N, *shape], got "
                              f"{tuple(self.u.shape)}")

    @classmethod
    def from_host(cls, index: torch.Tensor | list[int], seed: int, num_steps: int,
                  shape: tuple[int, ...]) -> KnownDrawEncoder:
        """The host's maps (:func:`host_uniform`) of examples ``index``."""
        return cls(num_steps, host_uniform(index, seed, num_steps, shape))

    @property
    def rows(self) -> int:
        return int(self.u.shape[1])

    def select(self, idx: torch.Tensor) -> KnownDrawEncoder:
        """The encoder bound to rows ``idx`` (indices into this encoder's rows)."""
        return KnownDrawEncoder(self.num_steps, self.u[:, idx.to(self.u.device)])

    def uniform(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.u.shape[2:]):
            raise DataError(f"input shape {tuple(x.shape[1:])} does not match the known maps' "
                            f"{tuple(self.u.shape[2:])}")
        n = self.rows
        if n == 0 or x.shape[0] % n:
            raise DataError(f"a known-draw encoder bound to {n} examples got a batch of "
                            f"{x.shape[0]}: bind it with select() first")
        u = self.u.to(device=x.device, dtype=x.dtype)
        reps = x.shape[0] // n
        return u if reps == 1 else u.repeat(1, reps, *[1] * (u.dim() - 2))

    def encode_with(self, x: torch.Tensor, u: torch.Tensor, input_grad: str = "ste") -> torch.Tensor:
        return bernoulli_spikes(x, u, input_grad)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        return self.encode_with(x, self.uniform(x))


Encoder = (BernoulliEncoder | DirectEncoder | SpikePassThrough | FixedBernoulliEncoder
           | KnownDrawEncoder)

ENCODERS = {"bernoulli": BernoulliEncoder, "direct": DirectEncoder, "spikes": SpikePassThrough}


def make_encoder(name: str, num_steps: int) -> Encoder:
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoding {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](num_steps)


def _check_image(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise DataError("input contains NaN or inf")
