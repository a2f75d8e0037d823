"""Deployment plans ↔ lava-dl's netx HDF5 network description (``net.net``).

The format is what SLAYER's ``export_hdf5`` writes and ``lava.lib.dl.netx.hdf5.Network``
loads (lava-dl 0.6.0)::

    /layer/0            type 'input', shape (C, H, W) or (N,)
    /layer/k            type 'dense' | 'conv' | 'flatten' (| 'pool', 'average', … not loadable)
        shape           the block's output shape, PyTorch order (C, H, W) or (N,)
        weight          dense [N_out, N_in] (columns in PyTorch flattening order);
                        conv [C_out, C_in/groups, kH, kW] (SLAYER adds a trailing 1)
        bias            optional, per neuron (or per channel)
        stride, padding, dilation, groups       conv only, (H, W) pairs
        delay           optional per-neuron axonal delays (dense)
        neuron/type     'CUBA'
        neuron/iDecay, vDecay, vThMant, refDelay, gradedSpike

What netx builds from it — and so what a file means (lava-dl 0.6.0 ``netx/hdf5.py``,
``netx/blocks/process.py``, ``netx/utils.py``) — per block::

    Dense:  optimize_weight_bits(weight) → (w·2^s, num_weight_bits, weight_exp = −s), a Lava
            Dense whose dendritic sum Σ w·2^s is shifted back by s: exactly Σ weight for
            the 8-bit ranges below (mixed sign [−256, 254], excitatory [0, 255], inhibitory
            [−256, 0]); weights outside are clipped by netx (lossy: refused here)
    Conv:   a Lava Conv of the weight as written (no exponent)
    neuron: Lava LIF (LIFReset with ``reset_interval``) with du = iDecay − 1, dv = vDecay,
            vth = vThMant, bias_mant = bias, bias_exp = 6
    flatten: the next dense reads the previous block's (W, H, C) spikes transposed to
            (C, H, W) and flattened — PyTorch order

A plan layer (``du``, ``dv``, ``vth``, ``bias_mant``·2^bias_exp, weights·2^weight_exp, one
step of synaptic delay) is therefore one netx block when

* its neuron is the plain Loihi LIF (``neuron == "lif"``, one ``du``/``dv`` per layer),
* its effective weights ``weights·2^weight_exp`` are integers in netx's lossless range,
* its effective bias ``bias_mant·2^bias_exp`` is a multiple of 2^6 (netx fixes bias_exp = 6),
* it has no skip edges and the plan's fixed-point format is Lava 0.10's.

:func:`check_expressible` names the first layer that is not; :func:`write_netx` writes the
file (atomically); :func:`read_netx` reads a netx file back into a plan with exactly these
semantics (dense / conv / flatten blocks of CUBA neurons; ``pool`` and ``average`` blocks,
which netx itself cannot load, are refused naming the block).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer

#: netx sets every CUBA neuron's bias exponent to 6 (``hdf5.get_neuron_params``)
NETX_BIAS_EXP = 6
#: netx passes ``du = iDecay − 1`` to Lava's LIF
NETX_IDECAY_OFFSET = 1
#: the weight ranges ``optimize_weight_bits`` keeps exactly, by sign mode
NETX_WEIGHT_RANGE = {"mixed": (-256, 254), "excitatory": (0, 255), "inhibitory": (-256, 0)}
#: Lava 0.10's Conv holds ``groups`` as int8
NETX_MAX_GROUPS = 127


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py comes with nir
        raise ConfigError("the netx format needs h5py") from exc
    return h5py


# ----------------------------------------------------------------------------- plan → netx


def effective_weights(L: PlanLayer) -> np.ndarray | None:
    """``weights·2^weight_exp`` as integers, or None when that is not an integer matrix."""
    w = np.asarray(L.weights, dtype=np.int64)
    e = int(L.weight_exp)
    if e >= 0:
        return w << e
    if np.any(w & ((1 << -e) - 1)):
        return None  # Lava floors the *sum*; netx would sum exact weights
    return w >> -e


def _weight_range_ok(w: np.ndarray) -> bool:
    if w.size == 0:
        return True
    lo, hi = int(w.min()), int(w.max())
    mode = "excitatory" if lo >= 0 else "inhibitory" if hi <= 0 else "mixed"
    a, b = NETX_WEIGHT_RANGE[mode]
    return a <= lo and hi <= b


def netx_bias(L: PlanLayer) -> np.ndarray | None:
    """The file's bias (``bias_mant·2^(bias_exp − 6)``), or None when not an integer."""
    b = np.asarray(L.bias_mant, dtype=np.int64)
    d = int(L.bias_exp) - NETX_BIAS_EXP
    if d >= 0:
        return b << d
    if np.any(b & ((1 << -d) - 1)):
        return None
    return b >> -d


