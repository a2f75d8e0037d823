"""Per-node readers of the compiler's chain, and the constants of the NIR mapping.

One reader per NIR node type, each validating the node and returning what the chain needs:

- neurons (:data:`NEURON_READERS`, looked up by :func:`_neuron_params`): ``LIF``, ``IF``,
  ``CubaLIF``, and ``LI``, ``CubaLI``, ``I`` as the output layer → ``(kind, α, θ, input gain)``
  with ``α = 1 − dt/τ`` (forward Euler, see :mod:`~neurodeploy.exporters.nir_export`), one
  value per population or one per neuron (:data:`Decay`); CubaLIF's current decay
  ``β = 1 − dt/τ_syn`` (:func:`_current_decay`);
- synapses (:data:`SYNAPSE_READERS`): ``Affine``/``Linear``, ``Conv2d``, ``AvgPool2d``/
  ``SumPool2d`` → float64 weights and geometry (:class:`_Synapse`);
- :func:`conv_matrix`: a grouped convolution as its exact dense matrix (recurrent
  convolutions, :func:`_unrolled_conv`).

:func:`~neurodeploy.exporters.nir_chain.parse_graph` walks the graph and calls them; the
writers of the other direction are in :mod:`~neurodeploy.exporters.nir_export`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_readers import _pair

DEFAULT_DT = 1e-4
"""Seconds per time step assumed by the NIR mapping (snntorch / NIR paper convention)."""

GAIN_TOL = 1e-9
"""Relative tolerance for "input gain R·dt/τ equals 1" and for uniform per-neuron parameters:
float64 round-off of τ = dt/(1−α), R = 1/(1−α); anything larger is a real difference."""

RESET_ZERO = "zero"
RESET_SUBTRACT = "subtract"

TALIF_META_KEY = "neurodeploy.neuron"
"""Neuron-node metadata key marking neurodeploy's neuron extensions (value ``"talif"``)."""

TALIF = "talif"


def _float_tol(*arrays: Any) -> float:
    """Relative tolerance of "equals 1" / "equals 0" tests: float32 round-off (8 ulp) when a
    producer wrote float32 (snntorch: β = 0.9 → r = 9.999997), float64 round-off otherwise."""
    if any(np.asarray(a).dtype == np.float32 for a in arrays if a is not None):
        return 8 * float(np.finfo(np.float32).eps)
    return GAIN_TOL


def _uniform(arr: Any, field_name: str, where: str, allow_inf: bool = False) -> float:
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"{where}: {field_name} is empty")
    if allow_inf and np.all(np.isposinf(a)):
        return math.inf
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{where}: {field_name} holds NaN/inf")
    v = float(a[0])
    if np.any(np.abs(a - v) > GAIN_TOL * max(1.0, abs(v))):
        raise ConfigError(
            f"{where}: {field_name} differs between neurons ({a.min():g} … {a.max():g}); a Lava "
            f"LIF population (and SpikingNet) has one {field_name} per layer — the NIR "
            f"interpreter (exporters.nir_interp) runs per-neuron values; to deploy, give the "
            f"population one value"
        )
    return v


def _per_neuron(arr: Any, field_name: str, where: str, allow_inf: bool = False
                ) -> float | np.ndarray:
    """One value when the population has one (within :data:`GAIN_TOL`), else the flat
    per-neuron float64 array (NaN refused; ∞ only with ``allow_inf``)."""
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"{where}: {field_name} is empty")
    if np.any(np.isnan(a)) or (not allow_inf and not np.all(np.isfinite(a))):
        raise ConfigError(f"{where}: {field_name} holds NaN/inf")
    v = float(a[0])
    if np.all(a == v) or (math.isfinite(v) and np.all(np.isfinite(a)) and np.all(
            np.abs(a - v) <= GAIN_TOL * max(1.0, abs(v)))):
        return v
    return a


