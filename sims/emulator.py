"""Bit-exact, batched emulator of a deployment plan (Lava ``fixed_pt`` semantics), CPU or CUDA.

Per layer k and step t, in integers (Lava 0.10 ``PyDenseModelBitAcc`` / ``PyConvModelFixed``
and ``PyLifModelBitAcc``; every constant is a field of the plan's
:class:`~neurodeploy.exporters.profiles.FixedPointFormat`, numbers below for Lava 0.10)::

    Dense:  W_e   = truncate(clip(W, sign mode, 8 bits), 8 bits)   # mixed sign ⇒ even, floor
            a     = (W_e · s_in) << weight_exp   (>> −weight_exp, floor)  → int32 port
    Conv:   a     = wrap24(conv(s_in, W))          # weight_exp ignored, weights not clipped
    LIF:    u     = wrap24₁( trunc0(u·(4096 − du − 1) / 4096) + (a << 6) )
            v     = sat24( trunc0(v·(4096 − dv) / 4096) + u + (bias_mant << bias_exp) )
            s     = v > (vth << 6);   v[s] = 0

TA-LIF layers (``neuron = "talif"``, the custom process in ``sims/lava_procs/talif``) add,
between the voltage update and the spike, with θ = ``vth << 6`` at t = 0 and k = θ_v_shift::

            θ     = sat_θ( θ + trunc0(θ_v · (v − NDS[min(t, T_nds − 1)]) / 2^k) )
            s     = v > θ;   v[s] = 0

(θ is recorded per layer in the :class:`~neurodeploy.trace.Trace`'s ``theta``, None for LIF
layers). The step bodies are :mod:`neurodeploy.sims.kernel`'s, run with exact in-place
arithmetic; the twin runs the same bodies with straight-through arithmetic.

``wrap24₁`` is Lava's single conditional wrap (``u − 2²⁴`` if ``u > 2²³``, ``u + 2²⁴`` if
``u ≤ −2²³``), applied after the int32 arithmetic of the Python model (``a << 6`` and the sums
are int32 and wrap mod 2³²; the port casts the int64 Dense sum to int32). For realistic plans
none of the int32 wraps ever triggers; the emulator proves that per layer from a static bound
and then skips them (``LayerData.small`` of :mod:`neurodeploy.sims.kernel`).

Timing: the emulator computes the undelayed ("aligned") recurrence — layer k at step t sees
layer k−1's spikes of step t — and returns ``[T, B, …]`` per layer. Lava delays by one step per
Dense/Conv; :mod:`neurodeploy.sims.lava_runner` reads each layer's window back into the same
aligned form (staggered ``LIFReset``), so spike trains compare element by element.

:func:`reference_lava_network` is a literal one-step-at-a-time numpy transcription of the
network the Lava runner builds (Lava layouts, one-step delays, ``LIFReset``); it is only used
by tests to pin the fast emulator and Lava to the same integer model.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from neurodeploy.errors import ConfigError, DataError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import LAVA_0_10, FixedPointFormat
from neurodeploy.sims.kernel import (
    FLOAT32_EXACT,
    NEURON_KINDS,
    SYNAPSE_KINDS,
    DenseSynapse,
    ExactArithmetic,
    FusableExactArithmetic,
    LayerData,
    activation,
    check_format_supported,
    dense_effective_weights,
    neuron_constants,
    prepare_layer,
    wrap_signed,
)
from neurodeploy.sims.lava_runner import (
    Schedule,
    TALIFFixed,
    check_plan_supported,
    lava_conv_weight,
    lava_dense_weight,
    lava_shape,
    to_lava_layout,
)
from neurodeploy.trace import Trace

#: The LIF state and synaptic input are exact integers held in float64: every value the
#: recurrence forms is below 2^44 in magnitude (int32 state × 12-bit decay factor), far inside
#: float64's 2^53 exact-integer range, and in-place float ops are ~2× faster than int64 on CPU
#: (no vector 64-bit multiply on AVX2). Products by 2^-12 and trunc/floor are exact.
STATE_DTYPE = torch.float64

_EXACT = ExactArithmetic()
_EXACT_KEEP_V = ExactArithmetic(inplace_reset=False)  # keeps the pre-reset v (record_v)
_FUSABLE = FusableExactArithmetic()


# ----------------------------------------------------------------------------- numpy helpers


def lava_dense_effective_weights(w: np.ndarray, num_weight_bits: int | None = None,
                                 fmt: FixedPointFormat = LAVA_0_10) -> np.ndarray:
    """The weights Lava's ``PyDenseModelBitAcc`` actually uses (weightutils clip + truncate);
    see :func:`~neurodeploy.sims.kernel.dense_effective_weights`."""
    return dense_effective_weights(w, fmt, num_weight_bits)


def _cpu_float32_is_ieee() -> bool:
    """True when float32 matmuls and oneDNN convolutions on CPU run in IEEE float32 (not
    bf16/tf32 "fast math", which would round the integer products)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    if os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE", "strict").strip().lower() not in (
            "strict", ""):   # oneDNN's process-wide bf16/tf32 "fpmath" switch
        return False
    mkldnn = torch.backends.mkldnn
    for knob in (mkldnn, getattr(mkldnn, "matmul", None), getattr(mkldnn, "conv", None)):
        if getattr(knob, "fp32_precision", "none") not in ("none", "ieee"):
            return False
    return True


