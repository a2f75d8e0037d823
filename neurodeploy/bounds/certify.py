"""Verified robustness of a canonical-LIF SNN: the API the audit and the CLI call.

``certify(model, x, y, eps, cert_steps, method)`` bounds the margins ``r_y − r_j`` (rates over
the T' certified steps) for every input of the perturbation set and returns a
:class:`CertResult`. A sample is **verified** when every margin lower bound is strictly
positive: ``lb > 0`` for all j ≠ y. A margin bound of exactly 0 is *not* verified, because
with spike-count rates a tie r_y = r_j is reachable and is not a correct prediction
(certify_snn's N-MNIST and old MNIST code count ``<= 0`` as an error; its newer MNIST script
``< 0``). Verified error = 1 − mean(verified); the clean input itself lies in the set (for the
set's own uniform map), so a verified sample is also classified correctly on that draw.

Methods (registry :data:`METHODS`):

- ``ibp``          S-IBP (interval only);
- ``crown``        S-CROWN with S-IBP intermediate bounds, the paper's relaxations;
- ``alpha-crown``  the elementwise maximum of the ``ibp`` and ``crown`` bounds of the same draw
  (each is a valid lower bound, so their maximum is one too), then, for the samples that are
  still not verified, optimised relaxation parameters (:mod:`neurodeploy.bounds.alpha`).

Randomness: Bernoulli-coded inputs draw the shared uniform map from ``generator`` (or
``seed``); the clean accuracy uses a separate draw with the model's own T. With
``host_index`` (the examples' indices) both come from the host encoder's one seeding rule
instead (:func:`neurodeploy.encoding.host_uniform`): the box contains exactly the spikes the
chip is fed for each example, and the clean forward runs on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neurodeploy.bounds.crown import crown_margin_lower
from neurodeploy.bounds.ibp import LayerBounds, ibp_bounds, ibp_margin_lower, margin_spec
from neurodeploy.bounds.network import BoundLayer, bounded_layers
from neurodeploy.bounds.perturbation import (
    BernoulliLinfSet,
    InputBox,
    PerturbationSet,
    default_set,
)
from neurodeploy.encoding import host_spikes, host_uniform, make_encoder, make_generator
from neurodeploy.errors import ConfigError, DataError


@dataclass
class CertResult:
    """Per-sample outcome. ``margin_lb`` ``[B, K−1]`` holds lb(r_y − r_j) for j ≠ y in
    increasing j; ``verified`` = all(margin_lb > 0); ``clean_correct`` from a clean forward."""

    verified: torch.Tensor
    margin_lb: torch.Tensor
    clean_correct: torch.Tensor
    method: str
    eps: float
    cert_steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verified_error(self) -> float:
        return 1.0 - float(self.verified.float().mean())

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "eps": self.eps,
            "cert_steps": self.cert_steps,
            "n": int(self.verified.numel()),
            "verified_error": self.verified_error,
            "clean_accuracy": self.clean_accuracy,
            **self.extra,
        }


def is_verified(margin_lb: torch.Tensor) -> torch.Tensor:
    """``all_j lb_j > 0`` (a zero margin, i.e. a possible tie, is not verified)."""
    return (margin_lb > 0).all(dim=1)


# A bound method maps (layers, ibp bounds, spec, box, y, options) to margin lower bounds.
BoundMethod = Callable[..., torch.Tensor]


def _ibp(layers, bounds, spec, box, y, **opts) -> torch.Tensor:
    return ibp_margin_lower(bounds[-1], y)


def _crown(layers, bounds, spec, box, y, **opts) -> torch.Tensor:
    return crown_margin_lower(layers, bounds, spec, box)


def _alpha_crown(layers, bounds, spec, box, y, **opts) -> torch.Tensor:
    from neurodeploy.bounds.alpha import alpha_crown_margin_lower

    base = torch.maximum(_ibp(layers, bounds, spec, box, y), _crown(layers, bounds, spec, box, y))
    todo = ~is_verified(base)  # optimise only what the cheap bounds leave open
    if not bool(todo.any()):
        return base
    idx = todo.nonzero().squeeze(1)
    sub_bounds = [LayerBounds(b.m_lo[:, idx], b.m_hi[:, idx], b.s_lo[:, idx], b.s_hi[:, idx],
                              None if b.fix is None else b.fix[:, idx])
                  for b in bounds]
    sub_box = InputBox(box.lo[:, idx], box.hi[:, idx], {})
    opt = alpha_crown_margin_lower(layers, sub_bounds, spec[idx], sub_box, **opts)
    out = base.clone()
    out[idx] = torch.maximum(base[idx], opt)
    return out


METHODS: dict[str, BoundMethod] = {"ibp": _ibp, "crown": _crown, "alpha-crown": _alpha_crown}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown bound method {method!r}; choose one of {sorted(METHODS)}")


def input_box(
    model, x: torch.Tensor, eps: float, steps: int, generator: torch.Generator | None,
    perturbation: PerturbationSet | None = None, uniform: torch.Tensor | None = None,
) -> InputBox:
    """The perturbation set's box; ``uniform`` (Bernoulli sets) fixes the host's map."""
    pset = perturbation or default_set(model.config.encoding, eps)
    if uniform is not None:
        if not isinstance(pset, BernoulliLinfSet):
            raise ConfigError(f"host_index (the host's uniform maps) applies to Bernoulli-coded "
                              f"inputs only, not to {type(pset).__name__}")
        return pset.box(x, steps, generator, uniform=uniform.to(x.device, x.dtype))
    return pset.box(x, steps, generator)


def margin_bounds(
    model,
    box: InputBox,
    y: torch.Tensor,
    methods: tuple[str, ...] = ("ibp",),
    surrogate: bool = False,
    layers: list[BoundLayer] | None = None,
    method_options: dict[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], list[LayerBounds]]:
    """Margin lower bounds ``[B, K−1]`` of every method for one box (shared S-IBP pass).
    Differentiable w.r.t. the model's weights (certified training uses it with
    ``surrogate=True``)."""
    for m in methods:
        _check_method(m)
    layers = layers or bounded_layers(model, surrogate=surrogate)
    bounds = ibp_bounds(layers, box)
    num_classes = model.layer_specs[-1].out_channels
    spec = margin_spec(y, num_classes, box.lo.dtype)
    out = {m: METHODS[m](layers, bounds, spec, box, y, **(method_options or {}).get(m, {}))
           for m in methods}
    return out, bounds


def _clean_correct(model, x, y, generator, host: tuple[torch.Tensor, int] | None = None
                   ) -> torch.Tensor:
    """Clean prediction; ``host = (indices, seed)`` uses the host encoder's spikes."""
    if host is not None:
        x_seq = host_spikes(x, host[0], host[1], model.config.num_steps).to(x.device, x.dtype)
        return model(x_seq).argmax(1) == y
    enc = make_encoder(model.config.encoding, model.config.num_steps)
    x_seq = x if model.config.encoding == "spikes" else enc(x, generator)
    return model(x_seq).argmax(1) == y


