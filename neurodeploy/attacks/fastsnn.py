"""Fused input-gradient path for canonical-LIF SNN classifiers (the attacks' hot loop).

Gradient attacks need ``∇_x loss`` hundreds of times per example. Through the model's own
modules (snntorch ``Leaky`` per step, autograd recording every elementwise op of every step)
that costs an autograd graph of ~10 nodes per layer and step. :func:`fast_classifier` returns a
callable with the *same* forward values (``torch.equal`` with ``classifier(x)``: the membrane
recurrence is evaluated with the same floating-point operations in the same order, and the
Bernoulli draws come from the same generator calls) and the *same* gradient rule, computed by
three custom autograd nodes instead:

- ``_LIFLayer`` — one node per layer for all T steps. Forward: the canonical LIF recurrence
  without recording. Backward: BPTT written out: with ``G[t] = ∂L/∂s[t] · σ'(m[t] − θ)`` (the
  surrogate's own backward, applied to all steps at once) and the reset detached as in
  snntorch, ``∂L/∂m[t] = G[t] + α·(1 − s[t])·∂L/∂m[t+1]`` and ``∂L/∂I[t] = ∂L/∂m[t]``.
- ``_EncodedInput`` — the first synapse after a Bernoulli (straight-through) or direct
  encoder. Both encoders have ``∂s[t]/∂x = 1`` at every step and the synapse is linear, so
  ``∂L/∂x = Σ_t Wᵀ·∂L/∂I[t] = Wᵀ·Σ_t ∂L/∂I[t]``: one transposed product for B rows instead of
  T·B rows (the sum moves before the product; equal up to float summation order).
- weights are used detached: the path computes input gradients only (attacks), never weight
  gradients (training keeps the modules).

Eligible: an :class:`~neurodeploy.classifier.SNNClassifier` whose model has canonical
:class:`~neurodeploy.neurons.LIF` neurons (the output layer may be the membrane-readout
integrator) and fc / conv / avg-pool / sum-pool layers, with Bernoulli, fixed-draw Bernoulli,
direct or spike input, and ``bptt`` gradients (any surrogate: the neurons' current
``spike_fn`` is used, so ``bptt:<surrogate>`` works). Anything else (TA-LIF, noisy neurons,
BPTR/RGA wrappers, arbitrary modules) returns ``None`` and the attack uses the classifier
as it is. tests/test_fastsnn.py checks logits (equal) and input gradients (close) against
autograd through the modules.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from neurodeploy.surrogates import SpikeFn


class _LIFLayer(torch.autograd.Function):
    """Canonical LIF over all steps: currents ``[T, B, *shape]`` → spikes (same shape)."""

    @staticmethod
    def forward(ctx, cur, alpha, theta, spike_fn):  # noqa: D102
        steps = cur.shape[0]
        spk = torch.empty_like(cur)
        shifted = torch.empty_like(cur)  # m[t] − θ
        m = None
        for t in range(steps):
            if m is None:
                m = cur[0].clone()
            else:
                # snntorch Leaky, zero reset: β·((1 − reset)·m) + I, reset = s[t−1]
                m = alpha * ((1 - spk[t - 1]) * m) + cur[t]
            torch.sub(m, theta, out=shifted[t])
            torch.gt(shifted[t], 0, out=spk[t])
        ctx.save_for_backward(spk, shifted)
        ctx.alpha = alpha
        ctx.spike_fn = spike_fn
        return spk

    @staticmethod
    def backward(ctx, g_spk):  # noqa: D102
        spk, shifted = ctx.saved_tensors
        g = _surrogate_grad(ctx.spike_fn, shifted, g_spk)  # ∂L/∂s · σ'(m − θ)
        if g is None:  # a spike function without a gradient (masking): zero
            return torch.zeros_like(g_spk), None, None, None
        keep = (1 - spk).mul_(ctx.alpha)  # α·(1 − s[t]): ∂m[t+1]/∂m[t]
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].addcmul_(keep[t], g[t + 1])
        return g, None, None, None


def _surrogate_grad(spike_fn: SpikeFn, shifted: torch.Tensor, g_spk: torch.Tensor) -> torch.Tensor | None:
    """``g_spk · σ'(shifted)`` with the spike function's own backward, for all steps at once —
    or step by step for surrogates whose backward uses statistics of one step's batch
    (``per_step``, e.g. the adaptive ``assg``), exactly as the modules call them."""
    with torch.enable_grad():
        if getattr(spike_fn, "per_step", False):
            gs = []
            for t in range(shifted.shape[0]):
                xt = shifted[t].detach().requires_grad_(True)
                out = spike_fn(xt)
                if not out.requires_grad:
                    return None
                gs.append(torch.autograd.grad(out, xt, g_spk[t])[0])
            return torch.stack(gs)
        x = shifted.detach().requires_grad_(True)
        out = spike_fn(x)
        if not out.requires_grad:
            return None
        return torch.autograd.grad(out, x, g_spk)[0]


def _linear_input_grad(spec, weight: torch.Tensor, g: torch.Tensor, in_shape) -> torch.Tensor:
    if spec.kind == "fc":
        return g.matmul(weight).reshape(g.shape[0], *in_shape)
    return torch.nn.grad.conv2d_input((g.shape[0], *in_shape), weight, g, spec.stride,
                                      spec.padding)


class _EncodedInput(torch.autograd.Function):
    """First synapse applied to encoded spikes. Straight-through encoder: the input gradient
    is summed over steps first. Smooth threshold surrogate (``u`` and sharpness ``k`` given):
    ``∂L/∂x = Σ_t (Wᵀ·∂L/∂I[t]) ⊙ k·σ'(k(x − u[t]))`` (one product for all T·B rows)."""

    @staticmethod
    def forward(ctx, x, cur, spec, weight, u=None, k=0.0):  # noqa: D102
        ctx.spec = spec
        ctx.weight = weight
        ctx.in_shape = tuple(x.shape[1:])
        ctx.k = k
        if u is not None:
            ctx.save_for_backward(x, u)
        return cur

    @staticmethod
    def backward(ctx, g_cur):  # noqa: D102
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if ctx.k == 0.0:
            g = g_cur.sum(0)
            return _linear_input_grad(ctx.spec, ctx.weight, g, ctx.in_shape), None, None, None, None, None
        from neurodeploy.encoding import threshold_grad_weight

        x, u = ctx.saved_tensors
        T, B = g_cur.shape[:2]
        gx = _linear_input_grad(ctx.spec, ctx.weight, g_cur.reshape(T * B, *g_cur.shape[2:]),
                                ctx.in_shape).reshape(T, B, *ctx.in_shape)
        gx = (gx * threshold_grad_weight(x, u, ctx.k)).sum(0)
        return gx, None, None, None, None, None