def _collapse(a: np.ndarray) -> float | np.ndarray:
    """A per-neuron array whose entries are all equal → that value."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return float(a[0]) if np.all(a == a[0]) else a


def _all_zero(arr: Any, field_name: str, where: str) -> None:
    if arr is None:
        return
    a = np.asarray(arr, dtype=np.float64)
    if np.any(a != 0):
        raise ConfigError(f"{where}: {field_name} must be 0 (got values up to "
                          f"{np.abs(a).max():g}); `export --nir` (exporters.nir_deploy) rewrites "
                          f"v_leak into the synapse bias")


def _check_reset_hint(node: nir.NIRNode, where: str) -> str:
    """The node's reset from its metadata hint: ``zero`` (also without a hint, NIR's own
    semantics) or ``subtract`` (compiled to the subtract-reset neuron); anything else refused."""
    meta = getattr(node, "metadata", None) or {}
    hint = None
    for key in ("reset", "reset_mechanism", "snntorch_reset"):
        if key in meta:
            hint = str(np.asarray(meta[key]).item() if isinstance(meta[key], np.ndarray)
                       else meta[key])
            break
    if hint is None or hint.lower() == RESET_ZERO:
        return RESET_ZERO
    if hint.lower() == RESET_SUBTRACT:
        return RESET_SUBTRACT
    raise ConfigError(
        f"{where}: metadata says reset {hint!r}; known resets are 'zero' (Lava's LIF) and "
        f"'subtract' (the sublif neuron)")


Decay = float | np.ndarray
"""One value for the population, or one per neuron (flat) where they differ."""


def _euler_decay(tau: Decay, dt: float, tol: float, what: str, where: str) -> Decay:
    """``1 − dt/τ`` per neuron (τ = ∞ → 1), snapping float32 round-off of τ = dt to 0."""
    t = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if np.any(t <= 0):
        raise ConfigError(f"{where}: {what} must be > 0, got {t.min():g}")
    with np.errstate(divide="ignore"):
        a = np.where(np.isinf(t), 1.0, 1.0 - dt / t)
    a = np.where((a < 0) & (a >= -tol), 0.0, a)  # τ = dt written in float32 (snntorch β = 0)
    if np.any(a < 0):
        raise ConfigError(f"{where}: {what} = {t.min():g} < dt = {dt:g} gives a negative decay "
                          f"1 − dt/τ = {a.min():g}; use the producer's dt (graph metadata "
                          f"'dt', or export --nir … --dt)")
    return float(a[0]) if np.ndim(tau) == 0 else _collapse(a)


def _gain(gain: np.ndarray | float, tol: float) -> Decay:
    """Input gains within ``tol`` of 1 are 1 (float round-off); one value or per neuron."""
    g = np.atleast_1d(np.asarray(gain, dtype=np.float64))
    g = np.where(np.abs(g - 1.0) <= tol, 1.0, g)
    return _collapse(g)


def _lif_params(node: nir.LIF, where: str, dt: float, last: bool
                ) -> tuple[str, Decay, float | None, Decay]:
    tau = _per_neuron(node.tau, "tau", where, allow_inf=True)
    r = _per_neuron(node.r, "r", where, allow_inf=True)
    _all_zero(node.v_leak, "v_leak", where)
    _all_zero(node.v_reset, "v_reset", where)
    tol = _float_tol(node.tau, node.r)
    t_inf, r_b = np.broadcast_arrays(np.isinf(np.asarray(tau)), np.asarray(r, np.float64))
    if np.any(t_inf & ~np.isinf(r_b)):
        raise ConfigError(f"{where}: τ = ∞ with finite r gives input gain 0; write the "
                          f"population as IF")
    alpha = _euler_decay(tau, dt, tol, "tau", where)
    theta = _uniform(node.v_threshold, "v_threshold", where)
    # τ = r = ∞ (snntorch β = 1): the limit of r·dt/τ under r = τ/dt is 1
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(t_inf, 1.0, r_b * dt / np.where(t_inf, 1.0, np.asarray(tau, np.float64)))
    kind = "if" if np.all(np.asarray(alpha) == 1.0) else "lif"
    return kind, alpha, theta, _gain(gain, tol)


def _if_params(node: nir.IF, where: str, dt: float, last: bool
               ) -> tuple[str, Decay, float | None, Decay]:
    _all_zero(node.v_reset, "v_reset", where)
    return "if", 1.0, _uniform(node.v_threshold, "v_threshold", where), _gain(
        _per_neuron(node.r, "r", where), _float_tol(node.r))


def _li_params(node: nir.LI, where: str, dt: float, last: bool
               ) -> tuple[str, Decay, float | None, Decay]:
    if not last:
        raise ConfigError(f"{where}: a non-spiking LI population is only supported as the "
                          f"output layer (its membrane is the read-out)")
    tau = _per_neuron(node.tau, "tau", where)
    _all_zero(node.v_leak, "v_leak", where)
    alpha = _euler_decay(tau, dt, _float_tol(node.tau, node.r), "tau", where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau)
    return "li", alpha, None, _gain(gain, _float_tol(node.tau, node.r))


def _i_params(node: nir.I, where: str, dt: float, last: bool
              ) -> tuple[str, Decay, float | None, Decay]:
    """NIR ``I`` (``dv/dt = R·I``): a non-leaky read-out, LI with α = 1 and gain r."""
    if not last:
        raise ConfigError(f"{where}: a non-spiking I population is only supported as the "
                          f"output layer (its membrane is the read-out)")
    return "li", 1.0, None, _gain(_per_neuron(node.r, "r", where), _float_tol(node.r))


def _cubali_params(node: nir.CubaLI, where: str, dt: float, last: bool
                   ) -> tuple[str, Decay, float | None, Decay]:
    """NIR ``CubaLI``: CubaLIF's current and membrane without the spike (the read-out)."""
    if not last:
        raise ConfigError(f"{where}: a non-spiking CubaLI population is only supported as "
                          f"the output layer (its membrane is the read-out)")
    tau = _per_neuron(node.tau_mem, "tau_mem", where)
    tol = _float_tol(node.tau_mem, node.r, node.tau_syn, node.w_in)
    alpha = _euler_decay(tau, dt, tol, "tau_mem", where)
    _beta, syn_gain = _current_decay(node, dt, where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau) * np.asarray(
        syn_gain)
    return "cubali", alpha, None, _gain(gain, tol)


