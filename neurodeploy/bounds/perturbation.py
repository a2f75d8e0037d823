"""Perturbation sets of the network input, turned into a box of input spikes per step.

Every set maps a clean input to an :class:`InputBox` ``(lo, hi)`` of shape ``[T', B, *shape]``
such that every input spike train the set allows lies in ``lo ≤ s ≤ hi``; the bounds of
:mod:`neurodeploy.bounds.ibp` / :mod:`~neurodeploy.bounds.crown` then hold for all of them.
Each set also *samples* members (for the soundness tests).

Sets
----
:class:`BernoulliLinfSet` — digital input under Bernoulli rate coding, the paper's convention
    (Liang et al. 2022 §3.2, eqs. 13–14; certify_snn ``snn_bound``). One uniform map
    ``u[t] ~ U(0,1)`` is drawn per step and pixel and *shared* by every member of the set::

        S(x, ε; u) = { s[t] = 1[x' > u[t]] : x' ∈ [0,1]^n, ‖x' − x‖∞ ≤ ε }
        lo[t] = 1[x − ε > u[t]],  hi[t] = 1[x + ε > u[t]]          (strict '>')

    ε is the half-width of the ℓ∞ ball (certify_snn's code; the paper's text writes the
    full width as ε). The certificate holds for this draw u only; a different draw gives a
    different set, so verified error is a random quantity (report the spread over seeds).
:class:`SpikeFlipSet` — binary spike input ``[T, B, …]`` with *flippable positions*: every
    position of the mask may take either value, all others keep their value::

        S(s, F) = { s' ∈ {0,1}^n : s'_i = s_i for every i ∉ F }      (any subset of F flips)

    so the set is the worst case over all flip patterns inside F (an ℓ0 ball of radius |F|
    restricted to F). ``mode="all"`` makes every position flippable (vacuous for real inputs,
    useful for tiny tests); ``mode="random"`` draws F with P(i ∈ F) = ε independently
    (certify_snn's N-MNIST convention, paper eq. 12 — a random flip set, *not* a worst-case
    ℓ0 ball); ``mode="mask"`` takes F from the caller.
:class:`AnalogLinfSet` — direct (current) coding: the analog box ``[x − ε, x + ε] ∩ [0, 1]``
    at every step (certify_snn's ``*_ENCODE`` models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.errors import ConfigError, DataError


@dataclass
class InputBox:
    """``lo ≤ s ≤ hi`` for the input of every certified step, ``[T', B, *shape]``.

    ``context`` keeps what the set needs to sample members again (the uniform map, the mask).
    """

    lo: torch.Tensor
    hi: torch.Tensor
    context: dict

    @property
    def steps(self) -> int:
        return int(self.lo.shape[0])

    @property
    def unstable_fraction(self) -> float:
        return float((self.hi - self.lo).mean())


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not (eps >= 0.0) or eps != eps:
        raise ConfigError(f"perturbation budget eps must be >= 0, got {eps}")
    return eps


@dataclass(frozen=True)
class BernoulliLinfSet:
    """ℓ∞ ball of half-width ``eps`` around a digital input, Bernoulli-coded with one shared
    uniform map (see module docstring)."""

    eps: float

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def box(
        self,
        x: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        uniform: torch.Tensor | None = None,
    ) -> InputBox:
        """``x`` ``[B, *shape]`` in [0, 1] → box ``[steps, B, *shape]``; draws ``u`` unless given."""
        if uniform is None:
            uniform = torch.rand(
                (steps, *x.shape), generator=generator, device=x.device, dtype=x.dtype
            )
        if tuple(uniform.shape) != (steps, *x.shape):
            raise DataError(f"uniform map has shape {tuple(uniform.shape)}, expected "
                            f"{(steps, *x.shape)}")
        lo = (x.unsqueeze(0) - self.eps > uniform).to(x.dtype)
        hi = (x.unsqueeze(0) + self.eps > uniform).to(x.dtype)
        return InputBox(lo, hi, {"uniform": uniform, "x": x})

    def sample(
        self, box: InputBox, n: int, generator: torch.Generator | None = None,
        corners: bool = False,
    ) -> torch.Tensor:
        """``n`` members per input: ``[n, T', B, *shape]``, from x' uniform in the ball (or at
        its corners x ± ε) clipped to [0, 1], coded with the box's uniform map."""
        x, u = box.context["x"], box.context["uniform"]
        shape = (n, *x.shape)
        if corners:
            delta = (torch.randint(0, 2, shape, generator=generator, device=x.device)
                     .to(x.dtype) * 2 - 1) * self.eps
        else:
            delta = (torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
                     * 2 - 1) * self.eps
        xp = (x.unsqueeze(0) + delta).clamp(0.0, 1.0)
        return (xp.unsqueeze(1) > u.unsqueeze(0)).to(x.dtype)


SPIKE_FLIP_MODES = ("random", "all", "mask")


@dataclass(frozen=True)
class SpikeFlipSet:
    """Flippable positions of a spike input (see module docstring).

    ``mode="random"``: each position is flippable with probability ``eps`` (certify_snn);
    ``mode="all"``: every position; ``mode="mask"``: pass ``mask`` to :meth:`box`.
    """

    eps: float = 0.0
    mode: str = "random"

    def __post_init__(self) -> None:
        _check_eps(self.eps)
        if self.mode not in SPIKE_FLIP_MODES:
            raise ConfigError(f"unknown spike flip mode {self.mode!r}; choose {SPIKE_FLIP_MODES}")
        if self.mode == "random" and self.eps > 1:
            raise ConfigError(f"flip probability eps must be <= 1, got {self.eps}")

    def box(
        self,
        s: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> InputBox:
        """``s`` ``[T, B, *shape]`` in {0, 1} → box over its first ``steps`` steps."""
        if steps > s.shape[0]:
            raise DataError(f"spike input has {s.shape[0]} steps, {steps} requested")
        if ((s != 0) & (s != 1)).any():
            raise DataError("spike input must contain only 0 and 1")
        s = s[:steps]
        if self.mode == "mask":
            if mask is None:
                raise ConfigError("SpikeFlipSet(mode='mask') needs a mask of flippable positions")
            flip = mask[:steps].to(torch.bool).expand_as(s)
        elif self.mode == "all":
            flip = torch.ones_like(s, dtype=torch.bool)
        else:
            flip = torch.rand(s.shape, generator=generator, device=s.device) < self.eps
        lo = torch.where(flip, torch.zeros_like(s), s)
        hi = torch.where(flip, torch.ones_like(s), s)
        return InputBox(lo, hi, {"s": s, "flip": flip})

    def sample(
        self, box: InputBox, n: int, generator: torch.Generator | None = None,
        corners: bool = False,
    ) -> torch.Tensor:
        """``n`` members: random subsets of the flippable positions flipped, ``[n, T', B, …]``.
        ``corners=True`` flips each flippable position with probability 1/2 (the default draws
        the flip probability per member uniformly, so sparse and dense flips both occur)."""
        s, flip = box.context["s"], box.context["flip"]
        shape = (n, *s.shape)
        if corners:
            p = torch.full((n,) + (1,) * s.dim(), 0.5, device=s.device)
        else:
            p = torch.rand((n,) + (1,) * s.dim(), generator=generator, device=s.device)
        do = (torch.rand(shape, generator=generator, device=s.device) < p) & flip.unsqueeze(0)
        return torch.where(do, 1 - s.unsqueeze(0), s.unsqueeze(0))


@dataclass(frozen=True)
class AnalogLinfSet:
    """ℓ∞ ball for direct (current) coding: ``[max(x − ε, 0), min(x + ε, 1)]`` at every step."""

    eps: float

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def box(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None
            ) -> InputBox:
        lo = (x - self.eps).clamp(0.0, 1.0).unsqueeze(0).expand(steps, *x.shape)
        hi = (x + self.eps).clamp(0.0, 1.0).unsqueeze(0).expand(steps, *x.shape)
        return InputBox(lo.contiguous(), hi.contiguous(), {"x": x})

    def sample(self, box: InputBox, n: int, generator: torch.Generator | None = None,
               corners: bool = False) -> torch.Tensor:
        x = box.context["x"]
        if corners:
            d = (torch.randint(0, 2, (n, *x.shape), generator=generator, device=x.device)
                 .to(x.dtype) * 2 - 1) * self.eps
        else:
            d = (torch.rand((n, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
                 * 2 - 1) * self.eps
        xp = (x.unsqueeze(0) + d).clamp(0.0, 1.0)
        return xp.unsqueeze(1).expand(n, box.steps, *x.shape).contiguous()


PerturbationSet = BernoulliLinfSet | SpikeFlipSet | AnalogLinfSet


def default_set(encoding: str, eps: float) -> PerturbationSet:
    """The set matching a model's input encoding (Bernoulli → ℓ∞ shared map, spikes → random
    flip set with probability ε, direct → analog ℓ∞)."""
    table = {"bernoulli": BernoulliLinfSet, "spikes": SpikeFlipSet, "direct": AnalogLinfSet}
    if encoding not in table:
        raise ConfigError(f"no perturbation set for encoding {encoding!r}")
    return table[encoding](eps)
