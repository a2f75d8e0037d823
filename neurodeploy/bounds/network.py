"""The bounded view of a :class:`~neurodeploy.models.SpikingNet`: one (spatial, temporal, fire)
triple per layer, built from the model's own weights (no copy: gradients reach the model).

Bounds are defined for the canonical LIF only: every layer, the output one included, is LIF
with the model's α and θ, strict '>', hard reset (``neuron="lif"`` and a ``count``/``rate``
readout). The certified readout is the firing rate over the T' certified steps, and the
certified property is the margin ``r_y − r_j > 0`` for every j ≠ y (certify_snn).
"""

from __future__ import annotations

from dataclasses import dataclass

from neurodeploy.bounds.ops import (
    BoundConv2d,
    BoundFire,
    BoundLinear,
    BoundMemUpdate,
    BoundPool,
    SpatialOp,
)
from neurodeploy.errors import ConfigError

_POOL_SCALE = {"avgpool": lambda k: 1.0 / (k * k), "sumpool": lambda k: 1.0}


@dataclass
class BoundLayer:
    """One LIF layer: synapse, temporal update and fire, with its shapes."""

    spatial: SpatialOp
    mem: BoundMemUpdate
    fire: BoundFire
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    token: str


def _spatial(spec, synapse) -> SpatialOp:
    if spec.kind == "fc":
        return BoundLinear(synapse.weight, synapse.bias, spec.in_shape)
    if spec.kind == "conv":
        return BoundConv2d(
            synapse.weight, synapse.bias, spec.stride, spec.padding, spec.in_shape, spec.out_shape
        )
    if spec.kind in _POOL_SCALE:
        return BoundPool(spec.kernel, _POOL_SCALE[spec.kind](spec.kernel), spec.in_shape,
                         spec.out_shape)
    raise ConfigError(f"layer {spec.token!r}: no bounds for layer kind {spec.kind!r}")


def check_certifiable(model) -> None:
    """Raise :class:`ConfigError` unless ``model`` is a canonical-LIF network with a spike readout."""
    cfg = model.config
    if cfg.neuron != "lif":
        raise ConfigError(
            f"bounds are defined for the canonical LIF only; model neuron kind is {cfg.neuron!r}"
        )
    if cfg.readout not in ("count", "rate"):
        raise ConfigError(
            f"bounds need an LIF output layer with a spike readout (count or rate); model "
            f"readout is {cfg.readout!r}"
        )
    for k, n in enumerate(model.neurons):
        if getattr(n, "kind", None) != "lif":
            raise ConfigError(f"layer {k + 1}: neuron {type(n).__name__} is not the canonical LIF")


def bounded_layers(model, surrogate: bool = True) -> list[BoundLayer]:
    """The layers of ``model`` as bounded operations.

    ``surrogate=True`` fires the bounds with the model's spike function (forward values are the
    strict Heaviside; the backward is the surrogate, for certified training).
    """
    check_certifiable(model)
    cfg = model.config
    layers = []
    for spec, syn, neuron in zip(model.layer_specs, model.synapses, model.neurons, strict=True):
        layers.append(
            BoundLayer(
                spatial=_spatial(spec, syn),
                mem=BoundMemUpdate(cfg.alpha, cfg.theta),
                fire=BoundFire(cfg.theta, neuron.spike_fn if surrogate else None),
                in_shape=spec.in_shape,
                out_shape=spec.out_shape,
                token=spec.token,
            )
        )
    return layers
