"""The hardware twin: the emulator's integer arithmetic, made differentiable.

Forward: exactly the fixed-point semantics of a :class:`~neurodeploy.exporters.plan.DeploymentPlan`
as :class:`~neurodeploy.sims.emulator.Emulator` computes them, on float64 tensors that hold
integers (every product and sum stays below 2^53, so float64 is exact), aligned timing (no
pipeline delay), so its spikes equal the bit-exact emulator's spike for spike on every layer
(tested, ``tests/test_twin.py``). Per layer and step::

    a  = wrap32(floor((W_eff · s_in) · 2^weight_exp))     dense (W_eff: Lava's clip + truncate)
    a  = wrap24(conv(s_in, W))                            conv / pool
    u  = wrap24₁(wrap32(trunc(u·(4096 − du − 1)/4096) + wrap32(a·2⁶)))
    v  = sat24(wrap32(trunc(v·(4096 − dv)/4096) + u + bias))
    θ  = sat_θ(θ + trunc(θ_v·(v − NDS[t]) / 2^k))         TA-LIF only (θ = vth·2⁶ at t = 0)
    s  = 1[v > θ] ;  v ← v·(1 − s)                        θ = vth·2⁶ for LIF layers

(the int32 wraps never trigger in realistic plans; they are kept so that the twin equals the
emulator even where the emulator's static bound says they can.)

Backward: straight-through rounding (``trunc``/``floor``/wrap/saturation pass the gradient
through unchanged) and a surrogate for the spike, applied in float units
``(v − θ) / (scale·2⁶)`` so the surrogate has the same width as in float training; the reset
uses the detached spike, as the float model's :func:`~neurodeploy.neurons.lif_integrate` does,
and the TA-LIF threshold is *not* detached (θ depends on v: attacks see the adaptation, as in
the float HoSNN model). This lets white-box attacks (PGD, APGD …) target the deployed model
itself rather than the float model it came from.

Input: an image batch ``x`` in [0, 1] is Bernoulli-encoded on the host with a fixed seed
(the same spikes every backend gets); the encoder's straight-through gradient carries the
attack gradient to ``x``. Spike inputs pass through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.encoding import Encoder, make_encoder, make_generator
from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import FixedPointFormat
from neurodeploy.sims.emulator import check_format_supported, lava_dense_effective_weights
from neurodeploy.sims.lava_runner import TALIFFixed
from neurodeploy.surrogates import make_surrogate


class _StraightThrough(torch.autograd.Function):
    """``op(x, *args)`` forward, identity backward: every rounding, wrap and saturation of the
    fixed-point arithmetic passes the gradient through unchanged. The forward value is ``op``'s
    own result, so the integers stay exact."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op, *args):  # type: ignore[override]
        ctx.n_args = len(args)
        return op(x, *args)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return (g, None, *([None] * ctx.n_args))


def _wrap_once_op(x: torch.Tensor, half: float) -> torch.Tensor:
    """Lava's asymmetric single wrap of ``u``: ``u > half → u − 2·half``; ``u ≤ −half → u + 2·half``."""
    return torch.where(x > half, x - 2 * half, torch.where(x <= -half, x + 2 * half, x))