def _cubalif_params(node: nir.CubaLIF, where: str, dt: float, last: bool
                    ) -> tuple[str, Decay, float | None, Decay]:
    tau = _per_neuron(node.tau_mem, "tau_mem", where)
    _all_zero(node.v_reset, "v_reset", where)  # v_leak: the plan's bias (parse_graph)
    tol = _float_tol(node.tau_mem, node.r, node.tau_syn, node.w_in)
    alpha = _euler_decay(tau, dt, tol, "tau_mem", where)
    theta = _uniform(node.v_threshold, "v_threshold", where)
    beta, syn_gain = _current_decay(node, dt, where)
    gain = np.asarray(_per_neuron(node.r, "r", where)) * dt / np.asarray(tau) * np.asarray(
        syn_gain)
    return "cubalif", alpha, theta, _gain(gain, tol)


NEURON_READERS: dict[type, Callable[..., tuple[str, Decay, float | None, Decay]]] = {
    nir.LIF: _lif_params, nir.IF: _if_params, nir.LI: _li_params, nir.CubaLIF: _cubalif_params,
    nir.I: _i_params, nir.CubaLI: _cubali_params,
}
"""NIR neuron type → (kind, α, θ, input gain) reader for the compiler's chain."""


def _neuron_params(node: nir.NIRNode, name: str, dt: float, last: bool
                   ) -> tuple[str, float, float | None, float]:
    """(kind, alpha, theta, gain) of a neuron node, validated (one reader per NIR type)."""
    where = f"node {name!r} ({type(node).__name__})"
    reader = NEURON_READERS.get(type(node))
    if reader is None:
        raise ConfigError(
            f"{where}: unsupported neuron node; supported: LIF (v_leak = 0, v_reset = 0), IF, "
            f"CubaLIF, and LI, CubaLI, I as the output layer (membrane read-out)")
    return reader(node, where, dt, last)


def _current_decay(node: nir.CubaLIF, dt: float, where: str) -> tuple[Decay, Decay]:
    """(β, input gain) of CubaLIF's current ``τ_syn·dI/dt = −I + w_in·S`` (Euler at dt), one
    value or one per neuron each."""
    tau_syn = _per_neuron(node.tau_syn, "tau_syn", where)
    beta = _euler_decay(tau_syn, dt, _float_tol(node.tau_syn), "tau_syn", where)
    if np.any(np.asarray(beta) >= 1.0):
        raise ConfigError(f"{where}: tau_syn = ∞ (no current decay) has no chip mapping")
    gain = np.asarray(_per_neuron(node.w_in, "w_in", where)) * dt / np.asarray(tau_syn)
    return beta, _collapse(gain) if np.ndim(gain) else float(gain)


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@dataclass(frozen=True)
class _Synapse:
    """What a synapse reader returns (float64 weights; pooling has none)."""

    kind: str
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1


def _read_dense(node: nir.Affine | nir.Linear, shape: tuple[int, ...], where: str) -> _Synapse:
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise ConfigError(f"{where}: weight must be 2-D, got shape {weight.shape}")
    if len(shape) != 1:
        raise ConfigError(f"{where}: a dense layer needs a flat input, got shape {shape} "
                          f"(insert a Flatten node)")
    if weight.shape[1] != shape[0]:
        raise ConfigError(f"{where}: weight {weight.shape} does not take {shape[0]} inputs")
    bias = (np.asarray(node.bias, dtype=np.float64).reshape(-1)
            if isinstance(node, nir.Affine) and node.bias is not None else None)
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ConfigError(f"{where}: bias shape {bias.shape} != ({weight.shape[0]},)")
    return _Synapse("fc", (int(weight.shape[0]),), weight, bias)


