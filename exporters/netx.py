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

from neurodeploy.errors import CheckpointError, ConfigError
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
    v3 = sorted(set(L.neuron_arrays) & {"w_rec_lo", "a_bias_mant"})
    if v3:
        return (f"a second recurrent synapse group / a fine current bias ({', '.join(v3)}; "
                f"netx has no recurrent block nor a bias into the current)")
    if L.neuron != "lif" or L.neuron_arrays:
        return f"neuron {L.neuron!r} (netx runs Lava's plain LIF with one du/dv per layer)"
    if L.skip_from:
        return "skip edges (netx blocks form a chain)"
    if L.weights_lo is not None:
        return "two synapse groups per matrix (weights_lo; a netx block holds one weight matrix)"
    if L.neuron_params:
        return f"neuron parameters {sorted(L.neuron_params)} (netx's CUBA has none of them)"
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


# ----------------------------------------------------------------------------- netx → plan


def _get(g: Any, key: str, where: str) -> Any:
    if key not in g:
        raise CheckpointError(f"{where}: field {key!r} is missing")
    return g[key][()]


def _type(g: Any, where: str) -> str:
    v = np.asarray(_get(g, "type", where)).ravel()
    v = v[0] if v.size else b""
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _pair_hw(v: Any) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _plan_weights(w: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Dense weights as netx runs them (Σ w exactly) in a Lava-legal plan: ``(w·2^s, −s)``
    with s = 1 for odd mixed-sign weights (the plan keeps mixed-sign mantissas even)."""
    if not _weight_range_ok(w):
        raise ConfigError(f"{where}: weights in [{int(w.min())}, {int(w.max())}] exceed netx's "
                          f"8-bit range (netx itself clips them)")
    mixed = w.size and int(w.min()) < 0 < int(w.max())
    if mixed and np.any(w & 1):
        if int(np.abs(w).max()) > 127:
            raise ConfigError(f"{where}: odd mixed-sign weights beyond ±127 (netx runs them "
                              f"with 9 weight bits, the plan with 8)")
        return w << 1, -1
    return w, 0


def _neuron_fields(g: Any, where: str, notes: list[str]) -> dict[str, int]:
    if "neuron" not in g:
        raise ConfigError(f"{where}: a block without neurons (netx gives it a never-firing "
                          f"neuron) has no plan layer")
    n = g["neuron"]
    kind = _type(n, where + " neuron")
    if kind not in ("CUBA", "LOIHI"):
        raise ConfigError(f"{where}: neuron type {kind!r}; the plan runs CUBA (Lava LIF) neurons")
    if "gradedSpike" in n and bool(np.asarray(n["gradedSpike"][()]).item()):
        raise ConfigError(f"{where}: graded spikes (a plan sends binary spikes)")
    du = int(np.asarray(_get(n, "iDecay", where)).item()) - NETX_IDECAY_OFFSET
    dv = int(np.asarray(_get(n, "vDecay", where)).item())
    vth = int(np.asarray(_get(n, "vThMant", where)).item())
    for name, v, hi in (("iDecay − 1", du, 4095), ("vDecay", dv, 4095), ("vThMant", vth, 131071)):
        if not 0 <= v <= hi:
            raise ConfigError(f"{where}: {name} = {v} outside Lava's range [0, {hi}]")
    if "refDelay" in n and int(np.asarray(n["refDelay"][()]).item()) != 1:
        notes.append(f"{where}: refDelay {int(np.asarray(n['refDelay'][()]).item())} is "
                     f"ignored, as netx ignores it (Lava's LIF has no refractory period)")
    return {"du": du, "dv": dv, "vth": vth}


def _bias(g: Any, out_shape: tuple[int, ...], where: str) -> tuple[np.ndarray, int]:
    """netx's bias (bias_exp 6) per neuron in plan order, with the smallest exponent ≥ 6
    that keeps the mantissa in 13 bits exactly."""
    n = int(np.prod(out_shape))
    if "bias" not in g:
        return np.zeros(n, dtype=np.int64), NETX_BIAS_EXP
    b = np.asarray(g["bias"][()]).astype(np.int64)
    if b.size == n and len(out_shape) == 3 and b.ndim == 3:
        b = b.transpose(2, 1, 0)  # netx's (W, H, C) → (C, H, W)
    elif len(out_shape) == 3 and b.size == out_shape[0]:
        b = np.broadcast_to(b.reshape(-1, 1, 1), out_shape)
    elif b.size != n:
        raise ConfigError(f"{where}: bias of {b.size} values for {n} neurons")
    b, e = b.reshape(-1), NETX_BIAS_EXP
    while np.any(np.abs(b) > 4095) and not np.any(b & 1) and e < 7:
        b, e = b >> 1, e + 1
    if np.any(b < -4096) or np.any(b > 4095):
        raise ConfigError(f"{where}: bias beyond Lava's 13-bit mantissa at bias_exp ≤ 7")
    return b, e


def _dense(g: Any, name: str, in_shape: tuple[int, ...], flatten: bool, where: str,
           notes: list[str]) -> PlanLayer:
    w = np.asarray(_get(g, "weight", where)).astype(np.int64)  # netx: astype(int)
    n_out = int(np.prod(np.asarray(_get(g, "shape", where))))
    w = w.reshape(n_out, -1)
    if w.shape[1] != int(np.prod(in_shape)):
        raise ConfigError(f"{where}: weight {w.shape} does not take an input of shape {in_shape}")
    if "delay" in g and np.any(np.asarray(g["delay"][()]) != 0):
        raise ConfigError(f"{where}: axonal delays (netx DelayDense); a plan has one fixed "
                          f"synaptic delay per layer")
    wp, e = _plan_weights(w, where)
    b, be = _bias(g, (n_out,), where)
    return PlanLayer(name=name, kind="dense", in_shape=tuple(in_shape), out_shape=(n_out,),
                     weights=wp.astype(np.int32), weight_exp=e, bias_mant=b.astype(np.int32),
                     bias_exp=be, scale=1.0, flatten_before=flatten and len(in_shape) > 1,
                     **_neuron_fields(g, where, notes))


def _conv(g: Any, name: str, in_shape: tuple[int, ...], where: str,
          notes: list[str]) -> PlanLayer:
    w = np.asarray(_get(g, "weight", where)).astype(np.int64)
    w = w.reshape(w.shape[:4])
    out_shape = tuple(int(v) for v in np.asarray(_get(g, "shape", where)).ravel())
    if len(in_shape) != 3 or len(out_shape) != 3:
        raise ConfigError(f"{where}: a conv needs (C, H, W) shapes, got {in_shape} → {out_shape}")
    if _pair_hw(g["dilation"][()] if "dilation" in g else 1) != (1, 1):
        raise ConfigError(f"{where}: dilation ≠ 1 has no plan layer")
    groups = int(np.asarray(g["groups"][()]).item()) if "groups" in g else 1
    b, be = _bias(g, out_shape, where)
    return PlanLayer(name=name, kind="conv", in_shape=tuple(in_shape), out_shape=out_shape,
                     weights=w.astype(np.int32), weight_exp=0, bias_mant=b.astype(np.int32),
                     bias_exp=be, scale=1.0,
                     stride=_pair_hw(g["stride"][()] if "stride" in g else 1),
                     padding=_pair_hw(g["padding"][()] if "padding" in g else 0),
                     groups=groups, **_neuron_fields(g, where, notes))


def read_netx(path: str | os.PathLike, num_steps: int, profile: str = "loihi2"
              ) -> tuple[DeploymentPlan, list[str]]:
    """A netx HDF5 file (SLAYER's ``export_hdf5``) → a plan that runs as netx runs it in Lava
    (module docstring), and notes. ``num_steps`` is the T the plan runs (netx stores none).

    Raises
    ------
    CheckpointError
        Not a readable netx file (missing fields).
    ConfigError
        Blocks netx cannot load (pool, average, …) or the plan cannot run, naming the block.
    """
    from neurodeploy.exporters.plan import PlanError

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"netx file {str(p)!r} does not exist")
    h5py = _h5py()
    notes: list[str] = []
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise CheckpointError(f"netx file {str(p)!r} is not an HDF5 file: {exc}") from exc
    with f:
        if "layer" not in f:
            raise CheckpointError(f"{str(p)!r} has no 'layer' group: not a netx network")
        groups = f["layer"]
        layers: list[PlanLayer] = []
        in_shape: tuple[int, ...] | None = None
        shape, flatten = None, False
        for i in range(len(groups)):
            if str(i) not in groups:
                raise CheckpointError(f"{str(p)!r}: layer/{i} is missing")
            g = groups[str(i)]
            kind = _type(g, f"layer/{i}")
            where = f"netx block layer/{i} ({kind})"
            if kind == "input":
                if "neuron" in g:
                    raise ConfigError(f"{where}: an input block with neurons has no plan layer")
                in_shape = tuple(int(v) for v in np.asarray(_get(g, "shape", where)).ravel())
                shape = in_shape
            elif kind == "flatten":
                flatten = True
            elif kind in ("dense", "conv"):
                if shape is None:
                    if kind == "conv":
                        raise ConfigError(f"{where}: the input shape is unknown (no input block)")
                    shape = in_shape = (int(np.asarray(_get(g, "weight", where)).reshape(
                        int(np.prod(np.asarray(_get(g, "shape", where)))), -1).shape[1]),)
                name = f"layer{len(layers) + 1}"
                L = (_dense(g, name, shape, flatten, where, notes) if kind == "dense"
                     else _conv(g, name, shape, where, notes))
                layers.append(L)
                shape, flatten = tuple(L.out_shape), False
            else:
                raise ConfigError(f"{where}: netx cannot load '{kind}' blocks (lava-dl 0.6.0 "
                                  f"raises NotImplementedError), so neither can the plan")
    if not layers:
        raise ConfigError(f"{str(p)!r} holds no dense or conv block")
    plan = DeploymentPlan(profile=profile, num_steps=int(num_steps), input_shape=in_shape,
                          layers=tuple(layers),
                          source={"netx": {"path": str(p), "notes": notes}})
    try:
        plan.validate()
    except PlanError as exc:
        raise ConfigError(f"{str(p)!r}: {exc}") from exc
    return plan, notes


# ----------------------------------------------------------------------------- float reading


def float_graph(plan: DeploymentPlan, name: str = "netx") -> Any:
    """The plan's integers read as real numbers: a :class:`DGraph` for the float interpreter
    (the audit's float side of a netx file). In units of one weight (Lava's ``a_in``, i.e.
    v / 2^6), per layer::

        u ← (1 − du/4096)·u + Σ w·s,   v ← (1 − dv/4096)·v + u + b,   s = 1[v > vth],  v ← 0

    with ``w = weights·2^weight_exp`` and ``b = bias_mant·2^(bias_exp − 6)`` — Lava's LIF
    without its round-toward-zero decays (the deployed side keeps them).
    """
    from neurodeploy.exporters.nir_dgraph import (
        DConv,
        DFlatten,
        DGraph,
        DInput,
        DLinear,
        DNeuron,
        DOutput,
        infer_shapes,
    )
    from neurodeploy.exporters.nir_semantics import Semantics

    shape = tuple(plan.input_shape)
    nodes: dict[str, Any] = {"input": DInput(source="input", in_shape=shape, out_shape=shape)}
    chain = ["input"]
    for L in plan.layers:
        if L.neuron != "lif" or L.neuron_arrays or L.skip_from:
            raise ConfigError(f"plan layer {L.name}: neuron {L.neuron!r} has no float reading "
                              f"here (netx runs the plain LIF)")
        w = np.asarray(L.weights, dtype=np.float64) * 2.0 ** int(L.weight_exp)
        b = np.asarray(L.bias_mant, dtype=np.float64) * 2.0 ** (int(L.bias_exp) - 6)
        if L.flatten_before:
            nodes[f"{L.name}.flatten"] = DFlatten(source=f"{L.name}.flatten")
            chain.append(f"{L.name}.flatten")
        if L.kind == "dense":
            nodes[f"{L.name}.syn"] = DLinear(source=L.name, weight=w, bias=None)
        else:
            nodes[f"{L.name}.syn"] = DConv(source=L.name, weight=w, bias=None,
                                           stride=tuple(L.stride), padding=tuple(L.padding),
                                           groups=int(L.groups))
        n = int(np.prod(L.out_shape))
        one = np.ones(n)
        nodes[L.name] = DNeuron(source=L.name, kind="cubalif", alpha=one * (1 - L.dv / 4096),
                                gain=one.copy(), bias=b.reshape(-1), theta=one * float(L.vth),
                                v_reset=np.zeros(n), beta=one * (1 - L.du / 4096),
                                syn_gain=one.copy(), reset="zero", spike_op=">")
        chain += [f"{L.name}.syn", L.name]
    nodes["output"] = DOutput(source="output")
    chain.append("output")
    g = DGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:], strict=True)),
               semantics=Semantics("lava-dl", 1.0), metadata={"producer": f"lava-dl ({name})"},
               notes=["netx file read as real numbers: Lava's LIF (CUBA, du = iDecay − 1) "
                      "without its rounding"])
    infer_shapes(g)
    return g
