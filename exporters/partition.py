"""Many cores, many chips: split layers over cores by output channels and rows, place the
cores on the chips of a board, and count the spike traffic between chips.

**Partition** (one layer at a time, from a compiled plan). A core holds a block of output
neurons ``channels [c0, c1) × rows [r0, r1) × all columns`` (dense layers: a range of
neurons). For ``n_c`` channel blocks and ``n_r`` row blocks (near-equal contiguous ranges)
every block must satisfy the core limits of the profile::

    neurons(block)              ≤ neurons_per_core
    synapses(block) · bits / 8  ≤ synaptic_memory_bytes_per_core     (conv weights unshared)
    input axons read(block)     ≤ max_fan_in_per_core                 (when the profile has one)

and the partition with the fewest cores ``n_c · n_r`` is chosen (ties: fewer row splits).
Splitting channels cuts neurons and memory; only splitting rows cuts a convolution's input
window (fan-in). A dense neuron reads every input, so a dense layer whose input exceeds the
fan-in limit cannot be split by outputs: refused, naming the layer and the limit.

**Placement** on a :class:`Board` (chips on a 2-D mesh): cores in layer order fill chip 0,
then chip 1, … (consecutive layers talk, so neighbours stay close); more cores than the board
holds is refused.

**Traffic**: a spike of neuron n is sent once to every core that reads n (Loihi routes a spike
to each destination core's axon). ``routes`` counts (neuron → core on another chip) pairs;
with per-neuron spike counts (e.g. from the emulator) ``messages`` counts inter-chip spike
messages per inference, and ``link_hops`` the messages × mesh hops under dimension-order
routing, with the load of the busiest link. The input layer is host-fed (not counted).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.exporters.profiles import HardwareProfile, load_profile

BOARD_PACKAGE = "neurodeploy.hardware_profiles"  # boards/ beside the chip profiles


# ----------------------------------------------------------------------------- boards


@dataclass(frozen=True)
class Board:
    """Chips of one chip profile on a ``mesh`` (rows × cols) with dimension-order routing."""

    name: str
    description: str
    chip_profile: str
    chips: int
    mesh: tuple[int, int]
    routing: str = "xy"
    source: str = ""

    def __post_init__(self) -> None:
        if self.chips < 1:
            raise ConfigError(f"board {self.name}: chips must be >= 1, got {self.chips}")
        if len(self.mesh) != 2 or self.mesh[0] * self.mesh[1] < self.chips or min(self.mesh) < 1:
            raise ConfigError(f"board {self.name}: mesh {self.mesh} cannot hold {self.chips} "
                              f"chips")
        if self.routing != "xy":
            raise ConfigError(f"board {self.name}: routing {self.routing!r} (only 'xy')")

    def coords(self, chip: int) -> tuple[int, int]:
        """(row, col) of a chip; chips fill the mesh row by row."""
        return divmod(int(chip), self.mesh[1])

    def profile(self) -> HardwareProfile:
        """The chip profile with ``chips`` set to the board's (what the compiler checks)."""
        p = load_profile(self.chip_profile)
        return dataclasses.replace(p, chips=self.chips, name=f"{p.name}x{self.chips}",
                                   description=f"{self.description} ({p.name} per chip)")

    def path(self, a: int, b: int) -> list[tuple[int, int]]:
        """Directed chip-to-chip links of the x-then-y route from chip a to chip b."""
        (ra, ca), (rb, cb) = self.coords(a), self.coords(b)
        cells = [(ra, ca)]
        while cells[-1][1] != cb:
            r, c = cells[-1]
            cells.append((r, c + (1 if cb > c else -1)))
        while cells[-1][0] != rb:
            r, c = cells[-1]
            cells.append((r + (1 if rb > r else -1), c))
        ids = [r * self.mesh[1] + c for r, c in cells]
        return list(zip(ids[:-1], ids[1:], strict=True))


def _board_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files(BOARD_PACKAGE))) / "boards"


def list_boards() -> list[str]:
    return sorted(p.stem for p in _board_dir().glob("*.toml"))


