"""The compiler's resource map: cores, neurons, synapses, memory and axons; the fit checks.

:func:`resource_map` places each layer of a chain on the profile's cores (neurons split
evenly over consecutive cores, or by output channels × rows when a core's fan-in would be
exceeded, :func:`~neurodeploy.exporters.partition.chain_layer_parts`), counts synapses per
neuron (dense: fan-in; conv/pool: valid taps, weights unshared), synaptic memory, input axons
(exact, from receptive fields) and output axons per core, and raises
:class:`~neurodeploy.errors.HardwareFitError` naming the layer and the limit on a misfit. The
rules are documented in :mod:`~neurodeploy.exporters.compiler` (section "Resources").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurodeploy.errors import HardwareFitError
from neurodeploy.exporters.nir_chain import ChainLayer, NIRChain
from neurodeploy.exporters.nir_chain_nodes import TALIF
from neurodeploy.exporters.profiles import HardwareProfile
from neurodeploy.exporters.quantize import PLAN_KINDS, _label, layer_token

# ----------------------------------------------------------------------------- resources


def _synapses_per_neuron(L: ChainLayer) -> np.ndarray:
    """Synapse count of every output neuron (flat, C·H·W order)."""
    if L.kind == "fc":  # a recurrent connection adds N synapses per neuron
        rec = L.out_shape[0] if L.rec_weight is not None else 0
        return np.full(L.out_shape[0], int(np.prod(L.in_shape)) + rec, dtype=np.int64)
    C_out, Ho, Wo = L.out_shape
    H, W = L.in_shape[1], L.in_shape[2]
    valid = np.zeros((Ho, Wo), dtype=np.int64)
    ys = np.arange(Ho) * L.stride[0] - L.padding[0]
    xs = np.arange(Wo) * L.stride[1] - L.padding[1]
    for dy in range(L.kernel[0]):
        oky = (ys + dy >= 0) & (ys + dy < H)
        for dx in range(L.kernel[1]):
            okx = (xs + dx >= 0) & (xs + dx < W)
            valid += oky[:, None] & okx[None, :]
    cin = L.in_shape[0] // L.groups if L.kind == "conv" else 1
    return np.broadcast_to(valid * cin, (C_out, Ho, Wo)).reshape(-1).astype(np.int64)


def _input_mask(L: ChainLayer, part: slice | np.ndarray) -> np.ndarray:
    """Boolean mask over L's (flattened) input of what output neurons ``part`` (a slice or
    flat indices) read."""
    n_in = int(np.prod(L.in_shape))
    if L.kind == "fc":
        return np.ones(n_in, dtype=bool)
    C_out, Ho, Wo = L.out_shape
    C_in, H, W = L.in_shape
    out = np.zeros(C_out * Ho * Wo, dtype=bool)
    out[part] = True
    out = out.reshape(C_out, Ho, Wo)
    groups = L.groups if L.kind == "conv" else C_in
    cout_g, cin_g = C_out // groups, C_in // groups
    mask = np.zeros((C_in, H, W), dtype=bool)
    for g in range(groups):
        cover = out[g * cout_g:(g + 1) * cout_g].any(0)
        if not cover.any():
            continue
        oy, ox = np.nonzero(cover)
        spatial = np.zeros((H, W), dtype=bool)
        for dy in range(L.kernel[0]):
            y = oy * L.stride[0] - L.padding[0] + dy
            for dx in range(L.kernel[1]):
                x = ox * L.stride[1] - L.padding[1] + dx
                ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
                spatial[y[ok], x[ok]] = True
        mask[g * cin_g:(g + 1) * cin_g] |= spatial
    return mask.reshape(-1)


def _partition(n: int, cores: int) -> list[tuple[int, int]]:
    per = math.ceil(n / cores)
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def _layer_cores(L: ChainLayer, profile: HardwareProfile, syn: np.ndarray) -> int:
    n = syn.size
    mem_bits = profile.synaptic_memory_bytes_per_core * 8
    if int(syn.max()) * profile.bits_per_synapse > mem_bits:
        raise HardwareFitError(
            f"{_label(L)}: one neuron has {int(syn.max())} synapses = "
            f"{int(syn.max()) * profile.bits_per_synapse // 8} bytes, more than the "
            f"{profile.synaptic_memory_bytes_per_core} bytes of synaptic memory per core of "
            f"{profile.name}")
    cores = max(1, math.ceil(n / profile.neurons_per_core))
    while True:
        parts = _partition(n, cores)
        worst = max(int(syn[lo:hi].sum()) for lo, hi in parts) * profile.bits_per_synapse
        if worst <= mem_bits:
            return len(parts)
        cores = max(cores + 1, math.ceil(cores * worst / mem_bits))


def resource_map(chain: NIRChain, profile: HardwareProfile) -> dict[str, Any]:
    """Cores, neurons, synapses, memory and axons per layer and core; raises on misfit."""
    layers: list[dict[str, Any]] = []
    parts_all: list[list[Any]] = []
    masks_all: list[list[np.ndarray]] = []
    total = 0
    for L in chain.layers:
        syn = _synapses_per_neuron(L)
        cores = _layer_cores(L, profile, syn)
        parts: list[Any] = [slice(lo, hi) for lo, hi in _partition(syn.size, cores)]
        masks = [_input_mask(L, p) for p in parts]
        fan_in = [int(m.sum()) for m in masks]
        if (profile.max_fan_in_per_core is not None and max(fan_in) > profile.max_fan_in_per_core
                and L.kind != "fc"):  # split by output channels × rows instead (partition.py)
            from neurodeploy.exporters.partition import chain_layer_parts

            parts = chain_layer_parts(L, profile)
            masks = [_input_mask(L, p) for p in parts]
            fan_in = [int(m.sum()) for m in masks]
        if profile.max_fan_in_per_core is not None and max(fan_in) > profile.max_fan_in_per_core:
            raise HardwareFitError(
                f"{_label(L)}: a core reads {max(fan_in)} input axons but {profile.name} "
                f"allows {profile.max_fan_in_per_core} per core (max_fan_in_per_core)")
        total += len(parts)
        if total > profile.total_cores:
            raise HardwareFitError(
                f"{_label(L)}: needs {len(parts)} cores ({syn.size} neurons, "
                f"{int(syn.sum())} synapses), bringing the total to {total} cores, but "
                f"{profile.name} has {profile.cores_per_chip} cores per chip × {profile.chips} "
                f"chip(s) = {profile.total_cores}")
        syn_core = [int(syn[p].sum()) for p in parts]
        layers.append({
            "layer": L.index, "token": layer_token(L), "kind": PLAN_KINDS[L.kind],
            "neuron": TALIF if L.is_talif else "li" if L.neuron in ("li", "cubali") else (
                ("sublif_delayed" if L.reset_timing == "next-step" else "sublif")
                if L.reset == "subtract" else "lif"),
            "neurons": int(syn.size), "synapses": int(syn.sum()), "cores": len(parts),
            "neurons_per_core": [int(syn[p].size) for p in parts],
            "synapses_per_core": syn_core,
            "synaptic_memory_bytes_per_core": [
                math.ceil(s * profile.bits_per_synapse / 8) for s in syn_core],
            "fan_in_per_neuron": int(syn.max()),
            "input_axons_per_core": fan_in,
            # skip-edge synapses (their own delayed synapse block): counted here, not in the
            # per-core memory and fan-in figures above
            "skip_synapses": int(sum(np.count_nonzero(w) for _, w in L.skips)),
        })
        parts_all.append(parts)
        masks_all.append(masks)
    # fan-out: each neuron sends one axon per next-layer core that reads it
    for k, info in enumerate(layers):
        if k + 1 == len(layers):
            info["output_axons_per_core"] = [0 for _ in parts_all[k]]
            continue
        targets = np.sum([m.astype(np.int64) for m in masks_all[k + 1]], axis=0)
        out_ax = [int(targets[p].sum()) for p in parts_all[k]]
        info["output_axons_per_core"] = out_ax
        if profile.max_fan_out_per_core is not None and max(out_ax) > \
                profile.max_fan_out_per_core:
            L = chain.layers[k]
            raise HardwareFitError(
                f"{_label(L)}: a core sends {max(out_ax)} output axons but {profile.name} "
                f"allows {profile.max_fan_out_per_core} per core (max_fan_out_per_core)")
    return {
        "profile": profile.name,
        "cores_used": total,
        "cores_available": profile.total_cores,
        "neurons": int(sum(i["neurons"] for i in layers)),
        "synapses": int(sum(i["synapses"] for i in layers)),
        "layers": layers,
        "limits": profile.limits(),
        "notes": "input layer is host-fed (no core); synaptic memory = synapses × "
                 "bits_per_synapse / 8, conv weights counted unshared; neurons split evenly "
                 "over consecutive cores, or by output channels x rows when a core's fan-in "
                 "would be exceeded",
    }
