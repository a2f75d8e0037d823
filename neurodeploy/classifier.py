"""``x → logits`` classifiers: what attacks, evaluation and training see.

:class:`SNNClassifier` wraps a :class:`~neurodeploy.models.SpikingNet` and its encoder so that
an image batch ``x`` ``[B, *shape]`` in [0, 1] (or a spike train ``[T, B, …]`` for spike inputs)
maps to logits ``[B, classes]``. Randomness (Bernoulli coding, noisy neurons) is drawn from
``self.generator``; :meth:`reseed` makes a run reproducible, and :attr:`stochastic` tells
attacks to use EoT.

Two attack-time views, both leaving the forward *values* unchanged:

- ``input_grad`` (``"ste"`` or ``"sigmoid:k"``): the backward of Bernoulli coding
  (:func:`neurodeploy.encoding.parse_input_grad`);
- ``aux_logits = "membrane"``: the returned logits (the readout, which decides) carry the
  output layer's mean pre-reset membrane ``(1/T) Σ_t m_out[t]`` as the attribute
  :data:`AUX_LOGITS`, so a loss can be taken on the membrane (``ce-mem``, ``margin-mem``)
  while success is still judged on the readout.

A classifier whose encoder is bound to examples (:class:`~neurodeploy.encoding.KnownDrawEncoder`)
is bound too: :meth:`SNNClassifier.select` returns the classifier for a subset of rows.
"""

from __future__ import annotations

import torch
from torch import nn

from neurodeploy.encoding import Encoder, make_encoder, make_generator, parse_input_grad
from neurodeploy.errors import ConfigError
from neurodeploy.models import SpikingNet

#: attribute of a logits tensor that holds the membrane logits (see module docstring)
AUX_LOGITS = "nd_membrane_logits"
AUX_VIEWS = ("none", "membrane")


class SNNClassifier(nn.Module):
    """Encoder + SNN as one differentiable ``x → logits`` module."""

    def __init__(self, model: SpikingNet, encoder: Encoder | None = None, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder or make_encoder(model.config.encoding, model.config.num_steps)
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self.input_grad = "ste"
        self.aux_logits = "none"

    def set_views(self, input_grad: str = "ste", aux_logits: str = "none") -> None:
        """Select the attack-time views (module docstring); forward values never change."""
        parse_input_grad(input_grad)
        if aux_logits not in AUX_VIEWS:
            raise ConfigError(f"aux_logits must be one of {AUX_VIEWS}, got {aux_logits!r}")
        self.input_grad = input_grad
        self.aux_logits = aux_logits

    @property
    def bound(self) -> bool:
        """True when the encoder is bound to examples (known-draw maps): use :meth:`select`."""
        return hasattr(self.encoder, "select")

    def select(self, idx: torch.Tensor) -> SNNClassifier:
        """This classifier for rows ``idx`` of its binding (same model, seed and views)."""
        if not self.bound:
            return self
        out = SNNClassifier(self.model, self.encoder.select(idx), seed=self.seed)
        out.input_grad, out.aux_logits = self.input_grad, self.aux_logits
        return out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None or self._generator.device != self.device:
            self._generator = make_generator(self.seed, self.device)
        return self._generator

    def reseed(self, seed: int) -> None:
        """Restart the random stream (same seed → same encodings and neuron noise)."""
        self.seed = int(seed)
        self._generator = make_generator(self.seed, self.device)

    @property
    def stochastic(self) -> bool:
        """True when two calls on the same ``x`` may differ (Bernoulli input or noisy neurons)."""
        noisy = any(getattr(n, "stochastic", False) for n in self.model.neurons)
        return bool(getattr(self.encoder, "stochastic", False) or noisy)

    @property
    def is_spike_input(self) -> bool:
        return self.encoder.name == "spikes"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x``; also binds noisy neurons to this classifier's generator, so that one
        seed fixes both the input encoding and the neuron noise (TGO's noisy LIF)."""
        gen = self.generator
        for neuron in self.model.neurons:
            if hasattr(neuron, "generator"):
                neuron.generator = gen
        if self.input_grad != "ste" and hasattr(self.encoder, "uniform"):
            return self.encoder.encode_with(x, self.encoder.uniform(x, gen), self.input_grad)
        return self.encoder(x, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.aux_logits == "none":
            return self.model(self.encode(x))
        trace = self.model.run(self.encode(x), record=True)
        z = trace.logits
        setattr(z, AUX_LOGITS, trace.mems[-1].mean(0))
        return z