def layer_problem(L: PlanLayer, k: int) -> str | None:
    """Why plan layer ``k`` has no netx block (None: it has one)."""
    if L.neuron != "lif" or L.neuron_arrays:
        return f"neuron {L.neuron!r} (netx runs Lava's plain LIF with one du/dv per layer)"
    if L.skip_from:
        return "skip edges (netx blocks form a chain)"
    if int(L.delay) != 1:
        return f"synaptic delay {L.delay} (netx Dense/Conv delay by one step)"
    if L.kind in ("conv", "pool") and int(L.groups) > NETX_MAX_GROUPS:
        return f"{L.groups} conv groups (Lava's Conv holds at most {NETX_MAX_GROUPS})"
    if L.kind in ("conv", "pool") and int(L.weight_exp) != 0:
        return f"weight_exp {L.weight_exp} on a conv (netx's Conv has no exponent)"
    w = effective_weights(L)
    if w is None:
        return (f"weights·2^{L.weight_exp} are not integers (Lava floors the dendritic sum, "
                f"netx sums exact weights)")
    if L.kind == "dense" and not _weight_range_ok(w):
        return (f"effective weights in [{int(w.min())}, {int(w.max())}] exceed netx's 8-bit "
                f"range (it would clip them)")
    if netx_bias(L) is None:
        return (f"bias_mant·2^{L.bias_exp} is not a multiple of 2^{NETX_BIAS_EXP} (netx fixes "
                f"bias_exp = {NETX_BIAS_EXP})")
    return None


def with_netx_bias(plan: DeploymentPlan) -> tuple[DeploymentPlan, list[str]]:
    """The plan with every bias at netx's exponent (6): ``bias_mant' = round(bias_mant ·
    2^(bias_exp − 6))`` where ``bias_exp < 6`` (a coarser bias, resolution one weight unit
    of u per step instead of 2^(bias_exp − 6)); the notes give each change in v units.

    The compiler picks the finest bias exponent that fits; netx cannot state it. The
    returned plan is the one a netx file expresses exactly (``export --format netx`` writes
    it as plan.npz too, so that both files describe the same integers)."""
    from dataclasses import replace

    layers, notes = [], []
    for L in plan.layers:
        if netx_bias(L) is not None or L.neuron != "lif":
            layers.append(L)
            continue
        b = np.asarray(L.bias_mant, dtype=np.int64)
        d = NETX_BIAS_EXP - int(L.bias_exp)
        new = np.round(b / float(1 << d)).astype(np.int64)
        err = np.abs(new * (1 << NETX_BIAS_EXP) - b * (1 << int(L.bias_exp)))
        notes.append(f"{L.name}: bias re-quantised to netx's bias_exp {NETX_BIAS_EXP} (was "
                     f"{L.bias_exp}); max change {int(err.max())} v units per step = "
                     f"{float(err.max()) / (int(L.vth) << 6):.3%} of the threshold")
        layers.append(replace(L, bias_mant=new.astype(np.asarray(L.bias_mant).dtype),
                              bias_exp=NETX_BIAS_EXP))
    out = replace(plan, layers=tuple(layers))
    out.validate()
    return out, notes


