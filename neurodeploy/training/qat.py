"""Quantization-aware fine-tuning: train the float model on the chip's weight grid.

Inside :func:`quantization_aware`, every weighted synapse of a :class:`~neurodeploy.models.SpikingNet`
is seen through the compiler's quantizer with a straight-through gradient::

    W_eff = W + (Q(W) − W).detach(),   Q(W) = quantize_weights(W, s, sign mode) / s

with the per-layer scale ``s`` that :func:`neurodeploy.exporters.compiler.compile_model` chose
for the model when the context was entered (the plan's ``scale``) and ``quantize_weights`` the
compiler's own rule, :meth:`~neurodeploy.exporters.profiles.FixedPointFormat.quantize_weights`
of the plan's fixed-point format (mixed sign: even mantissas in [−256, 254] on Loihi;
single sign: [0, 255] or [−255, 0]). The forward pass of the
float model then uses exactly the integer weights the chip will hold, so training (with any
defense) optimises the deployed weights; on exit the weights are snapped to the grid, so the
next compilation reproduces them with zero weight error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from neurodeploy.exporters.profiles import FixedPointFormat


class _OnGrid(nn.Module):
    """Parametrization ``W → W + (Q(W) − W).detach()`` for one layer (see module docstring)."""

    def __init__(self, scale: float, mode: str, fmt: FixedPointFormat) -> None:
        super().__init__()
        self.scale = float(scale)
        self.mode = mode
        self.fmt = fmt
        fmt.weight_range(mode)  # refuse an unknown sign mode now, not in the forward pass

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.fmt.quantize_weights(w, self.scale, self.mode) / self.scale
        return w + (q - w).detach()


@contextmanager
def quantization_aware(model: nn.Module, profile: str = "loihi2") -> Iterator[dict[str, float]]:
    """Fine-tune ``model`` on the weight grid of ``profile`` (see module docstring).

    Yields the per-layer scales (plan layer name → scale). On exit the parametrizations are
    removed and the weights are left at their on-grid values.
    """
    from neurodeploy.exporters.compiler import compile_model

    plan = compile_model(model, profile=profile)
    weighted = [i for i, spec in enumerate(model.layer_specs) if spec.has_weights]
    scales: dict[str, float] = {}
    layers = [L for L in plan.layers if L.kind in ("dense", "conv")]
    for i, L in zip(weighted, layers, strict=True):
        syn = model.synapses[i]
        mode = plan.fixed_point.weight_sign_mode(syn.weight.detach())
        parametrize.register_parametrization(syn, "weight",
                                             _OnGrid(L.scale, mode, plan.fixed_point))
        scales[L.name] = float(L.scale)
    try:
        yield scales
    finally:
        for i in weighted:
            syn = model.synapses[i]
            if parametrize.is_parametrized(syn, "weight"):
                parametrize.remove_parametrizations(syn, "weight", leave_parametrized=True)
