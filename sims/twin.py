"""The hardware twin: the emulator's integer arithmetic, made differentiable.

Forward: exactly the fixed-point semantics of a :class:`~neurodeploy.exporters.plan.DeploymentPlan`
as :class:`~neurodeploy.sims.emulator.Emulator` computes them — the same step bodies, those of
:mod:`neurodeploy.sims.kernel`, run with :class:`StraightThroughArithmetic` instead of the
emulator's exact in-place arithmetic — on float64 tensors that hold integers (every product
and sum stays below 2^53, so float64 is exact), aligned timing (no pipeline delay), so its
spikes equal the bit-exact emulator's spike for spike on every layer (tested,
``tests/test_twin.py``). Per layer and step (constants from the plan's format)::

    a  = wrap_port(floor((W_eff · s_in) · 2^weight_exp))  dense (W_eff: Lava's clip + truncate)
    a  = wrap_conv(conv(s_in, W))                         conv / pool
    u  = over_u(trunc(u·f_u / 2^decay_bits) + (a << activation_shift))
    v  = over_v(trunc(v·f_v / 2^decay_bits) + u + bias)
    θ  = sat_θ(θ + trunc(θ_v·(v − NDS[t]) / 2^k))         TA-LIF only (θ = vth << shift at t = 0)
    s  = 1[v > θ] ;  v ← v·(1 − s)                        θ = vth << threshold_shift for LIF

(the port-word wraps are skipped where the kernel's static bound proves them no-ops: the same
values, and the same straight-through gradient.)

Backward: straight-through rounding (``trunc``/``floor``/wrap/saturation pass the gradient
through unchanged) and a surrogate for the spike, applied in float units
``(v − θ) / (scale·2^threshold_shift)`` so the surrogate has the same width as in float training; the reset
uses the detached spike, as the float model's :func:`~neurodeploy.neurons.lif_integrate` does,
and the TA-LIF threshold is *not* detached (θ depends on v: attacks see the adaptation, as in
the float HoSNN model). This lets white-box attacks (PGD, APGD …) target the deployed model
itself rather than the float model it came from.

Input: an image batch ``x`` in [0, 1] is Bernoulli-encoded on the host with a fixed seed
(the same spikes every backend gets); the encoder's straight-through gradient carries the
attack gradient to ``x``. Spike inputs pass through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.encoding import Encoder, make_encoder, make_generator
from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import FixedPointFormat
from neurodeploy.sims.kernel import (
    NEURON_KINDS,
    SYNAPSE_KINDS,
    DenseSynapse,
    activation,
    check_format_supported,
    dense_effective_weights,
    neuron_constants,
    prepare_layer,
    wrap_once,
    wrap_signed,
)
from neurodeploy.sims.lava_runner import check_plan_supported
from neurodeploy.surrogates import make_surrogate
from neurodeploy.trace import Trace


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


class StraightThroughArithmetic:
    """The kernel's :class:`~neurodeploy.sims.kernel.Arithmetic` for the twin: the exact
    integer values, out of place; every rounding, wrap and saturation passes the gradient
    through unchanged; the spike is the surrogate of ``(v − θ) / unit`` (float units, so its
    width is the float model's); the reset uses the detached spike."""

    def __init__(self, surrogate: str) -> None:
        self.spike_fn = make_surrogate(surrogate)

    def decay(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        return _StraightThrough.apply(x * factor, torch.trunc)

    def shift_trunc(self, x: torch.Tensor, inv: float) -> torch.Tensor:
        return _StraightThrough.apply(x * inv, torch.trunc)

    def floor(self, x: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(x, torch.floor)

    def add(self, x: torch.Tensor, y: torch.Tensor | float) -> torch.Tensor:
        return x + y

    def wrap(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        return _StraightThrough.apply(x, wrap_signed, bits)

    def wrap_once(self, x: torch.Tensor, half: float) -> torch.Tensor:
        return _StraightThrough.apply(x, wrap_once, half)

    def saturate(self, x: torch.Tensor, lim: float) -> torch.Tensor:
        return _StraightThrough.apply(x, torch.clamp, -lim, lim)

    def at_least(self, x: torch.Tensor, lo: float) -> torch.Tensor:
        return torch.clamp_min(x, lo)  # a real floor: its own gradient (0 below lo)

    def count(self, v: torch.Tensor, theta: float, n_max: float) -> torch.Tensor:
        """Graded spike counts, ``clip(⌊v/θ⌋, 0, n_max)`` straight through (gradient 1/θ)."""
        return _StraightThrough.apply(v / theta, lambda x: torch.clamp(torch.floor(x), 0.0,
                                                                        n_max))

    def fire(self, v: torch.Tensor, theta: torch.Tensor | float, unit: float,
             inclusive: bool) -> torch.Tensor:
        # v ≥ θ ⟺ v − θ + ½ > 0 for integers: the surrogate stays centred between the two.
        # cast back: snntorch's surrogates (atan, …) return float32 spikes, which would break
        # the twin's float64 integer arithmetic (values are 0/1, so the cast is exact)
        return self.spike_fn((v - theta + (0.5 if inclusive else 0.0)) / unit).to(v.dtype)

    def reset(self, v: torch.Tensor, s: torch.Tensor, theta: torch.Tensor | float,
              subtract: bool) -> torch.Tensor:
        if subtract:
            return v - s.detach() * theta
        return v * (1.0 - s.detach())

    def matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w.T

    def conv(self, x: torch.Tensor, w: torch.Tensor, L: PlanLayer) -> torch.Tensor:
        return F.conv2d(x, w, stride=tuple(L.stride), padding=tuple(L.padding), groups=L.groups)


class TwinLayer(nn.Module):
    """One plan layer: the kernel's integer synapse + neuron step, differentiable."""

    def __init__(self, layer: PlanLayer, arith: StraightThroughArithmetic,
                 fmt: FixedPointFormat, in_max: int = 1) -> None:
        super().__init__()
        self.layer = layer
        self.arith = arith
        self.data = prepare_layer(layer, fmt, in_max)
        self.register_buffer("weight", torch.tensor(self.data.weights, dtype=torch.float64))
        # skip edges: each its own Dense (Lava's clip + truncate per matrix)
        self.skip_from = tuple(int(j) for j in layer.skip_from)
        for m, w in enumerate(layer.skip_weights):
            self.register_buffer(f"skip{m}", torch.tensor(dense_effective_weights(w, fmt),
                                                          dtype=torch.float64))
        consts = neuron_constants(self.data, torch.float64, torch.device("cpu"))
        for key, c in consts.items():  # buffers: they follow the module to its device
            self.register_buffer(key, c)
        self._const_names = sorted(consts)

    def forward(self, spikes_in: torch.Tensor, sources: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``spikes_in`` ``[T, B, *in_shape]`` → (spikes, pre-reset v, θ or None), each
        ``[T, B, *out_shape]`` (θ only for adaptive-threshold layers, in v units).
        ``sources`` (the input, then every earlier layer's spikes) feed skip edges."""
        P, ar = self.data, self.arith
        T, B = spikes_in.shape[:2]
        x = spikes_in.reshape(T * B, *spikes_in.shape[2:])
        a = SYNAPSE_KINDS[P.layer.kind].apply(ar, P, self.weight, x)
        for m, j in enumerate(self.skip_from):  # same step as the main input (module doc)
            if sources is None:
                raise ConfigError(f"plan layer {P.layer.name} has skip edges: pass sources")
            src = sources[j + 1]
            a = a + DenseSynapse.apply(ar, P, getattr(self, f"skip{m}"),
                                       src.reshape(T * B, *src.shape[2:]))
            if not P.small:
                a = ar.wrap(a, P.fmt.port_bits)
        act = activation(ar, P, a).reshape(T, B, *P.layer.out_shape)
        consts = {k: getattr(self, k) for k in self._const_names}
        kind = NEURON_KINDS[P.layer.neuron]
        st = kind.init(P, act[0])
        spk, mem, thetas = [], [], []
        for t in range(T):
            s, v_pre, st = kind.step(ar, P, consts, st, act[t], t)
            spk.append(s)
            mem.append(v_pre)
            if st.theta is not None:
                thetas.append(st.theta)
        return torch.stack(spk), torch.stack(mem), (torch.stack(thetas) if thetas else None)


#: The twin's result is the one backend :class:`~neurodeploy.trace.Trace`.
TwinTrace = Trace


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
        check_plan_supported(plan, lava_format=False)
        check_format_supported(plan.fixed_point)
        self.plan = plan
        arith = StraightThroughArithmetic(surrogate)
        self.layers = nn.ModuleList(TwinLayer(L, arith, plan.fixed_point, plan.in_max(k))
                                    for k, L in enumerate(plan.layers))
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

    #: backend name in :class:`~neurodeploy.trace.Trace` (the backend contract)
    name = "twin"

    def run(self, spikes: torch.Tensor, record: bool = True) -> Trace:
        """Run on a spike train ``[T, B, *input_shape]`` (the backend contract of
        :mod:`neurodeploy.trace`): ``record`` keeps every layer's spikes, pre-reset v and θ
        (float64 holding integers; θ None for fixed-threshold layers)."""
        h = spikes.to(torch.float64)
        layer_s, layer_v, layer_th = [], [], []
        v = h
        sources = [h]  # the input, then each layer's spikes (read by skip edges)
        for layer in self.layers:
            h, v, th = layer(h, sources)
            sources.append(h)
            if record:
                layer_s.append(h)
                layer_v.append(v)
                layer_th.append(th)
        logits = h.sum(0)
        if self.plan.readout == "membrane":  # Σ_t v of the read-out, in float units
            last = self.layers[-1].data
            logits = v.reshape(v.shape[0], v.shape[1], -1).sum(0) / last.unit
        return Trace(out_spikes=h, logits=logits, spikes=tuple(layer_s), v=tuple(layer_v),
                     theta=tuple(layer_th), backend=self.name)

    def run_spikes(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        """All layers' output spikes for a spike train ``[T, B, *input_shape]``."""
        return list(self.run(spikes, record=True).spikes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Encode in x's dtype so the same seed gives the same spikes as the float classifier.
        spikes = self.encoder(x, self.generator)
        return self.run(spikes, record=False).logits.to(x.dtype)