def _wrap_np(x: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((x.astype(np.int64) + half) % (1 << bits)) - half


# ----------------------------------------------------------------------------- fast emulator


#: The emulator's result is the one backend :class:`~neurodeploy.trace.Trace`
#: (``counts``, ``layer_spikes``, ``layer_v``, ``layer_theta`` remain as read-only views).
EmulatorResult = Trace


#: environment switch for :class:`Emulator`'s ``compile_steps`` default ("1" = on)
COMPILE_ENV = "NEURODEPLOY_COMPILE_STEPS"


class Emulator:
    """Batched bit-exact integer emulator of a :class:`DeploymentPlan`.

    Parameters
    ----------
    plan : the deployment plan (dense / conv / pool layers, every neuron kind of
        :data:`~neurodeploy.sims.kernel.NEURON_KINDS`).
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
    compile_steps : run each CPU layer's neuron steps as one ``torch.compile``d (inductor C++)
        loop over all T steps (:func:`_step_block` with
        :class:`~neurodeploy.sims.kernel.FusableExactArithmetic`: the same step, the same
        integers). Off by default: the first run of each layer (and batch size) pays the
        compilation (seconds to a minute); worth it for long or repeated runs of large
        populations. Where compilation fails the layer runs eagerly, exact either way;
        :attr:`step_paths` says which ran. ``None`` (the default) reads the environment:
        ``NEURODEPLOY_COMPILE_STEPS=1`` turns it on for every emulator a command builds.

    The step is :mod:`neurodeploy.sims.kernel`'s, run with :class:`ExactArithmetic`.
    Synaptic sums run as float matmuls that are exact because every partial sum is an integer
    below the format's mantissa limit (float32: 2²⁴ on CPU with "highest" matmul precision;
    float64: 2⁵³, used on CUDA to stay clear of TF32); conv runs as ``F.conv2d`` where torch
    picks a direct or im2col backend (oneDNN on CPU), else unfold + matmul — never Winograd
    or FFT (:func:`~neurodeploy.sims.kernel.conv_exact`). The synaptic input of a layer is
    computed for all T steps at once (one product over ``[T·B, …]``: the emulator runs layer
    by layer, so a layer's input spikes are known for every step before its neurons are
    stepped). The neuron recurrence runs in place on exact integers held in float64
    (:data:`STATE_DTYPE`). ``kernels[k]`` is layer k's :class:`~neurodeploy.sims.kernel.LayerData`.
    """

    def __init__(self, plan: DeploymentPlan, device: str | torch.device = "cpu",
                 compile_steps: bool | None = None) -> None:
        plan.validate()
        check_plan_supported(plan, lava_format=False)
        self.plan = plan
        self.fmt = plan.fixed_point
        check_format_supported(self.fmt)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        self.kernels: list[LayerData] = [prepare_layer(L, self.fmt, plan.in_max(k))
                                         for k, L in enumerate(plan.layers)]
        self._weights = [self._device_weights(P) for P in self.kernels]
        # skip edges (plan layer k reads layer j's spikes of the same step, j < k − 1)
        self._skips = [[(int(j), torch.as_tensor(dense_effective_weights(w, self.fmt),
                                                 dtype=self._weights[k].dtype,
                                                 device=self.device))
                        for j, w in zip(L.skip_from, L.skip_weights, strict=True)]
                       for k, L in enumerate(plan.layers)]
        self._act_weights = [self._shifted_weights(k) for k in range(len(self.kernels))]
        self._consts = [neuron_constants(P, STATE_DTYPE, self.device) for P in self.kernels]
        self._nhwc = [self._channels_last_ok(k) for k in range(len(self.kernels))]
        # layer k's neuron constants flattened in the order run() steps them (made once here,
        # not on every run)
        self._run_consts = [self._flat_consts(k, self._nhwc[k]) for k in range(len(self.kernels))]
        if compile_steps is None:  # every command's emulator: NEURODEPLOY_COMPILE_STEPS=1
            compile_steps = os.environ.get(COMPILE_ENV) == "1"
        self.compile_steps = compile_steps and self.device.type == "cpu"
        #: per layer, how its neurons last ran: "compiled" or "eager" (None: not yet)
        self.step_paths: list[str | None] = [None] * len(self.kernels)

    def _device_weights(self, P: LayerData) -> torch.Tensor:
        """Float32 where every partial synaptic sum is provably an exact float32 integer
        (``P.bound`` = max over outputs of ``Σ|W|`` < 2^24, binary inputs) and the CPU runs
        float32 products at full precision; float64 (exact below 2^53) otherwise."""
        fp32_ok = (P.bound < FLOAT32_EXACT and self.device.type == "cpu"
                   and _cpu_float32_is_ieee())
        dtype = torch.float32 if fp32_ok else torch.float64
        return torch.as_tensor(P.weights, dtype=dtype, device=self.device)

    #: run conv/pool layers with their neurons in (H, W, C) order on CPU (oneDNN's
    #: channels-last convolutions are ~1.7× faster than NCHW ones; spikes stay in that order
    #: from one conv layer to the next). Traces are returned in plan order all the same.
    CHANNELS_LAST = True

    def _channels_last_ok(self, k: int) -> bool:
        """Layer k may run in (H, W, C) order: a conv/pool on CPU whose neuron constants are
        all per-neuron arrays ``[…, C, H, W]`` (permuted alike; a ``w_rec`` ``[N, N]`` is not
        and keeps plan order)."""
        L = self.kernels[k].layer
        shape = tuple(L.out_shape)
        return (self.CHANNELS_LAST and L.kind != "dense" and len(shape) == 3
                and self.device.type == "cpu"
                and all(tuple(c.shape[c.dim() - 3:]) == shape
                        for c in self._consts[k].values()))

    def _flat_consts(self, k: int, nhwc: bool) -> dict[str, torch.Tensor]:
        """Layer k's neuron constants with the neuron dims flattened (``[…, N]``), in plan
        order or (H, W, C) order."""
        shape = tuple(self.kernels[k].layer.out_shape)
        out = {}
        for key, c in self._consts[k].items():
            lead = c.shape[:c.dim() - len(shape)]
            if nhwc:
                c = c.permute(*range(len(lead)), -2, -1, -3)
            out[key] = c.reshape(*lead, -1)
        return out

    @staticmethod
    def _hwc_to_plan(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """``[T, B, H·W·C]`` in (H, W, C) order → ``[T, B, C, H, W]`` (a copy)."""
        C, H, W = shape
        T, B = t.shape[:2]
        return t.reshape(T, B, H, W, C).permute(0, 1, 4, 2, 3).contiguous()

    def _plan_order(self, t: torch.Tensor, shape: tuple[int, ...], nhwc: bool
                    ) -> torch.Tensor:
        """``[T, B, N]`` → ``[T, B, *shape]`` in plan order."""
        return self._hwc_to_plan(t, shape) if nhwc else t.reshape(*t.shape[:2], *shape)

    def _synapse(self, k: int, h: torch.Tensor, h_hwc: tuple[int, ...] | None
                 ) -> tuple[torch.Tensor, bool]:
        """:meth:`synaptic_input` inside :meth:`run`: ``h`` ``[T, B, …]`` in plan order, or
        ``[T, B, N]`` in (H, W, C) order of shape ``h_hwc`` = (C, H, W); the result in
        (H, W, C) order where ``self._nhwc[k]``, and whether it is already shifted (summed
        with :meth:`_shifted_weights`)."""
        P = self.kernels[k]
        T, B = h.shape[:2]
        w = self._act_weights[k]
        shifted = w is not None
        w = self._weights[k] if w is None else w
        if not self._nhwc[k]:
            if h_hwc is not None:
                h = self._hwc_to_plan(h, h_hwc)
            x = h.reshape(T * B, *h.shape[2:])
            return SYNAPSE_KINDS[P.layer.kind].apply(_EXACT, P, w, x).reshape(T, B, -1), shifted
        C, H, W = P.layer.in_shape
        if h_hwc is not None:   # a channels-last view of the (H, W, C) spikes: no copy
            x = h.reshape(T * B, H, W, C).permute(0, 3, 1, 2)
        else:
            x = h.reshape(T * B, C, H, W).contiguous(memory_format=torch.channels_last)
        a = SYNAPSE_KINDS[P.layer.kind].apply(_EXACT, P, w, x)
        return a.permute(0, 2, 3, 1).reshape(T, B, -1), shifted

    def _shifted_weights(self, k: int) -> torch.Tensor | None:
        """``W · 2^activation_shift`` where ``a << activation_shift`` may be taken inside the
        synaptic sum (no wrap in between: ``P.small``, and for conv ``Σ|W| < 2^(conv_output_bits
        − 1)``; dense needs ``weight_exp ≥ 0``, as the floor of a negative exponent does not
        commute with the shift), else None. Exact: every partial sum is a power-of-two multiple
        of an exact integer partial sum, and ``|a << shift| ≤ 2^state_bits`` under ``small``."""
        P = self.kernels[k]
        L = P.layer
        if not P.small or (L.kind == "dense" and L.weight_exp < 0):
            return None
        if L.kind != "dense" and P.bound >= 1 << (self.fmt.conv_output_bits - 1):
            return None
        return self._weights[k] * float(1 << self.fmt.activation_shift)

    def _activation(self, k: int, h: torch.Tensor, h_hwc: tuple[int, ...] | None
                    ) -> torch.Tensor:
        """``wrap_port(a << activation_shift)`` of layer k inside :meth:`run` (the shift folded
        into the weights where :meth:`_shifted_weights` allows)."""
        a, shifted = self._synapse(k, h, h_hwc)
        return a if shifted else activation(_EXACT, self.kernels[k], a)

    # -------------------------------------------------------------- synapses (all T at once)

    def synaptic_input(self, k: int, s_in: torch.Tensor,
                       sources: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Integer input ``a`` of layer k for spikes ``[T, B, *in_shape]`` → ``[T, B, N]``
        (exact integers held in the layer's weight dtype: float32 or float64, see
        :meth:`_device_weights`). ``sources`` (the network input, then every layer's spikes so
        far, plan order) feed the layer's skip edges: each is a Dense of its own, and the port
        adds the int32 words (wrapped as Lava's port does)."""
        P = self.kernels[k]
        T, B = s_in.shape[:2]
        x = s_in.reshape(T * B, *s_in.shape[2:])
        a = SYNAPSE_KINDS[P.layer.kind].apply(_EXACT, P, self._weights[k], x)
        for j, w in self._skips[k]:
            if sources is None or sources[j + 1] is None:
                raise ConfigError(f"plan layer {P.layer.name} has skip edges: pass sources")
            src = sources[j + 1]
            a = a + DenseSynapse.apply(_EXACT, P, w, src.reshape(T * B, *src.shape[2:]))
            if not P.small:
                a = wrap_signed(a, P.fmt.port_bits)
        return a.reshape(T, B, -1)

    # -------------------------------------------------------------- neurons (step loop)

    def lif_run(self, k: int, a: torch.Tensor, record_v: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                           torch.Tensor | None]:
        """Run layer k's neurons over ``a`` ``[T, B, N]`` → (spikes uint8, int64 v before
        reset or None, int64 v after reset or None, int64 θ ``[T, B, N]`` for
        adaptive-threshold layers or None); the voltages only with ``record_v``.

        ``a`` may be float32 (exact integers below 2^24, see :meth:`_device_weights`); the
        state u, v, θ is float64 (:data:`STATE_DTYPE`) and adds it exactly. Samples are
        independent, so the batch is stepped in blocks of :meth:`_block_rows` rows, each
        through all T steps: a block's state stays in cache across the step's passes."""
        return self._neurons(k, activation(_EXACT, self.kernels[k], a), record_v,
                             self._flat_consts(k, nhwc=False))

    def _neurons(self, k: int, act: torch.Tensor, record_v: bool,
                 consts: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                            torch.Tensor | None]:
        """:meth:`lif_run` from ``act`` = ``wrap_port(a << activation_shift)``, with the
        neuron constants ``[…, N]`` given (in ``act``'s neuron order)."""
        P = self.kernels[k]
        T, B, N = act.shape
        kind = NEURON_KINDS[P.layer.neuron]
        if self.compile_steps and B * N > 0 and T <= self.COMPILE_MAX_STEPS:
            try:
                with torch._dynamo.config.patch(recompile_limit=256):  # one per layer shape
                    out = _compiled_step_block()(kind, _FUSABLE, P, consts, act, record_v)
            except Exception:  # no compiler, an unsupported op, …: the eager loop, as exact
                self.compile_steps = False
            else:
                self.step_paths[k] = "compiled"
                return out
        self.step_paths[k] = "eager"
        ar = _EXACT_KEEP_V if record_v else _EXACT
        dev = act.device
        spikes = torch.empty(T, B, N, dtype=torch.uint8, device=dev)
        v_pre = torch.empty(T, B, N, dtype=torch.int64, device=dev) if record_v else None
        v_post = torch.empty_like(v_pre) if record_v else None
        thetas = None
        rows = self._block_rows(B, N)
        for b0 in range(0, B, rows):
            blk = slice(b0, min(B, b0 + rows))
            st = kind.init(P, torch.empty(blk.stop - b0, N, dtype=STATE_DTYPE,
                                          device=dev))
            if st.theta is not None and thetas is None:
                thetas = torch.empty(T, B, N, dtype=torch.int64, device=dev)
            for t in range(T):
                # widened per block (in cache): float64 + float32 would convert anyway
                s, v, st = kind.step(ar, P, consts, st, act[t, blk].to(STATE_DTYPE), t)
                spikes[t, blk] = s
                if record_v:
                    v_pre[t, blk] = v
                    v_post[t, blk] = st.v
                if thetas is not None:
                    thetas[t, blk] = st.theta
        return spikes, v_pre, v_post, thetas

    #: longest run the compiled step loop takes (it unrolls T: compile time grows with T)
    COMPILE_MAX_STEPS = 32

    #: elements of one state tensor per block of the CPU step loop (u, v, the step's
    #: temporaries and a block of the input stay in L2: 256 KB each in float64)
    BLOCK_ELEMENTS = 1 << 15

    def _block_rows(self, B: int, N: int) -> int:
        """Batch rows per block of :meth:`lif_run`: all of them on CUDA (one launch per op),
        else ~:attr:`BLOCK_ELEMENTS` elements."""
        if self.device.type != "cpu":
            return max(B, 1)
        return max(1, min(B, self.BLOCK_ELEMENTS // max(N, 1)))

    # -------------------------------------------------------------- whole network

    #: backend name in :class:`~neurodeploy.trace.Trace` (the backend contract)
    name = "emulator"

    def run(self, spikes: torch.Tensor | np.ndarray, record: bool = True,
            record_v: bool = False) -> Trace:
        """Run the plan on binary input spikes ``[T, B, *input_shape]`` (the backend contract
        of :mod:`neurodeploy.trace`).

        ``record`` keeps every layer's spikes and thresholds, ``record_v`` every layer's
        voltages before (``v``) and after (``v_after``) the reset, int64 v units.
        """
        x = self._check_input(spikes)
        T, B = x.shape[:2]
        layer_s, layer_th, layer_v, layer_va = [], [], [], []
        h, h_hwc = x, None
        membrane = self.plan.readout == "membrane"
        v_out = None
        read = {j + 1 for skips in self._skips for j, _ in skips}  # sources skip edges read
        sources: list[torch.Tensor | None] = [x]  # the input, then each layer's spikes
        for k, P in enumerate(self.kernels):
            out_shape = tuple(P.layer.out_shape)
            shape = (T, B, *out_shape)
            nhwc = self._nhwc[k]
            if self._skips[k]:  # skip edges add into the port before the shift: no fold
                hp = h if h_hwc is None else self._hwc_to_plan(h, h_hwc)
                act = activation(_EXACT, P, self.synaptic_input(k, hp, sources))
            else:
                act = self._activation(k, h, h_hwc)
            last_li = membrane and k == len(self.kernels) - 1
            s, v, va, th = self._neurons(k, act, record_v or last_li,
                                         self._run_consts[k])
            if last_li:  # the read-out: the membrane each step (v units, plan order)
                v_out = self._plan_order(v, out_shape, nhwc).reshape(T, B, -1)
            h, h_hwc = (s, out_shape) if nhwc else (s.reshape(shape), None)
            sources.append(self._plan_order(s, out_shape, nhwc) if k + 1 in read else None)
            if record:
                layer_s.append(self._plan_order(s, out_shape, nhwc))
                layer_th.append(None if th is None else self._plan_order(th, out_shape, nhwc))
            if record_v:
                layer_v.append(self._plan_order(v, out_shape, nhwc))
                layer_va.append(self._plan_order(va, out_shape, nhwc))
        if h_hwc is not None:
            h = self._hwc_to_plan(h, h_hwc)
        out = h.reshape(T, B, -1)
        # a membrane read-out (plan.readout): logits = Σ_t v (v units), as the float
        # interpreter sums its output membrane; ``out_v`` in meta holds v [T, B, N]
        logits = out.sum(0, dtype=torch.int64) if v_out is None else v_out.sum(0)
        meta = {} if v_out is None else {"readout": "membrane", "out_v": v_out}
        return Trace(out_spikes=out, logits=logits,
                     spikes=tuple(layer_s), v=tuple(layer_v), theta=tuple(layer_th),
                     v_after=tuple(layer_va), backend=self.name, meta=meta)

    def _check_input(self, spikes: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(spikes)
        want = tuple(self.plan.input_shape)
        if x.dim() != len(want) + 2 or tuple(x.shape[2:]) != want:
            raise DataError(f"emulator input must be [T, B, {', '.join(map(str, want))}], got "
                            f"{tuple(x.shape)}")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise DataError("emulator input contains NaN or inf")
        if x.dtype in (torch.bool, torch.uint8):   # one pass: 0/1 iff max ≤ 1
            binary = x.numel() == 0 or x.dtype == torch.bool or int(x.max()) <= 1
        else:
            binary = bool(((x == 0) | (x == 1)).all())
        if not binary:
            raise DataError("emulator input must be binary spikes (0/1)")
        return x.to(device=self.device, dtype=torch.uint8)


def _step_block(kind: type, ar: FusableExactArithmetic, P: LayerData,
                consts: dict[str, torch.Tensor], act: torch.Tensor, record_v: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                           torch.Tensor | None]:
    """All T steps of ``kind`` over ``act`` ``[T, B, N]`` → the stacked (spikes uint8, v before
    reset, v after reset, θ; int64, the voltages only with ``record_v``, θ only for
    adaptive-threshold kinds), as :meth:`Emulator.lif_run` returns them. Written for
    ``torch.compile`` (:func:`_compiled_step_block`): out-of-place arithmetic, so every
    step's tensors stay valid until stacked."""
    st = kind.init(P, torch.empty(act.shape[1:], dtype=STATE_DTYPE, device=act.device))
    s_t, v_t, va_t, th_t = [], [], [], []
    for t in range(act.shape[0]):
        s, v, st = kind.step(ar, P, consts, st, act[t].to(STATE_DTYPE), t)
        s_t.append(s.to(torch.uint8))
        if record_v:
            v_t.append(v.to(torch.int64))
            va_t.append(st.v.to(torch.int64))
        if st.theta is not None:
            th_t.append(st.theta.to(torch.int64))
    return (torch.stack(s_t), torch.stack(v_t) if record_v else None,
            torch.stack(va_t) if record_v else None, torch.stack(th_t) if th_t else None)


_COMPILED_STEP_BLOCK = None


def _compiled_step_block():
    """:func:`_step_block` compiled by ``torch.compile`` (created once; each layer's
    constants and shapes compile a specialisation of their own, cached by torch)."""
    global _COMPILED_STEP_BLOCK
    if _COMPILED_STEP_BLOCK is None:
        _COMPILED_STEP_BLOCK = torch.compile(_step_block, dynamic=False)
    return _COMPILED_STEP_BLOCK


def spike_agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fraction of equal entries of two spike tensors of one shape: ``mean(a == b)``."""
    a_t, b_t = torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu()
    if a_t.shape != b_t.shape:
        raise ConfigError(f"spike tensors differ in shape: {tuple(a_t.shape)} vs "
                          f"{tuple(b_t.shape)}")
    if a_t.numel() == 0:
        return 1.0
    return float((a_t.to(torch.uint8) == b_t.to(torch.uint8)).double().mean())


# ----------------------------------------------------------------------------- reference


def reference_lava_network(plan: DeploymentPlan, spikes: np.ndarray,
                           period: int | None = None) -> tuple[list[np.ndarray], Schedule]:
    """Literal numpy transcription of the Lava network the runner builds, one step at a time.

    Lava layouts, ``PyDenseModelBitAcc`` / ``PyConvModelFixed`` (send the buffer, then
    compute: one step of delay), ``PyLifResetModelBitAcc`` with the runner's staggered resets,
    int32 state arrays as in the Python models. Returns each layer's global spike train
    ``[total_steps, *out_shape]`` (plan layout) and the schedule; ``schedule.window`` turns a
    train into ``[T, B, …]``. Tests only (slow).
    """
    check_plan_supported(plan)
    other = [L.name for L in plan.layers if L.neuron not in ("lif", "talif") or L.skip_from
             or any(k in L.neuron_arrays for k in ("du", "dv")) or L.weights_lo is not None
             or L.neuron_params.get("graded_bits") or "v_min" in L.neuron_params]
    if other:  # the NIR kinds are pinned by tests/test_nir_chip.py's plain-integer loop
        raise ConfigError(f"reference_lava_network transcribes LIF/TA-LIF chains only; plan "
                          f"layers {other} use other neurons, skip edges, per-neuron decays or "
                          f"version-3 fields")
    fmt = plan.fixed_point
    spikes = np.asarray(spikes)
    T, B = spikes.shape[:2]
    sched = Schedule(T, int(period or T), B, len(plan.layers))
    src = to_lava_layout(sched.source_train(spikes), len(plan.input_shape)).astype(np.int32)
    layers = []
    prev_shape = tuple(plan.input_shape)
    for L in plan.layers:
        shape_l = lava_shape(L.out_shape)
        st = {
            "L": L,
            "shape": shape_l,
            "a_buff": np.zeros(shape_l, np.int32),
            "u": np.zeros(shape_l, np.int32),
            "v": np.zeros(shape_l, np.int32),
            "bias": to_lava_layout(np.asarray(L.bias_mant).reshape(L.out_shape),
                                   len(L.out_shape)).astype(np.int16),
        }
        if L.neuron == "talif":  # PyTALIFModelFixed (sims/lava_procs/talif/models.py)
            tal = TALIFFixed.from_layer(L, fmt)
            nd = len(L.out_shape)
            st["tal"] = tal
            st["theta_v"] = to_lava_layout(tal.theta_v.reshape(L.out_shape), nd)
            st["nds"] = to_lava_layout(tal.nds.reshape((-1,) + tuple(L.out_shape)), nd)
            st["theta"] = np.full(shape_l, int(L.vth) << fmt.threshold_shift, np.int64)
        if L.kind == "dense":
            st["W"] = lava_dense_effective_weights(
                lava_dense_weight(np.asarray(L.weights), prev_shape), fmt=fmt).astype(np.int32)
        else:
            st["W"] = lava_conv_weight(np.asarray(L.weights)).astype(np.int32)
        layers.append(st)
        prev_shape = tuple(L.out_shape)
    trains = [np.zeros((sched.total_steps,) + st["shape"], np.uint8) for st in layers]
    max_uv = fmt.state_half
    for t in range(1, sched.total_steps + 1):
        s_prev = src[t - 1]                                  # RingBuffer: data[(t−1) % buffer]
        for k, st in enumerate(layers):
            L, depth = st["L"], k + 1
            a_in = np.zeros(st["shape"], np.int16) + st["a_buff"]   # port recv: int16 + int32
            # --- Dense / Conv: compute next buffer from this step's input spikes
            if L.kind == "dense":
                s_in = s_prev.reshape(-1).astype(bool)
                a_accum = st["W"][:, s_in].sum(axis=1)
                e = int(L.weight_exp)
                buff = np.left_shift(a_accum, e) if e > 0 else np.right_shift(a_accum, -e)
                st["a_buff"] = buff.astype(np.int32)       # int32 channel
            else:
                x = s_prev.reshape(lava_shape(L.in_shape)).astype(bool)
                out = _reference_conv(x, st["W"], L)
                st["a_buff"] = _wrap_np(out.astype(np.int32), fmt.conv_output_bits).astype(np.int32)
            # --- LIFReset (PyLifResetModelBitAcc.run_spk)
            if t % sched.period == sched.reset_offset(depth):
                st["u"] *= 0
                st["v"] *= 0
                if "tal" in st:
                    st["theta"][:] = int(L.vth) << fmt.threshold_shift
            eff_bias = np.left_shift(st["bias"].astype(np.int32), np.int16(L.bias_exp))
            vth = np.left_shift(np.int32(L.vth), fmt.threshold_shift)
            decayed = np.int64(st["u"]) * (fmt.decay_unity - (int(L.du)
                                                               + fmt.current_decay_offset))
            decayed = np.int32(np.sign(decayed) * np.right_shift(np.abs(decayed),
                                                                 fmt.decay_bits))
            act = np.left_shift(a_in, fmt.activation_shift)
            decayed = decayed + act
            wrapped = np.where(decayed > max_uv, decayed - 2 * max_uv, decayed)
            wrapped = np.where(wrapped <= -max_uv, decayed + 2 * max_uv, wrapped)
            st["u"][:] = wrapped
            dv = np.int64(st["v"]) * (fmt.decay_unity - (int(L.dv) + fmt.voltage_decay_offset))
            dv = np.int32(np.sign(dv) * np.right_shift(np.abs(dv), fmt.decay_bits))
            st["v"][:] = np.clip(dv + st["u"] + eff_bias, -np.int32(max_uv) + 1,
                                 np.int32(max_uv) - 1)
            if "tal" in st:
                tal = st["tal"]
                local = (t - sched.reset_offset(depth)) % sched.period
                err = st["v"].astype(np.int64) - st["nds"][min(local, len(st["nds"]) - 1)]
                prod = st["theta_v"] * err
                step = np.sign(prod) * (np.abs(prod) >> tal.shift)
                st["theta"] = np.clip(st["theta"] + step, -tal.theta_max, tal.theta_max)
                vth = st["theta"]
            s = st["v"] > vth
            st["v"][s] = 0
            trains[k][t - 1] = s
            s_prev = s.astype(np.int32)
    plan_trains = [to_lava_layout(tr, len(L.out_shape)) for tr, L in zip(trains, plan.layers, strict=True)]
    return [np.ascontiguousarray(tr) for tr in plan_trains], sched


def _reference_conv(x: np.ndarray, w: np.ndarray, L: PlanLayer) -> np.ndarray:
    """``conv/utils.conv_scipy`` on WHC tensors: true 2-D convolution per (group, out, in)."""
    pw, ph = int(L.padding[1]), int(L.padding[0])
    sw, sh = int(L.stride[1]), int(L.stride[0])
    g = int(L.groups)
    xp = np.pad(x.astype(np.float64), ((pw, pw), (ph, ph), (0, 0)))
    C_out, kw, kh, cin_g = w.shape
    Wo = (xp.shape[0] - kw) // sw + 1
    Ho = (xp.shape[1] - kh) // sh + 1
    out = np.zeros((Wo, Ho, C_out))
    k_grp = C_out // g
    for gi in range(g):
        for ko in range(k_grp):
            for c in range(cin_g):
                img = xp[:, :, c + gi * cin_g]
                ker = w[ko + gi * k_grp, :, :, c].astype(np.float64)
                full_w, full_h = img.shape[0] - kw + 1, img.shape[1] - kh + 1
                valid = np.zeros((full_w, full_h))
                for i in range(kw):          # true convolution: kernel flipped
                    for j in range(kh):
                        valid += img[i:i + full_w, j:j + full_h] * ker[kw - 1 - i, kh - 1 - j]
                out[:, :, ko + gi * k_grp] += valid[::sw, ::sh]
    return out


# ----------------------------------------------------------------------------- random plans


def _random_lif(rng: np.random.Generator, n: int, lif: dict[str, int | None],
                fmt: FixedPointFormat = LAVA_0_10) -> dict:
    """Random LIF parameters; any key given in ``lif`` (du, dv, vth, bias_exp, bias_max)
    is used as is."""
    bias_max = lif.get("bias_max")
    bias_max = (int(rng.integers(0, fmt.bias_mant_max + 1)) if bias_max is None
                else int(bias_max))
    pick = {
        "du": fmt.decay_max, "dv": int(rng.integers(0, fmt.decay_max + 1)),
        "vth": int(rng.integers(0, 2001)), "bias_exp": int(rng.integers(0, fmt.bias_exp_max + 1)),
    }
    pick.update({k: int(v) for k, v in lif.items() if v is not None and k != "bias_max"})
    pick["bias_mant"] = rng.integers(-bias_max, bias_max + 1, size=n).astype(np.int32)
    return pick


def _random_weights(rng: np.random.Generator, shape: tuple[int, ...], mode: str,
                    scale: float) -> np.ndarray:
    """``mixed_even`` (Lava-exact: even in [−256, 254]), ``mixed_any`` (any int in ±300:
    Lava clips and truncates), ``excitatory`` / ``inhibitory`` (single sign, ≤ 300)."""
    raw = rng.normal(0.0, scale, size=shape)
    if mode == "mixed_even":
        return (2 * np.clip(np.round(raw / 2), -128, 127)).astype(np.int32)
    w = np.clip(np.round(raw), -300, 300).astype(np.int32)
    if mode == "excitatory":
        return np.abs(w)
    if mode == "inhibitory":
        return -np.abs(w)
    if mode == "mixed_any":
        return w
    raise ValueError(f"unknown weight mode {mode!r}")


def random_fc_plan(rng: np.random.Generator, sizes: tuple[int, ...], num_steps: int = 10,
                   weight_mode: str = "mixed_even", weight_scale: float = 128.0,
                   weight_exp: int = 0, **lif: int | None) -> DeploymentPlan:
    """A random dense plan ``sizes[0] → sizes[1] → …`` (property tests, benchmarks)."""
    layers = []
    for i in range(len(sizes) - 1):
        n_in, n_out = int(sizes[i]), int(sizes[i + 1])
        p = _random_lif(rng, n_out, lif)
        layers.append(PlanLayer(
            name=f"fc{i + 1}", kind="dense", in_shape=(n_in,), out_shape=(n_out,),
            weights=_random_weights(rng, (n_out, n_in), weight_mode, weight_scale),
            weight_exp=int(weight_exp), scale=1.0, **p))
    # off the compiler's grid unless mixed_even: declared, so that the plan validates
    return DeploymentPlan("random", int(num_steps), (int(sizes[0]),), tuple(layers),
                          raw_weights=weight_mode != "mixed_even")


def random_conv_plan(rng: np.random.Generator, in_shape: tuple[int, int, int],
                     channels: int, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], pool: int, classes: int, num_steps: int = 6,
                     weight_scale: float = 40.0, **lif: int | None) -> DeploymentPlan:
    """Random ``conv → [pool (groups = C, stride = kernel)] → dense`` plan (PyTorch layout)."""
    C, H, W = (int(v) for v in in_shape)
    kh, kw = kernel
    Ho = (H + 2 * padding[0] - kh) // stride[0] + 1
    Wo = (W + 2 * padding[1] - kw) // stride[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"kernel {kernel} too large for input {in_shape} with {padding=}")
    out = (channels, Ho, Wo)
    layers = [PlanLayer(
        name="conv1", kind="conv", in_shape=(C, H, W), out_shape=out,
        weights=np.round(rng.normal(0, weight_scale, (channels, C, kh, kw))).astype(np.int32),
        weight_exp=0, scale=1.0, stride=tuple(stride), padding=tuple(padding),
        **_random_lif(rng, int(np.prod(out)), lif))]
    if pool > 1 and Ho >= pool and Wo >= pool:
        pout = (channels, Ho // pool, Wo // pool)
        layers.append(PlanLayer(
            name="pool2", kind="pool", in_shape=out, out_shape=pout,
            weights=np.full((channels, 1, pool, pool), int(rng.integers(1, 200)), np.int32),
            weight_exp=0, scale=1.0, stride=(pool, pool), groups=channels,
            **_random_lif(rng, int(np.prod(pout)), lif)))
        out = pout
    n_in = int(np.prod(out))
    layers.append(PlanLayer(
        name=f"fc{len(layers) + 1}", kind="dense", in_shape=out, out_shape=(classes,),
        weights=_random_weights(rng, (classes, n_in), "mixed_even", 100.0), weight_exp=0,
        scale=1.0, flatten_before=True, **_random_lif(rng, classes, lif)))
    return DeploymentPlan("random", int(num_steps), (C, H, W), tuple(layers),
                          raw_weights=True)  # conv weights are any integers (declared)