def check_expressible(plan: DeploymentPlan) -> None:
    """Raise :class:`ConfigError` naming the first plan layer netx cannot express."""
    from neurodeploy.exporters.profiles import LAVA_0_10

    if plan.fixed_point != LAVA_0_10:
        raise ConfigError(f"plan for {plan.profile}: its fixed-point format is not Lava 0.10's, "
                          f"which netx runs")
    if plan.readout != "count":
        raise ConfigError("a membrane read-out layer has no netx block (netx sends spikes)")
    for k, L in enumerate(plan.layers):
        why = layer_problem(L, k)
        if why is not None:
            raise ConfigError(f"plan layer {k} ({L.name}, {L.kind}): {why}; not expressible "
                              f"in netx")


def _str(g: Any, key: str, value: str) -> None:
    g.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _neuron(g: Any, L: PlanLayer) -> None:
    n = g.create_group("neuron")
    _str(n, "type", "CUBA")
    n.create_dataset("iDecay", data=int(L.du) + NETX_IDECAY_OFFSET)
    n.create_dataset("vDecay", data=int(L.dv))
    n.create_dataset("vThMant", data=int(L.vth))
    n.create_dataset("refDelay", data=1)
    n.create_dataset("gradedSpike", data=False)


def _write_layer(g: Any, L: PlanLayer) -> None:
    w = effective_weights(L)
    if L.kind == "dense":
        _str(g, "type", "dense")
        g.create_dataset("shape", data=np.array([L.out_size]))
        g.create_dataset("inFeatures", data=int(w.shape[1]))
        g.create_dataset("outFeatures", data=int(w.shape[0]))
        g.create_dataset("weight", data=w.astype(np.float64))
    else:
        _str(g, "type", "conv")
        g.create_dataset("shape", data=np.array(L.out_shape))
        g.create_dataset("inChannels", data=int(L.in_shape[0]))
        g.create_dataset("outChannels", data=int(L.out_shape[0]))
        g.create_dataset("kernelSize", data=np.array(w.shape[2:]))
        g.create_dataset("weight", data=w.astype(np.float64))
        g.create_dataset("stride", data=np.array(L.stride))
        g.create_dataset("padding", data=np.array(L.padding))
        g.create_dataset("dilation", data=np.array([1, 1]))
        g.create_dataset("groups", data=int(L.groups))
    b = netx_bias(L)
    if np.any(b != 0):
        if L.kind == "dense":
            g.create_dataset("bias", data=b.astype(np.float64))
        else:  # per neuron, netx's (W, H, C) layout
            g.create_dataset("bias", data=b.reshape(L.out_shape).transpose(2, 1, 0)
                             .astype(np.float64))
    _neuron(g, L)


def write_netx(plan: DeploymentPlan, path: str | os.PathLike) -> None:
    """Write ``plan`` as a netx HDF5 file (module docstring), atomically.

    Raises
    ------
    ConfigError
        Naming the first layer netx cannot express exactly.
    """
    from neurodeploy.atomicio import write_with

    check_expressible(plan)
    h5py = _h5py()

    def fill(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["producer"] = "neurodeploy"
            f.attrs["num_steps"] = int(plan.num_steps)
            layer = f.create_group("layer")
            i = 0
            g = layer.create_group(str(i))
            _str(g, "type", "input")
            g.create_dataset("shape", data=np.array(plan.input_shape))
            prev = tuple(plan.input_shape)
            for L in plan.layers:
                if L.kind == "dense" and len(prev) > 1:
                    i += 1
                    fl = layer.create_group(str(i))
                    _str(fl, "type", "flatten")
                    fl.create_dataset("shape", data=np.array(prev))
                i += 1
                _write_layer(layer.create_group(str(i)), L)
                prev = tuple(L.out_shape)

    write_with(path, fill, suffix=".net")
