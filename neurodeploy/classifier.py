"""``x → logits`` classifiers: what attacks, evaluation and training see.

:class:`SNNClassifier` wraps a :class:`~neurodeploy.models.SpikingNet` and its encoder so that
an image batch ``x`` ``[B, *shape]`` in [0, 1] (or a spike train ``[T, B, …]`` for spike inputs)
maps to logits ``[B, classes]``. Randomness (Bernoulli coding, noisy neurons) is drawn from
``self.generator``; :meth:`reseed` makes a run reproducible, and :attr:`stochastic` tells
attacks to use EoT.
"""

from __future__ import annotations

import torch
from torch import nn

from neurodeploy.encoding import Encoder, make_encoder, make_generator
from neurodeploy.models import SpikingNet


class SNNClassifier(nn.Module):
    """Encoder + SNN as one differentiable ``x → logits`` module."""

    def __init__(self, model: SpikingNet, encoder: Encoder | None = None, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder or make_encoder(model.config.encoding, model.config.num_steps)
        self.seed = int(seed)
        self._generator: torch.Generator | None = None

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
        return self.encoder(x, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.encode(x))