def certify_many(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    cert_steps: int | None = None,
    methods: tuple[str, ...] = ("ibp", "crown"),
    generator: torch.Generator | None = None,
    seed: int = 0,
    perturbation: PerturbationSet | None = None,
    batch_size: int = 500,
    method_options: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    host_index: torch.Tensor | None = None,
) -> dict[str, CertResult]:
    """:func:`certify` for several methods on the *same* random draws (paired comparison).

    ``x``: images ``[B, *shape]`` (Bernoulli/direct coding) or spikes ``[T, B, *shape]``.
    ``host_index``: example indices ``[B]``; given, Bernoulli-coded inputs use the host
    encoder's seeding rule (:func:`neurodeploy.encoding.host_uniform` with ``seed``): example
    i's uniform map is the one the chip's host draws for it, in the box and in the clean
    forward, whatever batch it is in — the spikes the audit, simulate and every replay give it.
    """
    steps = int(cert_steps or model.config.num_steps)
    if steps < 1:
        raise ConfigError(f"cert_steps must be >= 1, got {steps}")
    spikes = model.config.encoding == "spikes"
    n = x.shape[1] if spikes else x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"{n} inputs but {y.shape[0]} labels")
    if host_index is not None and (spikes or torch.as_tensor(host_index).shape != (n,)):
        raise DataError(f"host_index needs images [B, …] and B = {n} indices, got "
                        f"{tuple(torch.as_tensor(host_index).shape)}")
    g = generator or make_generator(seed, x.device)
    was_training = model.training
    model.eval()
    lbs: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    clean: list[torch.Tensor] = []
    unstable: list[float] = []
    try:
        for i in range(0, n, batch_size):
            xb = x[:, i:i + batch_size] if spikes else x[i:i + batch_size]
            yb = y[i:i + batch_size]
            host = None
            uniform = None
            if host_index is not None:
                host = (torch.as_tensor(host_index)[i:i + batch_size].cpu(), int(seed))
                uniform = host_uniform(host[0], int(seed), steps, tuple(xb.shape[1:]))
            with torch.no_grad():
                box = input_box(model, xb, eps, steps, g, perturbation, uniform)
                unstable.append(box.unstable_fraction)
            with torch.no_grad():  # alpha-crown enables grad for its own parameters only
                out, _ = margin_bounds(model, box, yb, methods, surrogate=False,
                                       method_options=method_options)
            for m in methods:
                lbs[m].append(out[m].detach())
            with torch.no_grad():
                clean.append(_clean_correct(model, xb, yb, g, host))
            if progress is not None:
                progress(int(yb.shape[0]))
    finally:
        model.train(was_training)
    clean_t = torch.cat(clean)
    results = {}
    for m in methods:
        lb = torch.cat(lbs[m])
        results[m] = CertResult(
            verified=is_verified(lb), margin_lb=lb, clean_correct=clean_t, method=m,
            eps=float(eps), cert_steps=steps,
            extra={"unstable_input_fraction": float(sum(unstable) / max(len(unstable), 1))},
        )
    return results