def _synapse(spec, module, h: torch.Tensor) -> torch.Tensor:
    """The layer's synapse on ``[T, B, *in]`` with detached weights (same ops as the module)."""
    steps, batch = h.shape[:2]
    x = h.reshape(steps * batch, *h.shape[2:])
    if spec.flatten_before:
        x = x.flatten(1)
    if spec.kind == "fc":
        y = F.linear(x, module.weight.detach(),
                     None if module.bias is None else module.bias.detach())
    elif spec.kind == "conv":
        y = F.conv2d(x, module.weight.detach(),
                     None if module.bias is None else module.bias.detach(),
                     module.stride, module.padding, module.dilation, module.groups)
    else:
        y = module(x)
    return y.reshape(steps, batch, *y.shape[1:])


class FastSNN:
    """``x → logits`` with the fused gradient path; see the module docstring."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    @property
    def stochastic(self) -> bool:
        return bool(self.classifier.stochastic)

    def select(self, idx: torch.Tensor) -> FastSNN:
        """Bound to rows ``idx`` when the classifier is (known-draw maps)."""
        return FastSNN(self.classifier.select(idx))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from neurodeploy.classifier import AUX_LOGITS
        from neurodeploy.encoding import parse_input_grad

        clf = self.classifier
        model = clf.model
        enc = clf.encoder
        u, k_in = None, 0.0
        if enc.name == "spikes":
            h, summed = clf.encode(x), False  # gradient per step: plain autograd
        elif enc.name != "direct" and clf.input_grad != "ste":
            _, k_in = parse_input_grad(clf.input_grad)  # the same draws as classifier(x)
            u = enc.uniform(x.detach(), clf.generator)
            h, summed = (x.detach().unsqueeze(0) > u).to(x.dtype), x.requires_grad
        else:  # the same draws as classifier(x), no graph through the encoder
            h, summed = clf.encode(x.detach()), x.requires_grad
        want_mem = clf.aux_logits == "membrane"
        n = len(model.neurons)
        for k, (spec, syn, neuron) in enumerate(zip(model.layer_specs, model.synapses,
                                                    model.neurons, strict=True)):
            cur = _synapse(spec, syn, h)
            if k == 0 and summed:
                cur = _EncodedInput.apply(x, cur, spec, syn.weight.detach(), u, k_in)
            if k == n - 1 and getattr(neuron, "kind", None) == "li":
                mems = []
                m = None
                for t in range(cur.shape[0]):
                    m = cur[t] if m is None else cur[t] + neuron.alpha * m
                    mems.append(m)
                z = torch.stack(mems).mean(0)
                if want_mem:
                    setattr(z, AUX_LOGITS, z)
                return z
            h = _LIFLayer.apply(cur, neuron.alpha, neuron.theta, neuron.spike_fn)
        readout = model.config.readout
        z = h.sum(0) if readout == "count" else h.mean(0)
        if want_mem:  # pre-reset membrane of the output layer, reset detached as in snntorch
            s = h.detach()
            m = cur[0]
            total = m
            for t in range(1, cur.shape[0]):
                m = neuron.alpha * ((1 - s[t - 1]) * m) + cur[t]
                total = total + m
            setattr(z, AUX_LOGITS, total / cur.shape[0])
        return z


def fast_classifier(classifier: Any) -> FastSNN | None:
    """The fused path for ``classifier`` if it is eligible (module docstring), else ``None``."""
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.models import SpikingNet
    from neurodeploy.neurons import LIF, LeakyIntegrator

    if type(classifier) is not SNNClassifier or not isinstance(classifier.model, SpikingNet):
        return None  # the fused kernels read a SpikingNet's layers (not, e.g., a NIR interpreter)
    model = classifier.model
    if getattr(classifier.encoder, "name", None) not in ("bernoulli", "direct", "spikes",
                                                         "bernoulli-fixed", "bernoulli-known"):
        return None
    n = len(model.neurons)
    for k, (spec, neuron) in enumerate(zip(model.layer_specs, model.neurons, strict=True)):
        if spec.kind not in ("fc", "conv", "avgpool", "sumpool"):
            return None
        if type(neuron) is LIF:
            continue
        if k == n - 1 and type(neuron) is LeakyIntegrator:
            continue
        return None
    if model.layer_specs[0].kind not in ("fc", "conv"):
        return None
    return FastSNN(classifier)


__all__ = ["FastSNN", "SpikeFn", "fast_classifier"]