def _signed_wrap_op(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap to ``bits`` signed bits, ``[−2^(bits−1), 2^(bits−1))`` (Lava Conv's
    ``signed_clamp`` for 24 bits; int32 ports and state for 32)."""
    m = float(2**bits)
    return x - m * torch.floor((x + m / 2) / m)


def _clamp_op(x: torch.Tensor, lim: float) -> torch.Tensor:
    return x.clamp(-lim, lim)


def _trunc0(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, torch.trunc)


def _floor(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, torch.floor)


def _wrap_once(x: torch.Tensor, half: float) -> torch.Tensor:
    return _StraightThrough.apply(x, _wrap_once_op, half)


def _signed_wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    return _StraightThrough.apply(x, _signed_wrap_op, bits)


def _saturate(x: torch.Tensor, lim: float) -> torch.Tensor:
    return _StraightThrough.apply(x, _clamp_op, lim)


def _decay(x: torch.Tensor, factor: int, unity: int) -> torch.Tensor:
    """``sign(x·f) · (|x·f| >> decay_bits)`` = trunc(x·f / unity) for integer-valued x."""
    return _trunc0(x * (factor / float(unity)))


class TwinLayer(nn.Module):
    """One plan layer: integer synapse + fixed-point LIF / TA-LIF, differentiable."""

    def __init__(self, layer: PlanLayer, surrogate: str, fmt: FixedPointFormat) -> None:
        super().__init__()
        self.layer = layer
        self.fmt = fmt
        w = (lava_dense_effective_weights(layer.weights, fmt=fmt) if layer.kind == "dense"
             else layer.weights)
        self.register_buffer("weight", torch.tensor(np.asarray(w), dtype=torch.float64))
        bias = torch.tensor(np.asarray(layer.bias_mant), dtype=torch.float64)
        bias = (bias * (2.0**layer.bias_exp) if layer.bias_exp >= 0
                else torch.floor(bias / float(2 ** (-layer.bias_exp))))
        self.register_buffer("bias", bias.reshape(layer.out_shape))
        self.vth64 = float(fmt.vth_scaled(layer.vth))
        self.unit = fmt.v_per_float(layer.scale)  # v units per float unit
        self.spike_fn = make_surrogate(surrogate)
        self.talif: TALIFFixed | None = None
        if layer.neuron == "talif":
            tal = TALIFFixed.from_layer(layer, fmt)
            self.talif = tal
            shape = layer.out_shape
            self.register_buffer("theta_v", torch.tensor(tal.theta_v, dtype=torch.float64)
                                 .reshape(shape))
            self.register_buffer("nds", torch.tensor(tal.nds, dtype=torch.float64)
                                 .reshape(tal.nds.shape[0], *shape))
        elif layer.neuron != "lif":
            raise ConfigError(f"hardware twin: plan layer {layer.name} has neuron "
                              f"{layer.neuron!r}; supported: 'lif', 'talif'")

    def synapse(self, s: torch.Tensor) -> torch.Tensor:
        L = self.layer
        if L.flatten_before:
            s = s.flatten(1)
        if L.kind == "dense":
            a = s @ self.weight.T
            if L.weight_exp > 0:
                a = a * float(2**L.weight_exp)
            elif L.weight_exp < 0:
                a = _floor(a / float(2 ** (-L.weight_exp)))
            # int64 sum → int32 port
            return _signed_wrap(a, self.fmt.port_bits).reshape(s.shape[0], *L.out_shape)
        a = F.conv2d(s, self.weight, stride=tuple(L.stride), padding=tuple(L.padding),
                     groups=L.groups)
        return _signed_wrap(a, self.fmt.conv_output_bits)

    def forward(self, spikes_in: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``spikes_in`` ``[T, B, *in_shape]`` → (spikes, pre-reset v, θ or None), each
        ``[T, B, *out_shape]`` (θ only for TA-LIF layers, in v units)."""
        L = self.layer
        T, B = spikes_in.shape[:2]
        a_all = self.synapse(spikes_in.reshape(T * B, *spikes_in.shape[2:]))
        a_all = a_all.reshape(T, B, *L.out_shape)
        fmt = self.fmt
        pb, unity, half = fmt.port_bits, fmt.decay_unity, float(fmt.state_half)
        act = _signed_wrap(a_all * float(2**fmt.activation_shift), pb)
        u = torch.zeros_like(a_all[0])
        v = torch.zeros_like(a_all[0])
        theta = torch.full_like(a_all[0], self.vth64)
        spk, mem, thetas = [], [], []
        du_factor = fmt.u_factor(L.du)
        dv_factor = fmt.v_factor(L.dv)
        tal = self.talif
        for t in range(T):
            u = _wrap_once(_signed_wrap(_decay(u, du_factor, unity) + act[t], pb), half)
            v = _saturate(_signed_wrap(_decay(v, dv_factor, unity) + u + self.bias, pb),
                          float(fmt.state_max))
            if tal is not None:
                row = self.nds[min(t, self.nds.shape[0] - 1)]
                step = _trunc0(self.theta_v * (v - row) / float(2**tal.shift))
                theta = _saturate(theta + step, float(tal.theta_max))
                thetas.append(theta)
                s = self.spike_fn((v - theta) / self.unit)
            else:
                s = self.spike_fn((v - self.vth64) / self.unit)
            spk.append(s)
            mem.append(v)
            v = v * (1.0 - s.detach())
        return torch.stack(spk), torch.stack(mem), (torch.stack(thetas) if thetas else None)


@dataclass
class TwinTrace:
    """Per-layer outputs of :meth:`HardwareTwin.run`: spikes, pre-reset v and θ (TA-LIF
    layers; None for LIF), each ``[T, B, *out_shape]`` float64 holding integers."""

    spikes: list[torch.Tensor] = field(default_factory=list)
    v: list[torch.Tensor] = field(default_factory=list)
    theta: list[torch.Tensor | None] = field(default_factory=list)


class HardwareTwin(nn.Module):
    """Differentiable fixed-point model of a deployment plan: ``x → output spike counts``.

    Parameters
    ----------
    plan : the deployment plan (``lif`` and ``talif`` layers).
    encoding : input encoding name (``bernoulli``; ``direct`` is refused: the chip takes
        spikes; ``spikes`` for spike inputs).
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
        if encoding == "direct":
            raise ConfigError("the chip takes spikes: direct (current) encoding cannot be deployed")
        plan.validate()
        check_format_supported(plan.fixed_point, "hardware twin")
        self.plan = plan
        self.layers = nn.ModuleList(TwinLayer(L, surrogate, plan.fixed_point)
                                    for L in plan.layers)
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

    def run(self, spikes: torch.Tensor) -> TwinTrace:
        """Every layer's spikes, pre-reset v and θ for a spike train ``[T, B, *input_shape]``."""
        h = spikes.to(torch.float64)
        trace = TwinTrace()
        for layer in self.layers:
            h, v, th = layer(h)
            trace.spikes.append(h)
            trace.v.append(v)
            trace.theta.append(th)
        return trace

    def run_spikes(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        """All layers' output spikes for a spike train ``[T, B, *input_shape]``."""
        return self.run(spikes).spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Encode in x's dtype so the same seed gives the same spikes as the float classifier.
        spikes = self.encoder(x, self.generator)
        return self.run_spikes(spikes)[-1].sum(0).to(x.dtype)
