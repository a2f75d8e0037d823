"""The hardware twin: the emulator's integer arithmetic, made differentiable.

Forward: exactly the fixed-point semantics of a :class:`~neurodeploy.exporters.plan.DeploymentPlan`
(see ``exporters/plan.py``), computed on float64 tensors that hold integers (every product and
sum stays below 2^53, so float64 is exact), aligned timing (no pipeline delay), so its output
spikes equal the bit-exact emulator's spike for spike (tested).

Backward: straight-through rounding (``trunc``/``floor``/wrap/saturation pass the gradient
through unchanged) and a surrogate for the spike, applied in float units
``(v − vth·2⁶) / (scale·2⁶)`` so the surrogate has the same width as in float training.
This lets white-box attacks (PGD, APGD …) target the deployed model itself rather than the
float model it came from.

Input: an image batch ``x`` in [0, 1] is Bernoulli-encoded on the host with a fixed seed
(the same spikes every backend gets); the encoder's straight-through gradient carries the
attack gradient to ``x``. Spike inputs pass through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.encoding import Encoder, make_encoder, make_generator
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.surrogates import make_surrogate

_V_MAX = 2**23 - 1
_WRAP = 2**24


class _Trunc0(torch.autograd.Function):
    """Round toward zero (forward), identity (backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.trunc(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g


class _Wrap24(torch.autograd.Function):
    """Lava's asymmetric 24-bit wrap of ``u``: ``u > 2^23 → u − 2^24``; ``u ≤ −2^23 → u + 2^24``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = torch.where(x > 2**23, x - _WRAP, x)
        return torch.where(y <= -(2**23), y + _WRAP, y)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g


class _SignedWrap24(torch.autograd.Function):
    """Lava Conv's output wrap to the signed 24-bit range ``[−2^23, 2^23)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.remainder(x + 2**23, _WRAP) - 2**23

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g


class _Saturate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.clamp(-_V_MAX, _V_MAX)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g


def _decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``sign(x·f) · (|x·f| >> 12)`` = trunc(x·f / 4096) for integer-valued x."""
    return _Trunc0.apply(x * (factor / 4096.0))


class TwinLayer(nn.Module):
    """One plan layer: integer synapse + fixed-point LIF, differentiable."""

    def __init__(self, layer: PlanLayer, surrogate: str) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("weight", torch.tensor(layer.weights, dtype=torch.float64))
        bias = torch.tensor(layer.bias_mant, dtype=torch.float64)
        bias = bias * (2.0**layer.bias_exp) if layer.bias_exp >= 0 else _floor_shift(bias, -layer.bias_exp)
        self.register_buffer("bias", bias.reshape(layer.out_shape))
        self.vth64 = float(layer.vth * 64)
        self.unit = float(layer.scale * 64.0)  # v units per float unit
        self.spike_fn = make_surrogate(surrogate)

    def synapse(self, s: torch.Tensor) -> torch.Tensor:
        L = self.layer
        if L.flatten_before:
            s = s.flatten(1)
        if L.kind == "dense":
            a = s @ self.weight.T
            if L.weight_exp > 0:
                a = a * float(2**L.weight_exp)
            elif L.weight_exp < 0:
                a = _Floor.apply(a / float(2 ** (-L.weight_exp)))
            return a.reshape(s.shape[0], *L.out_shape)
        a = F.conv2d(s, self.weight, stride=L.stride, padding=L.padding, groups=L.groups)
        return _SignedWrap24.apply(a)

    def forward(self, spikes_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``spikes_in`` ``[T, B, *in_shape]`` → (spikes, pre-reset v) ``[T, B, *out_shape]``."""
        L = self.layer
        T, B = spikes_in.shape[:2]
        a_all = self.synapse(spikes_in.reshape(T * B, *spikes_in.shape[2:]))
        a_all = a_all.reshape(T, B, *L.out_shape)
        u = torch.zeros_like(a_all[0])
        v = torch.zeros_like(a_all[0])
        spk, mem = [], []
        du_factor = 4096 - (L.du + 1)
        dv_factor = 4096 - L.dv
        for t in range(T):
            u = _Wrap24.apply(_decay(u, du_factor) + a_all[t] * 64.0)
            v = _Saturate.apply(_decay(v, dv_factor) + u + self.bias)
            s = self.spike_fn((v - self.vth64) / self.unit)
            spk.append(s)
            mem.append(v)
            v = v * (1.0 - s)
        return torch.stack(spk), torch.stack(mem)


def _floor_shift(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.floor(x / float(2**n))


class HardwareTwin(nn.Module):
    """Differentiable fixed-point model of a deployment plan: ``x → output spike counts``.

    Parameters
    ----------
    plan : the deployment plan (``lif`` layers; TA-LIF layers are added by the audit).
    encoding : input encoding name (``bernoulli``, ``direct`` is refused: the chip takes spikes;
        ``spikes`` for spike inputs).
    surrogate : surrogate for the spike in float units (default ``rect`` as in training).
    seed : seed of the host-side Bernoulli encoding.
    """

    def __init__(
        self,
        plan: DeploymentPlan,
        encoding: str = "bernoulli",
        surrogate: str = "rect",
        seed: int = 0,
    ) -> None:
        super().__init__()
        from neurodeploy.errors import ConfigError

        if encoding == "direct":
            raise ConfigError("the chip takes spikes: direct (current) encoding cannot be deployed")
        for L in plan.layers:
            if L.neuron != "lif":
                raise ConfigError(f"hardware twin: layer {L.name} has neuron {L.neuron!r}; "
                                  f"only 'lif' is supported here")
        self.plan = plan
        self.layers = nn.ModuleList(TwinLayer(L, surrogate) for L in plan.layers)
        self.encoder: Encoder = make_encoder(encoding, plan.num_steps)
        self.seed = int(seed)
        self._generator: torch.Generator | None = None

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.encoder, "stochastic", False))

    @property
    def generator(self) -> torch.Generator:
        dev = self.layers[0].weight.device
        if self._generator is None or self._generator.device != dev:
            self._generator = make_generator(self.seed, dev)
        return self._generator

    def reseed(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator = None

    def run_spikes(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        """All layers' output spikes for a spike train ``[T, B, *input_shape]``."""
        h = spikes.to(torch.float64)
        outs = []
        for layer in self.layers:
            h, _ = layer(h)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Encode in x's dtype so the same seed gives the same spikes as the float classifier.
        spikes = self.encoder(x, self.generator)
        return self.run_spikes(spikes)[-1].sum(0).to(x.dtype)