def load_board(name_or_path: str | os.PathLike) -> Board:
    """A board by name (``hardware_profiles/boards/<name>.toml``) or path."""

    text = str(name_or_path)
    path = Path(text) if text.endswith(".toml") or os.sep in text else _board_dir() / f"{text}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown board {text!r}; shipped boards: {', '.join(list_boards())}")
    from neurodeploy.safeload import loads_toml

    try:
        data = loads_toml(path.read_text(), str(path), ConfigError)["board"]
    except KeyError as exc:
        raise ConfigError(f"{path}: not a board file ({exc})") from exc
    known = {f.name for f in dataclasses.fields(Board)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown board key(s) {unknown}")
    data["mesh"] = tuple(int(v) for v in data.get("mesh", (1, data.get("chips", 1))))
    return Board(**{**data, "source": str(path)})


# ----------------------------------------------------------------------------- geometry


def _as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (int(shape[0]), 1, 1) if len(shape) == 1 else tuple(int(v) for v in shape)  # type: ignore[return-value]


def _geometry(L: PlanLayer) -> dict[str, Any]:
    """Kernel, stride, padding and channels per group of a conv/pool layer."""
    kh, kw = (int(v) for v in (getattr(L, "kernel", None) or L.weights.shape[-2:]))
    C_in = int(L.in_shape[0])
    groups = int(L.groups) if L.kind == "conv" else C_in
    return {"k": (kh, kw), "s": tuple(L.stride), "p": tuple(L.padding), "groups": groups,
            "cin_g": C_in // groups, "cout_g": int(L.out_shape[0]) // groups}


def _valid_taps(n_out: int, n_in: int, k: int, s: int, p: int) -> np.ndarray:
    """Kernel taps inside the input for every output position along one axis."""
    start = np.arange(n_out) * s - p
    taps = np.arange(k)
    pos = start[:, None] + taps[None, :]
    return ((pos >= 0) & (pos < n_in)).sum(1)


def _in_range(r0: int, r1: int, n_in: int, k: int, s: int, p: int) -> tuple[int, int]:
    """Input positions read by outputs [r0, r1) along one axis (clipped to the input)."""
    return max(0, r0 * s - p), min(n_in, (r1 - 1) * s - p + k)


@dataclass(frozen=True)
class CoreBlock:
    """The output neurons one core holds: ``channels × rows × all columns`` of a layer."""

    layer: int
    name: str
    channels: tuple[int, int]
    rows: tuple[int, int]
    neurons: int
    synapses: int
    memory_bytes: int
    fan_in: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _block(L: PlanLayer, k: int, c: tuple[int, int], r: tuple[int, int], bits: int
           ) -> CoreBlock:
    C, Ho, Wo = _as_chw(L.out_shape)
    if L.kind == "dense":
        n_in = int(np.prod(L.in_shape))
        n = c[1] - c[0]
        syn = n * n_in
        return CoreBlock(k, L.name, c, r, n, syn, math.ceil(syn * bits / 8), n_in)
    g = _geometry(L)
    Ci, H, W = _as_chw(L.in_shape)
    vy = _valid_taps(Ho, H, g["k"][0], g["s"][0], g["p"][0])
    vx = _valid_taps(Wo, W, g["k"][1], g["s"][1], g["p"][1])
    nch = c[1] - c[0]
    syn = nch * g["cin_g"] * int(vy[r[0]:r[1]].sum()) * int(vx.sum())
    g0, g1 = c[0] // g["cout_g"], (c[1] - 1) // g["cout_g"] + 1
    y0, y1 = _in_range(r[0], r[1], H, g["k"][0], g["s"][0], g["p"][0])
    x0, x1 = _in_range(0, Wo, W, g["k"][1], g["s"][1], g["p"][1])
    fan_in = (g1 - g0) * g["cin_g"] * max(0, y1 - y0) * max(0, x1 - x0)
    return CoreBlock(k, L.name, c, r, nch * (r[1] - r[0]) * Wo, syn,
                     math.ceil(syn * bits / 8), fan_in)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _blocks(L: PlanLayer, k: int, nc: int, nr: int, bits: int) -> list[CoreBlock]:
    C, Ho, _ = _as_chw(L.out_shape)
    return [_block(L, k, c, r, bits) for c in _ranges(C, nc) for r in _ranges(Ho, nr)]


def _fits(b: CoreBlock, profile: HardwareProfile) -> bool:
    return (b.neurons <= profile.neurons_per_core
            and b.memory_bytes <= profile.synaptic_memory_bytes_per_core
            and (profile.max_fan_in_per_core is None or b.fan_in <= profile.max_fan_in_per_core))


def partition_layer(L: PlanLayer, k: int, profile: HardwareProfile) -> list[CoreBlock]:
    """The fewest-core split of layer ``k`` by output channels × rows (module docstring)."""
    C, Ho, _ = _as_chw(L.out_shape)
    bits = profile.bits_per_synapse
    rows = [1] if L.kind == "dense" else list(range(1, Ho + 1))
    best: list[CoreBlock] | None = None
    for nr in rows:
        if best is not None and nr > len(best):
            break
        lo, hi = 1, C  # smallest channel split that fits with nr row blocks (monotone)
        if not all(_fits(b, profile) for b in _blocks(L, k, hi, nr, bits)):
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            if all(_fits(b, profile) for b in _blocks(L, k, mid, nr, bits)):
                hi = mid
            else:
                lo = mid + 1
        cand = _blocks(L, k, lo, nr, bits)
        if best is None or len(cand) < len(best):
            best = cand
    if best is None:  # even one channel × one row per core does not fit: name the limit
        finest = _blocks(L, k, C, len(rows), bits)
        worst = max(finest, key=lambda b: (b.memory_bytes, b.fan_in))
        if worst.memory_bytes > profile.synaptic_memory_bytes_per_core:
            raise HardwareFitError(
                f"{L.name}: even {worst.neurons} neuron(s) per core need {worst.memory_bytes} "
                f"bytes of synapses, more than the {profile.synaptic_memory_bytes_per_core} "
                f"bytes of a {profile.name} core")
        worst = max(finest, key=lambda b: b.fan_in)
        what = ("a dense neuron reads all its inputs, so splitting outputs cannot lower it"
                if L.kind == "dense" else "even one output row and channel per core reads more")
        raise HardwareFitError(
            f"{L.name}: a core reads {worst.fan_in} input axons but {profile.name} allows "
            f"{profile.max_fan_in_per_core} per core (max_fan_in_per_core); {what}")
    return best


@dataclass(frozen=True)
class _LayerView:
    """The geometry :func:`partition_layer` reads, for a compiler ``ChainLayer``."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    flatten_before: bool = False


def chain_layer_parts(L: Any, profile: HardwareProfile) -> list[np.ndarray]:
    """The compiler's hook (``resource_map``): the fewest-core channel × row split of a
    conv/pool ``ChainLayer`` as flat output indices (C·H·W order) per core. Used when the
    compiler's consecutive split would exceed the core's fan-in; raises
    :class:`HardwareFitError` naming the layer and the limit when no split fits."""
    pool = L.kind in ("avgpool", "sumpool")
    view = _LayerView(f"layer {L.index}", "pool" if pool else "conv", tuple(L.in_shape),
                      tuple(L.out_shape), tuple(L.kernel), tuple(L.stride), tuple(L.padding),
                      int(L.in_shape[0]) if pool else int(L.groups))
    C, Ho, Wo = _as_chw(view.out_shape)
    flat = np.arange(C * Ho * Wo).reshape(C, Ho, Wo)
    return [flat[b.channels[0]:b.channels[1], b.rows[0]:b.rows[1]].reshape(-1)
            for b in partition_layer(view, L.index, profile)]  # type: ignore[arg-type]


def partition_plan(plan: DeploymentPlan, profile: HardwareProfile) -> list[list[CoreBlock]]:
    """Core blocks of every layer of ``plan``."""
    return [partition_layer(L, k, profile) for k, L in enumerate(plan.layers)]


# ----------------------------------------------------------------------------- placement


def place(blocks: list[list[CoreBlock]], board: Board, profile: HardwareProfile
          ) -> list[list[int]]:
    """Chip of every core: consecutive fill in layer order."""
    per_chip = profile.cores_per_chip
    total = sum(len(b) for b in blocks)
    if total > per_chip * board.chips:
        raise HardwareFitError(
            f"the model needs {total} cores but board {board.name} has {board.chips} chips × "
            f"{per_chip} cores = {per_chip * board.chips}")
    out, i = [], 0
    for layer in blocks:
        out.append([(i + j) // per_chip for j in range(len(layer))])
        i += len(layer)
    return out


def _read_box(dst: PlanLayer, d: CoreBlock) -> tuple[tuple[int, int], ...]:
    """Box (channels, rows, cols) of the previous layer's output that core ``d`` reads."""
    C, H, W = _as_chw(dst.in_shape)
    if dst.kind == "dense" or dst.flatten_before or len(dst.in_shape) == 1:
        return ((0, C), (0, H), (0, W))  # a dense neuron reads every input
    g = _geometry(dst)
    g0, g1 = d.channels[0] // g["cout_g"], (d.channels[1] - 1) // g["cout_g"] + 1
    _, Ho, Wo = _as_chw(dst.out_shape)
    rows = _in_range(d.rows[0], d.rows[1], H, g["k"][0], g["s"][0], g["p"][0])
    cols = _in_range(0, Wo, W, g["k"][1], g["s"][1], g["p"][1])
    return ((g0 * g["cin_g"], g1 * g["cin_g"]), rows, cols)


def traffic(plan: DeploymentPlan, blocks: list[list[CoreBlock]], chips: list[list[int]],
            board: Board, spike_counts: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Inter-chip routes, and messages / link hops per inference when ``spike_counts`` (per
    layer, spikes per neuron per inference, in the layer's output shape) is given."""
    routes = 0
    messages = 0.0
    hops = 0.0
    link: dict[tuple[int, int], float] = {}
    per_pair: dict[str, dict[str, float]] = {}
    for k in range(len(plan.layers) - 1):
        src_shape = _as_chw(plan.layers[k].out_shape)
        counts = None
        if spike_counts is not None:
            counts = np.asarray(spike_counts[k], dtype=np.float64).reshape(src_shape)
        for b, cb in zip(blocks[k], chips[k], strict=True):
            for d, cd in zip(blocks[k + 1], chips[k + 1], strict=True):
                if cb == cd:
                    continue
                (c0, c1), (y0, y1), (x0, x1) = _read_box(plan.layers[k + 1], d)
                c0, c1 = max(c0, b.channels[0]), min(c1, b.channels[1])
                y0, y1 = max(y0, b.rows[0]), min(y1, b.rows[1])
                if c1 <= c0 or y1 <= y0 or x1 <= x0:
                    continue
                if len(plan.layers[k].out_shape) == 1:
                    y0, y1, x0, x1 = 0, 1, 0, 1
                routes += (c1 - c0) * (y1 - y0) * (x1 - x0)
                if counts is not None:
                    m = float(counts[c0:c1, y0:y1, x0:x1].sum())
                    messages += m
                    path = board.path(cb, cd)
                    hops += m * len(path)
                    for e in path:
                        link[e] = link.get(e, 0.0) + m
                    key = f"{plan.layers[k].name}->{plan.layers[k + 1].name}"
                    per_pair.setdefault(key, {"messages": 0.0})["messages"] += m
    out: dict[str, Any] = {"inter_chip_routes": int(routes)}
    if spike_counts is not None:
        busiest = max(link.items(), key=lambda kv: kv[1]) if link else None
        out.update({
            "inter_chip_messages_per_inference": messages,
            "link_hops_per_inference": hops,
            "busiest_link": None if busiest is None else
            {"from_chip": busiest[0][0], "to_chip": busiest[0][1], "messages": busiest[1]},
            "per_layer_pair": per_pair,
        })
    return out


def multichip_report(plan: DeploymentPlan, board: Board,
                     spike_counts: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Partition, placement and traffic of ``plan`` on ``board`` as one JSON-able record."""
    profile = board.profile()
    blocks = partition_plan(plan, profile)
    chips = place(blocks, board, profile)
    layers = []
    for k, (bl, ch) in enumerate(zip(blocks, chips, strict=True)):
        L = plan.layers[k]
        layers.append({
            "layer": L.name, "kind": L.kind, "out_shape": list(L.out_shape),
            "cores": len(bl), "chips": sorted(set(ch)),
            "split": {"channel_blocks": len({b.channels for b in bl}),
                      "row_blocks": len({b.rows for b in bl})},
            "max_neurons_per_core": max(b.neurons for b in bl),
            "max_memory_bytes_per_core": max(b.memory_bytes for b in bl),
            "max_fan_in_per_core": max(b.fan_in for b in bl),
            "cores_detail": [{**b.to_dict(), "chip": c} for b, c in zip(bl, ch, strict=True)],
        })
    n_cores = sum(len(b) for b in blocks)
    used = sorted({c for ch in chips for c in ch})
    return {
        "board": board.name, "board_source": board.source, "chip_profile": board.chip_profile,
        "chips_available": board.chips, "chips_used": len(used),
        "cores_per_chip": profile.cores_per_chip, "cores_used": n_cores,
        "cores_per_chip_used": {str(c): sum(ch.count(c) for ch in chips) for c in used},
        "layers": layers,
        "traffic": traffic(plan, blocks, chips, board, spike_counts),
        "notes": "partition by output channels x rows (fewest cores within neurons, synaptic "
                 "memory and fan-in limits); cores fill chips in layer order; input host-fed; "
                 "board wiring APPROXIMATE (see the board file)",
    }


def spike_counts_from_trace(trace: Any) -> list[np.ndarray]:
    """Per layer: spikes per neuron per inference, from an emulator/Lava trace's
    ``spikes`` ``[T, B, …]`` (mean over the batch)."""
    layers = getattr(trace, "layer_spikes", None) or getattr(trace, "spikes", None)
    out = []
    for s in layers:
        a = np.asarray(s.cpu().numpy() if hasattr(s, "cpu") else s, dtype=np.float64)
        out.append(a.sum(0).mean(0))
    return out
