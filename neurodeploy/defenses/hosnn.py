"""HoSNN (Geng & Li): threshold-adapting LIF (TA-LIF) neurons anchored on the NDS.

TA-LIF, per hidden neuron i, layer input current ``I[t] = W·s_in[t] + b``::

    m[t] = I[t] + α · m[t-1] · (1 − s[t-1])               # canonical LIF integrate, hard reset
    θ[t] = θ[t-1] + θ_v · (m[t] − NDS[t])                  # threshold update BEFORE firing
    s[t] = 1[m[t] > θ[t]]                                  # strict '>'
    θ[-1] = θ_base (the model's θ), m[-1] = s[-1] = 0      # re-initialised for every sample

``m`` is the pre-reset membrane; θ is a pure integral controller (no leak back to θ_base, not
reset by spikes). ``θ_v ≥ 0`` (HoSNN's ``1/τ_θ``) is one learnable value per neuron, clamped
to ≥ 0 after every optimiser step (θ_v = 0 is the plain LIF). ``NDS[t]`` — the *Neural Dynamic
Signature* — is the mean pre-reset membrane potential of the neuron at step t over the clean
training data, collected from a clean-trained plain-LIF model with the same architecture
(:func:`collect_nds`). It is a frozen buffer of the neuron module, so it is saved with the
model's ``state_dict`` and every checkpoint.

Differences from the authors' code (research/seeds_code.md §2), chosen on purpose:

- gradients are exact autograd through θ (not detached) and the surrogate is centred on the
  adaptive θ[t]: white-box attacks see the threshold dynamics (the paper's stated threat
  model, "the attacker can know all θ and use it in the gradient"); the released code's
  backward ignores θ;
- the canonical LIF of this project (α = 0.25, θ = 0.25, no PSC filter) replaces HoSNN's
  τ_m = 5 / τ_s = 3 neuron; θ_v is dimensionless, so the paper's initial value carries over:
  θ_v init = 1/τ_v = 0.2 (τ_v = 5, the paper's FashionMNIST/SVHN/CIFAR-10 setting);
- the output layer stays plain LIF (as in HoSNN).

Fixed-point TA-LIF on chip is a later issue; it must mirror exactly the three lines above.

Usage: ``neurodeploy train --defense hosnn --init-from lif.pt`` — the HoSNN defense's
:meth:`HoSNNDefense.prepare` takes the clean-trained plain-LIF model it is given, collects
its NDS on the training images, and swaps the hidden LIF populations for TA-LIF populations
*in place* (weights kept, ``model.config.neuron`` becomes ``"talif"``). A model that already
is TA-LIF (resume, or ``--init-from hosnn.pt``) is kept as is. A plain-LIF model whose clean
training accuracy is below ``hosnn_min_clean_acc`` is refused (its NDS would be meaningless):
train a plain LIF first (``--defense none``) and pass it with ``--init-from``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neurodeploy.defenses import options_to_config
from neurodeploy.errors import ConfigError
from neurodeploy.neurons import StepOut, lif_fire, lif_integrate, register_neuron
from neurodeploy.surrogates import make_surrogate
from neurodeploy.training.defense import Defense, register_defense

#: θ_v initial value, 1/τ_v with τ_v = 5 (HoSNN appendix C, FashionMNIST/SVHN/CIFAR-10).
DEFAULT_THETA_V_INIT = 0.2


class TALIF(nn.Module):
    """Threshold-adapting LIF population (see module docstring for the equations).

    Parameters
    ----------
    alpha, theta:
        Membrane decay α and base threshold θ_base (the model's θ).
    shape:
        Neuron shape of the population (``out_shape`` of the layer).
    num_steps:
        T; the NDS buffer has shape ``[T, *shape]``.
    surrogate:
        Surrogate name for ∂s/∂(m − θ) (:func:`~neurodeploy.surrogates.make_surrogate`).
    theta_v_init:
        Initial θ_v (≥ 0) of every neuron.

    State: ``(mem, spk, theta)`` of the previous step, each shaped like the current.
    """

    kind = "talif"

    def __init__(
        self,
        alpha: float,
        theta: float,
        shape: Sequence[int],
        num_steps: int,
        surrogate: str = "rect",
        theta_v_init: float = DEFAULT_THETA_V_INIT,
    ) -> None:
        super().__init__()
        if not theta_v_init >= 0:
            raise ConfigError(f"TA-LIF theta_v_init must be >= 0, got {theta_v_init}")
        self.alpha = float(alpha)
        self.theta = float(theta)
        self.shape = tuple(int(s) for s in shape)
        self.surrogate = surrogate
        self.spike_fn = make_surrogate(surrogate)
        self.theta_v = nn.Parameter(torch.full(self.shape, float(theta_v_init)))
        self.register_buffer("nds", torch.zeros(int(num_steps), *self.shape))

    @property
    def num_steps(self) -> int:
        return int(self.nds.shape[0])

    def set_nds(self, nds: torch.Tensor) -> None:
        """Store the NDS ``[T, *shape]`` (copied into the buffer; frozen, no gradient)."""
        if tuple(nds.shape) != tuple(self.nds.shape):
            raise ConfigError(
                f"NDS has shape {tuple(nds.shape)}, this TA-LIF population needs "
                f"{tuple(self.nds.shape)} ([T, *neuron_shape])"
            )
        if not torch.isfinite(nds).all():
            raise ConfigError("NDS contains NaN or inf")
        with torch.no_grad():
            self.nds.copy_(nds.to(self.nds))

    def clamp_theta_v_(self) -> None:
        """Project θ_v onto ``θ_v ≥ 0`` (after every optimiser step)."""
        with torch.no_grad():
            self.theta_v.clamp_(min=0.0)

    def init_state(self, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros_like(current)
        return (zeros, zeros, torch.full_like(current, self.theta))

    def forward(self, current: torch.Tensor, state: tuple[torch.Tensor, ...], t: int) -> StepOut:
        if not 0 <= t < self.num_steps:
            raise ConfigError(
                f"TA-LIF step t={t} outside its NDS (T = {self.num_steps}); run the model with "
                f"the number of steps it was built for"
            )
        mem_prev, spk_prev, theta_prev = state
        mem = lif_integrate(current, mem_prev, spk_prev, self.alpha)
        theta = theta_prev + self.theta_v * (mem - self.nds[t])  # not detached: attacks see it
        spk = lif_fire(mem, theta, self.spike_fn)
        return StepOut(spk, mem, theta, (mem, spk, theta))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, T={self.num_steps}, alpha={self.alpha}, theta={self.theta}"


_TALIF_PARAMS = ("theta_v_init",)


def _talif_factory(cfg: Any, index: int, shape: Sequence[int]) -> TALIF:
    unknown = set(cfg.neuron_params) - set(_TALIF_PARAMS)
    if unknown:
        raise ConfigError(
            f"neuron 'talif': unknown neuron_params {sorted(unknown)}; known: {list(_TALIF_PARAMS)}"
        )
    return TALIF(
        cfg.alpha,
        cfg.theta,
        shape,
        cfg.num_steps,
        cfg.surrogate,
        float(cfg.neuron_params.get("theta_v_init", DEFAULT_THETA_V_INIT)),
    )


register_neuron("talif", _talif_factory)


# ----------------------------------------------------------------------------- NDS


def _split(classifier: Any) -> tuple[Any, Any]:
    """(model, encoder) of an SNNClassifier, or of a bare SpikingNet with its default encoder."""
    from neurodeploy.encoding import make_encoder

    if hasattr(classifier, "model") and hasattr(classifier, "encoder"):
        return classifier.model, classifier.encoder
    cfg = classifier.config
    return classifier, make_encoder(cfg.encoding, cfg.num_steps)


@torch.no_grad()
def _collect(
    classifier: Any,
    x: torch.Tensor,
    y: torch.Tensor | None,
    batch_size: int,
    seed: int,
) -> tuple[list[torch.Tensor], float | None]:
    from neurodeploy.encoding import make_generator

    model, encoder = _split(classifier)
    if x.shape[0] == 0:
        raise ConfigError("cannot collect an NDS from zero samples")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    gen = make_generator(seed, device)
    was_training = model.training
    model.eval()
    sums: list[torch.Tensor] | None = None
    correct = 0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device)
            trace = model.run(encoder(xb, gen), record=True)
            hidden = trace.mems[:-1]
            batch_sums = [m.double().sum(1) for m in hidden]  # [T, *shape]
            sums = batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums, strict=True)]
            if y is not None:
                correct += int((trace.logits.argmax(1).cpu() == y[i : i + batch_size]).sum())
    finally:
        model.train(was_training)
    nds = [(s / x.shape[0]).float() for s in (sums or [])]
    acc = correct / x.shape[0] if y is not None else None
    return nds, acc


def collect_nds(
    classifier: Any, x: torch.Tensor, batch_size: int = 256, seed: int = 0
) -> list[torch.Tensor]:
    """Neural Dynamic Signature of every hidden layer of a (clean-trained, plain-LIF) model.

    ``NDS_k[t] = (1/N) Σ_n m_k[t; x_n]`` — the mean pre-reset membrane potential of each neuron
    of hidden layer k at step t over the N images ``x``, in eval mode.

    Parameters
    ----------
    classifier:
        An :class:`~neurodeploy.classifier.SNNClassifier` (its encoder is used) or a bare
        :class:`~neurodeploy.models.SpikingNet` (its configured encoder is used).
    x:
        Clean training images ``[N, *input_shape]``.
    batch_size, seed:
        Batch size of the pass, and seed of the Bernoulli draws (same seed → same NDS).

    Returns
    -------
    list of ``[T, *neuron_shape]`` tensors, one per hidden layer (the output layer excluded).
    """
    return _collect(classifier, x, None, batch_size, seed)[0]


def _hidden_indices(model: Any) -> list[int]:
    return list(range(len(model.neurons) - 1))


def convert_to_hosnn_(
    model: Any, nds: Sequence[torch.Tensor], theta_v_init: float = DEFAULT_THETA_V_INIT
) -> Any:
    """Turn a plain-LIF :class:`~neurodeploy.models.SpikingNet` into a HoSNN *in place*.

    Hidden LIF populations are replaced by :class:`TALIF` populations holding ``nds``; weights
    and the output layer are kept; ``model.config`` becomes ``neuron="talif"`` with
    ``neuron_params={"theta_v_init": θ_v}`` so that checkpoints rebuild it. Returns ``model``.
    """
    cfg = model.config
    if cfg.neuron != "lif":
        raise ConfigError(
            f"HoSNN conversion needs a plain LIF model (neuron='lif'), this one is "
            f"neuron={cfg.neuron!r}"
        )
    hidden = _hidden_indices(model)
    if len(nds) != len(hidden):
        raise ConfigError(f"NDS has {len(nds)} layers, the model has {len(hidden)} hidden layers")
    ref = next(model.parameters())
    new_neurons = []
    for k in hidden:
        shape = model.layer_specs[k].out_shape
        neuron = TALIF(cfg.alpha, cfg.theta, shape, cfg.num_steps, cfg.surrogate, theta_v_init)
        neuron.to(device=ref.device, dtype=ref.dtype)
        try:
            neuron.set_nds(nds[k])
        except ConfigError as exc:
            raise ConfigError(f"layer {k + 1} ({model.layer_specs[k].token}): {exc}") from exc
        new_neurons.append(neuron)
    for k, neuron in zip(hidden, new_neurons, strict=True):
        neuron.train(model.training)
        model.neurons[k] = neuron
    model.config = dataclasses.replace(
        cfg, neuron="talif", neuron_params={"theta_v_init": float(theta_v_init)}
    )
    return model


def hosnn_from_lif(
    lif_model: Any, nds: Sequence[torch.Tensor], theta_v_init: float = DEFAULT_THETA_V_INIT
) -> Any:
    """A new HoSNN :class:`~neurodeploy.models.SpikingNet` initialised from a plain-LIF model.

    Same architecture and weights; hidden populations are TA-LIF with the given NDS (stored
    as buffers, so saved in the state dict) and θ_v = ``theta_v_init``; the output stays LIF.
    ``lif_model`` is not modified.
    """
    return convert_to_hosnn_(copy.deepcopy(lif_model), nds, theta_v_init)


def talif_modules(model: Any) -> list[TALIF]:
    return [n for n in model.neurons if isinstance(n, TALIF)]


# ----------------------------------------------------------------------------- defense


@dataclass(frozen=True)
class HoSNNConfig:
    """Options of the ``hosnn`` defense (keys ``hosnn_<field>`` in the defense options)."""

    theta_v_init: float = DEFAULT_THETA_V_INIT
    min_clean_acc: float = 0.5
    nds_batch_size: int = 256
    nds_seed: int = 0

    def __post_init__(self) -> None:
        if not self.theta_v_init >= 0:
            raise ConfigError(f"hosnn_theta_v_init must be >= 0, got {self.theta_v_init}")
        if not 0.0 <= self.min_clean_acc <= 1.0:
            raise ConfigError(f"hosnn_min_clean_acc must be in [0, 1], got {self.min_clean_acc}")
        if self.nds_batch_size < 1:
            raise ConfigError(f"hosnn_nds_batch_size must be >= 1, got {self.nds_batch_size}")


class HoSNNDefense(Defense):
    """HoSNN training: convert the clean-trained LIF model (NDS), then train with CE.

    The defense lives in the neuron; the loss is plain cross-entropy (combine with AT by
    ``hosnn+at``, as in the paper's headline results). ``after_step`` clamps θ_v ≥ 0.
    """

    name = "hosnn"

    def __init__(self, config: HoSNNConfig | None = None) -> None:
        self.config = config or HoSNNConfig()
        self.info: dict[str, Any] = {}

    def prepare(self, classifier: Any, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        model = classifier.model
        kind = model.config.neuron
        if kind == "talif":
            if all(float(n.nds.abs().sum()) == 0.0 for n in talif_modules(model)):
                raise ConfigError(
                    "TA-LIF model has an all-zero NDS: build HoSNNs from a clean-trained LIF "
                    "model (neurodeploy train --defense hosnn --init-from lif.pt)"
                )
            self.info.setdefault("converted", False)
            return
        if kind != "lif":
            raise ConfigError(f"hosnn needs a plain LIF model to start from, got neuron={kind!r}")
        nds, acc = _collect(
            classifier, train_x, train_y, self.config.nds_batch_size, self.config.nds_seed
        )
        if acc is not None and acc < self.config.min_clean_acc:
            raise ConfigError(
                f"hosnn: the starting LIF model has clean training accuracy {acc:.1%} < "
                f"{self.config.min_clean_acc:.0%}; its NDS would be meaningless. Train a plain "
                f"LIF model first (--defense none) and pass it with --init-from"
            )
        convert_to_hosnn_(model, nds, self.config.theta_v_init)
        self.info = {"converted": True, "nds_clean_train_acc": acc, "nds_samples": len(train_x)}

    def after_step(self, classifier: Any) -> None:
        for neuron in talif_modules(classifier.model):
            neuron.clamp_theta_v_()

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "defense": self.name,
            "hosnn": {**dataclasses.asdict(self.config), **self.info},
        }


def _hosnn_factory(options: dict[str, Any]) -> HoSNNDefense:
    return HoSNNDefense(options_to_config(HoSNNConfig, "hosnn", options))


register_defense("hosnn", _hosnn_factory)