def _read_conv2d(node: nir.Conv2d, shape: tuple[int, ...], where: str) -> _Synapse:
    weight = np.asarray(node.weight, dtype=np.float64)
    if len(shape) != 3 or weight.ndim != 4:
        raise ConfigError(f"{where}: needs a (C,H,W) input and 4-D weights, got input "
                          f"{shape}, weight {weight.shape}")
    groups = int(node.groups)
    if weight.shape[1] * groups != shape[0]:
        raise ConfigError(f"{where}: weight {weight.shape} with groups={groups} does not "
                          f"take {shape[0]} input channels")
    dil = _pair(node.dilation, "dilation", where)
    if dil != (1, 1):
        raise ConfigError(f"{where}: dilation {dil} is not supported (plans have none)")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride = _pair(node.stride, "stride", where)
    if isinstance(node.padding, str):
        if node.padding == "valid":
            padding = (0, 0)
        elif all(kk % 2 == 1 for kk in kernel) and stride == (1, 1):
            padding = (kernel[0] // 2, kernel[1] // 2)
        else:
            raise ConfigError(f"{where}: padding 'same' needs odd kernels and stride 1")
    else:
        padding = _pair(node.padding, "padding", where)
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if node.bias is not None \
        else None
    if bias is not None and bias.size == 1 and weight.shape[0] > 1:
        bias = np.full(weight.shape[0], float(bias[0]))
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ConfigError(f"{where}: bias shape {bias.shape} != ({weight.shape[0]},)")
    ho = _conv_out(shape[1], kernel[0], stride[0], padding[0])
    wo = _conv_out(shape[2], kernel[1], stride[1], padding[1])
    return _Synapse("conv", (int(weight.shape[0]), ho, wo), weight, bias, kernel, stride,
                    padding, groups)


def _read_pool(node: nir.AvgPool2d | nir.SumPool2d, shape: tuple[int, ...], where: str
               ) -> _Synapse:
    if len(shape) != 3:
        raise ConfigError(f"{where}: pooling needs a (C,H,W) input, got {shape}")
    kernel = _pair(node.kernel_size, "kernel_size", where)
    stride = _pair(node.stride, "stride", where)
    pad = _pair(node.padding, "padding", where)
    if pad != (0, 0):
        raise ConfigError(f"{where}: pooling with padding {pad} is not supported")
    ho = _conv_out(shape[1], kernel[0], stride[0], 0)
    wo = _conv_out(shape[2], kernel[1], stride[1], 0)
    kind = "avgpool" if isinstance(node, nir.AvgPool2d) else "sumpool"
    return _Synapse(kind, (shape[0], ho, wo), kernel=kernel, stride=stride)


SYNAPSE_READERS: dict[type, Callable[[Any, tuple[int, ...], str], _Synapse]] = {
    nir.Affine: _read_dense, nir.Linear: _read_dense, nir.Conv2d: _read_conv2d,
    nir.AvgPool2d: _read_pool, nir.SumPool2d: _read_pool,
}
"""NIR synapse type → reader for the compiler's chain (a pooling node feeding a linear node
directly is fused by ``exporters.nir_rewrite`` first when it comes through ``export --nir``)."""


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                stride: tuple[int, int], padding: tuple[int, int], groups: int) -> np.ndarray:
    """A grouped 2-D convolution ``(C, H, W) → (C', H', W')`` as the dense matrix
    ``[C'·H'·W', C·H·W]`` (flat C·H·W orders; exact: every entry is a sum of kernel taps, one
    tap unless the kernel overlaps itself, or 0)."""
    C, H, W = in_shape
    Co, Ho, Wo = out_shape
    w = np.asarray(weight, dtype=np.float64)
    _, cin_g, kh, kw = w.shape
    cout_g = Co // groups
    i_in = np.arange(C * H * W).reshape(C, H, W)
    i_out = np.arange(Co * Ho * Wo).reshape(Co, Ho, Wo)
    m = np.zeros((Co * Ho * Wo, C * H * W))
    for o in range(Co):
        c0 = (o // cout_g) * cin_g  # the output channel's group reads channels c0 … c0+cin_g
        for y in range(Ho):
            for x in range(Wo):
                for ci in range(cin_g):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = y * stride[0] - padding[0] + ky
                            ix = x * stride[1] - padding[1] + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                m[i_out[o, y, x], i_in[c0 + ci, iy, ix]] += w[o, ci, ky, kx]
    return m


def _unrolled_conv(node: nir.Conv2d, shape: tuple[int, ...], where: str
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """A recurrent ``Conv2d`` from a ``(C, H, W)`` population onto itself as the dense matrix
    ``W_rec [N, N]`` (flat C·H·W order; column n = the conv of the n-th unit input, exact:
    every entry is one kernel tap or 0) and its per-channel bias."""
    syn = _read_conv2d(node, shape, where)
    if syn.out_shape != shape:
        raise ConfigError(f"{where}: maps {shape} to {syn.out_shape}; a recurrent convolution "
                          f"must keep the population's shape (stride 1, 'same' padding)")
    return conv_matrix(syn.weight, shape, shape, syn.stride, syn.padding, syn.groups), syn.bias
