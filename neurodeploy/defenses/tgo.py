"""TGO (Wang et al., ICLR 2026): Threshold Guarding Optimization.

Two parts (research/seeds_code.md §3; no public code exists, choices below are ours):

1. **Membrane-potential constraint** (MC), per spiking layer l with N_l neurons::

       C_l = 1/(T·B·N_l) · Σ_{t,b,i} max(0, δ − |m_i[t] − θ_i[t]|)
       L   = L_task + λ(p) · Σ_l C_l,      λ(p) = λ_max · (1 − cos(π p)) / 2

   with p ∈ [0, 1] the training progress (cosine annealing from 0 up to λ_max). ``m`` is the
   **pre-reset** membrane (the potential the firing decision sees, SpikingJelly's H[t]; the
   paper's flip-probability theory is about it, and a post-reset V would ignore every neuron
   that fired). Every spiking layer is penalised (the output LIF included; a non-spiking
   membrane readout is not). The hinge pushes potentials out of the band ``|m − θ| < δ``.

2. **Noisy LIF** (:class:`NoisyLIF`, neuron kind ``"noisy"``)::

       m[t] = I[t] + α · m[t-1] · (1 − s[t-1])
       s[t] = 1[m[t] + ξ[t] > θ],   ξ[t] ~ N(0, σ²) i.i.d. per neuron, step and sample

   The reset uses the spike actually emitted. Noise is on while training; at inference it is
   off unless ``noise_at_inference`` (then the model is stochastic: ``stochastic = True`` and
   every evaluation must use EoT). With the noise off it is the plain LIF exactly.
   ξ is drawn from the neuron's ``generator`` attribute, which
   :class:`~neurodeploy.classifier.SNNClassifier` binds to its own seeded generator on every
   forward pass (``None`` → torch's global generator).

Defaults and why (the paper reports neither δ nor σ; its V_th = 1, ours θ = 0.25):
δ = 0.1 = 0.4·θ and σ = 0.1 = 0.4·θ; λ_max = 100. Our constraint is a *mean* over every
(sample, step, neuron) entry, and only the ~10 % of entries inside the band carry gradient, so
the paper's λ_max = 0.4–0.6 (at its own, unreported normalisation) does not transfer: on digits
(FC128-FC64-FC10, T = 8) λ_max = 2 and 10 moved PGD-7 accuracy by < 1 point, λ_max = 50 / 100
by +14 / +17 points at ε = 0.1 with clean accuracy unchanged, and δ = 0.1 beat δ = 0.05
(sweep in benchmarks/RESULTS_defenses.md). σ = 0.1 (noise in training only) was within a
few points of σ = 0 there; σ = 0.2 cost PGD accuracy. Caution: those gains were measured
with the rect surrogate; a large λ_max pushes membranes out of its window and part of the
gain is gradient masking (under an atan-surrogate PGD the digits gain shrinks to ≈ +11
points; on MNIST there was no gain) — evaluate TGO models with several surrogates
(``grad_mode="bptt:atan"``) and the masking checks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.defenses import options_to_config
from neurodeploy.errors import ConfigError
from neurodeploy.neurons import StepOut, lif_step, register_neuron
from neurodeploy.surrogates import make_surrogate
from neurodeploy.training.defense import BatchContext, Defense, register_defense

DEFAULT_SIGMA = 0.1
DEFAULT_DELTA = 0.1
DEFAULT_LAMBDA_MAX = 100.0


class NoisyLIF(nn.Module):
    """LIF population with Gaussian membrane noise at the firing decision (see module doc).

    Parameters
    ----------
    alpha, theta:
        Membrane decay α and threshold θ.
    sigma:
        Noise standard deviation σ ≥ 0 (σ = 0: plain LIF).
    surrogate:
        Surrogate for ∂s/∂(m + ξ − θ).
    noise_at_inference:
        Keep the noise on in eval mode (then the model is stochastic; evaluate with EoT).

    State: ``(mem, spk)`` of the previous step.
    """

    kind = "noisy"

    def __init__(
        self,
        alpha: float,
        theta: float,
        sigma: float = DEFAULT_SIGMA,
        surrogate: str = "rect",
        noise_at_inference: bool = False,
    ) -> None:
        super().__init__()
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ConfigError(f"noisy LIF sigma must be a finite number >= 0, got {sigma}")
        self.alpha = float(alpha)
        self.theta = float(theta)
        self.sigma = float(sigma)
        self.surrogate = surrogate
        self.spike_fn = make_surrogate(surrogate)
        self.noise_at_inference = bool(noise_at_inference)
        self.generator: torch.Generator | None = None

    @property
    def noise_active(self) -> bool:
        """Whether ξ is drawn now: σ > 0 and (training, or noise kept at inference)."""
        return self.sigma > 0 and (self.training or self.noise_at_inference)

    @property
    def stochastic(self) -> bool:
        return self.noise_active

    def init_state(self, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros_like(current)
        return (zeros, zeros)

    def forward(self, current: torch.Tensor, state: tuple[torch.Tensor, ...], t: int) -> StepOut:
        mem_prev, spk_prev = state
        noise = None
        if self.noise_active:
            noise = self.sigma * torch.randn(
                current.shape, generator=self.generator, device=current.device, dtype=current.dtype
            )
        spk, mem = lif_step(current, mem_prev, spk_prev, self.alpha, self.theta, self.spike_fn, noise)
        return StepOut(spk, mem, self.theta, (mem, spk))

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, theta={self.theta}, sigma={self.sigma}, "
            f"noise_at_inference={self.noise_at_inference}"
        )


_NOISY_PARAMS = ("sigma", "noise_at_inference")


def _noisy_factory(cfg: Any, index: int, shape: Sequence[int]) -> NoisyLIF:
    unknown = set(cfg.neuron_params) - set(_NOISY_PARAMS)
    if unknown:
        raise ConfigError(
            f"neuron 'noisy': unknown neuron_params {sorted(unknown)}; known: {list(_NOISY_PARAMS)}"
        )
    return NoisyLIF(
        cfg.alpha,
        cfg.theta,
        float(cfg.neuron_params.get("sigma", DEFAULT_SIGMA)),
        cfg.surrogate,
        bool(cfg.neuron_params.get("noise_at_inference", False)),
    )


register_neuron("noisy", _noisy_factory)


def convert_to_noisy_(model: Any, sigma: float, noise_at_inference: bool = False) -> Any:
    """Replace the hidden LIF populations of a plain-LIF model by :class:`NoisyLIF` in place.

    The output layer stays plain LIF; ``model.config`` becomes ``neuron="noisy"`` with the
    noise parameters, so checkpoints rebuild the same model. Returns ``model``.
    """
    cfg = model.config
    if cfg.neuron != "lif":
        raise ConfigError(f"noisy-LIF conversion needs neuron='lif', the model has {cfg.neuron!r}")
    for k in range(len(model.neurons) - 1):
        neuron = NoisyLIF(cfg.alpha, cfg.theta, sigma, cfg.surrogate, noise_at_inference)
        neuron.train(model.training)
        model.neurons[k] = neuron
    model.config = dataclasses.replace(
        cfg,
        neuron="noisy",
        neuron_params={"sigma": float(sigma), "noise_at_inference": bool(noise_at_inference)},
    )
    return model


def set_noise_at_inference_(model: Any, on: bool) -> None:
    """Switch inference noise of every :class:`NoisyLIF` (and the config) — for evaluating a
    TGO model both with and without noise."""
    for n in model.neurons:
        if isinstance(n, NoisyLIF):
            n.noise_at_inference = bool(on)
    if model.config.neuron == "noisy":
        params = {**model.config.neuron_params, "noise_at_inference": bool(on)}
        model.config = dataclasses.replace(model.config, neuron_params=params)


# ----------------------------------------------------------------------------- constraint


def spiking_layers(model: Any) -> list[int]:
    """Indices of the layers whose neurons spike (every one but a membrane readout)."""
    return [k for k, n in enumerate(model.neurons) if getattr(n, "kind", "") != "li"]


def _as_tensor(theta: Any, like: torch.Tensor) -> torch.Tensor:
    return theta if torch.is_tensor(theta) else torch.full_like(like, float(theta))


def membrane_constraint(trace: Any, delta: float, layers: Sequence[int]) -> torch.Tensor:
    """TGO's MC term ``Σ_l mean_{t,b,i} max(0, δ − |m_l[t] − θ_l[t]|)`` on pre-reset membranes.

    ``trace`` is an :class:`~neurodeploy.models.SNNTrace` recorded with ``record=True``.
    """
    if not delta > 0:
        raise ConfigError(f"TGO delta must be > 0, got {delta}")
    if not trace.mems:
        raise ConfigError("membrane_constraint needs a trace recorded with record=True")
    total = trace.logits.new_zeros(())
    for k in layers:
        mem, theta = trace.mems[k], trace.thetas[k]
        total = total + F.relu(delta - (mem - _as_tensor(theta, mem)).abs()).mean()
    return total


def cosine_lambda(progress: float, lambda_max: float) -> float:
    """λ(p) = λ_max · (1 − cos(π p)) / 2 for p ∈ [0, 1] (clipped): 0 at the start, λ_max at
    the end."""
    p = min(max(float(progress), 0.0), 1.0)
    return lambda_max * (1.0 - math.cos(math.pi * p)) / 2.0


@dataclass(frozen=True)
class ProximalShare:
    """Share of (sample, step, neuron) entries with ``|m − θ| < δ``, overall and per layer."""

    overall: float
    per_layer: tuple[float, ...]
    delta: float

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "per_layer": list(self.per_layer), "delta": self.delta}


@torch.no_grad()
def proximal_share(
    classifier: Any,
    x: torch.Tensor,
    delta: float = DEFAULT_DELTA,
    batch_size: int = 256,
    seed: int = 0,
    layers: Sequence[int] | None = None,
) -> ProximalShare:
    """Threshold-proximal share of a model on images ``x`` (eval mode, seeded encoding).

    Counts entries of the pre-reset membrane with ``|m[t] − θ[t]| < δ`` over every spiking
    layer (or ``layers``); ``overall`` weights layers by their number of neurons.
    """
    from neurodeploy.encoding import make_encoder, make_generator

    if hasattr(classifier, "model") and hasattr(classifier, "encoder"):
        model, encoder = classifier.model, classifier.encoder
    else:
        model = classifier
        encoder = make_encoder(model.config.encoding, model.config.num_steps)
    layers = list(spiking_layers(model) if layers is None else layers)
    device = next(model.parameters()).device
    gen = make_generator(seed, device)
    for n in model.neurons:
        if hasattr(n, "generator"):
            n.generator = gen
    was_training = model.training
    model.eval()
    hits = [0] * len(layers)
    counts = [0] * len(layers)
    try:
        for i in range(0, x.shape[0], batch_size):
            trace = model.run(encoder(x[i : i + batch_size].to(device), gen), record=True)
            for j, k in enumerate(layers):
                mem = trace.mems[k]
                near = (mem - _as_tensor(trace.thetas[k], mem)).abs() < delta
                hits[j] += int(near.sum())
                counts[j] += near.numel()
    finally:
        model.train(was_training)
    per = tuple(h / c if c else 0.0 for h, c in zip(hits, counts, strict=True))
    overall = sum(hits) / max(sum(counts), 1)
    return ProximalShare(overall, per, float(delta))


# ----------------------------------------------------------------------------- defense


@dataclass(frozen=True)
class TGOConfig:
    """Options of the ``tgo`` defense (keys ``tgo_<field>`` in the defense options).

    ``sigma = 0`` gives MC only (the model keeps its plain LIF neurons).
    """

    delta: float = DEFAULT_DELTA
    lambda_max: float = DEFAULT_LAMBDA_MAX
    sigma: float = DEFAULT_SIGMA
    noise_at_inference: bool = False
    proximal_samples: int = 512

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ConfigError(f"tgo_delta must be > 0, got {self.delta}")
        if not self.lambda_max >= 0:
            raise ConfigError(f"tgo_lambda_max must be >= 0, got {self.lambda_max}")
        if not self.sigma >= 0:
            raise ConfigError(f"tgo_sigma must be >= 0, got {self.sigma}")
        if self.proximal_samples < 0:
            raise ConfigError(f"tgo_proximal_samples must be >= 0, got {self.proximal_samples}")


class TGODefense(Defense):
    """TGO training: task CE + λ(p)·MC on every spiking layer, with noisy LIF hidden neurons.

    :meth:`prepare` turns a plain-LIF model into a noisy-LIF model (σ > 0) in place and
    records the threshold-proximal share of the starting model on the first
    ``proximal_samples`` training images.
    """

    name = "tgo"

    def __init__(self, config: TGOConfig | None = None) -> None:
        self.config = config or TGOConfig()
        self.info: dict[str, Any] = {}

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        model = classifier.model
        cfg = self.config
        if cfg.proximal_samples and "proximal_share_start" not in self.info:
            share = proximal_share(classifier, train_x[: cfg.proximal_samples], cfg.delta)
            self.info["proximal_share_start"] = share.overall
        kind = model.config.neuron
        if kind == "lif" and cfg.sigma > 0:
            convert_to_noisy_(model, cfg.sigma, cfg.noise_at_inference)
        elif kind == "noisy":
            have = float(model.config.neuron_params.get("sigma", DEFAULT_SIGMA))
            if not math.isclose(have, cfg.sigma):
                raise ConfigError(
                    f"tgo: the model's noisy neurons have sigma={have}, the defense asks "
                    f"tgo_sigma={cfg.sigma}"
                )
            set_noise_at_inference_(model, cfg.noise_at_inference)
        elif cfg.sigma > 0:
            raise ConfigError(
                f"tgo with noise (tgo_sigma={cfg.sigma}) needs a plain LIF model, got "
                f"neuron={kind!r}; use tgo_sigma=0 for the membrane constraint alone"
            )

    def loss(self, ctx: BatchContext) -> tuple[torch.Tensor, dict[str, float]]:
        clf = ctx.classifier
        trace = clf.model.run(clf.encode(ctx.x), record=True)
        task = F.cross_entropy(trace.logits, ctx.y)
        layers = spiking_layers(clf.model)
        mc = membrane_constraint(trace, self.config.delta, layers)
        lam = cosine_lambda(ctx.progress, self.config.lambda_max)
        loss = task + lam * mc
        with torch.no_grad():
            near = sum(
                int(((trace.mems[k] - _as_tensor(trace.thetas[k], trace.mems[k])).abs()
                     < self.config.delta).sum())
                for k in layers
            )
            total = sum(trace.mems[k].numel() for k in layers)
        acc = (trace.logits.argmax(1) == ctx.y).float().mean().item()
        return loss, {
            "loss": loss.item(),
            "task_loss": task.item(),
            "mc": mc.item(),
            "lambda": lam,
            "proximal_share": near / max(total, 1),
            "train_acc": acc,
        }

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"defense": self.name, "tgo": {**dataclasses.asdict(self.config), **self.info}}


def _tgo_factory(options: dict[str, Any]) -> TGODefense:
    return TGODefense(options_to_config(TGOConfig, "tgo", options))


register_defense("tgo", _tgo_factory)