def certify(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    cert_steps: int | None = None,
    method: str = "ibp",
    generator: torch.Generator | None = None,
    seed: int = 0,
    perturbation: PerturbationSet | None = None,
    batch_size: int = 500,
    method_options: dict[str, Any] | None = None,
    host_index: torch.Tensor | None = None,
) -> CertResult:
    """Certify ``model`` on ``(x, y)`` for the ε-set of its input encoding (see module doc).

    Parameters
    ----------
    model : SpikingNet with canonical LIF neurons and a count/rate readout.
    x, y : images ``[B, *shape]`` in [0, 1] (or spikes ``[T, B, *shape]``) and labels ``[B]``.
    eps : ℓ∞ half-width (digital), or flip probability (spikes, random flip set).
    cert_steps : T' (default: the model's T).
    method : ``"ibp"``, ``"crown"`` or ``"alpha-crown"``.
    generator, seed : randomness of the uniform map / flip set and the clean draw.
    perturbation : overrides the set chosen from the encoding (e.g. ``SpikeFlipSet(mode="all")``).
    host_index : example indices: use the host encoder's uniform maps (see :func:`certify_many`).
    """
    _check_method(method)
    return certify_many(model, x, y, eps, cert_steps, (method,), generator, seed, perturbation,
                        batch_size, method_options, host_index=host_index)[method]


def verified_error(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    cert_steps: int | None = None,
    method: str = "ibp",
    generator: torch.Generator | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> float:
    """Fraction of samples *not* verified (see :func:`certify`)."""
    return certify(model, x, y, eps, cert_steps, method, generator, seed, **kwargs).verified_error
