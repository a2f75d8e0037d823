"""Many cores, many chips (exporters.partition): channel × row partitions within the core
limits (checked against brute force), placement on a board, inter-chip traffic (checked
against brute force), and the N-MNIST-shape CNN and a VGG-style 32×32×3 net compiled for a
Kapoho Point board — emulator ≡ Lava on both."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.compiler import compile_model
from neurodeploy.exporters.partition import (
    Board,
    load_board,
    multichip_report,
    partition_layer,
    partition_plan,
    place,
    spike_counts_from_trace,
    traffic,
)
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.models import ModelConfig, build_model

NMNIST_CNN = "C16K5S2-C32K3-SP2-C64K3-SP2-FC256-FC10"
# Pools over at most 64 channels: Lava 0.10's Conv model (lava/proc/conv/models.py) types
# ``groups`` as int8, so a pool over 128 channels (a Conv with groups=128) wraps to -128 and
# Lava outputs no spikes at all, while the emulator and the numpy transcription of Lava agree
# (measured on C128K3-SP2-FC10: Lava 0 pool spikes, emulator = transcription = 12,367).
VGG_32 = "C32K3-C32K3-SP2-C64K3-C64K3-SP2-C128K3-C128K3-FC256-FC10"


def _plan(arch, shape, profile, steps=4, scale=3.0, encoding="bernoulli"):
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch, shape, num_steps=steps, readout="rate", encoding=encoding))
    with torch.no_grad():  # livelier than the default init, so that deep layers spike
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return compile_model(m, profile)


def _reads(L, n_in_shape):
    """Brute force: for every output neuron (flat C·H·W), the set of flat inputs it reads."""
    if L.kind == "dense":
        n_in = int(np.prod(L.in_shape))
        return [set(range(n_in))] * int(np.prod(L.out_shape))
    C, H, W = L.in_shape
    Co, Ho, Wo = L.out_shape
    kh, kw = L.weights.shape[-2:]
    groups = L.groups if L.kind == "conv" else C
    cin_g, cout_g = C // groups, Co // groups
    out = []
    for co in range(Co):
        g = co // cout_g
        for oy in range(Ho):
            for ox in range(Wo):
                s = set()
                for ci in range(g * cin_g, (g + 1) * cin_g):
                    for dy in range(kh):
                        for dx in range(kw):
                            y = oy * L.stride[0] - L.padding[0] + dy
                            x = ox * L.stride[1] - L.padding[1] + dx
                            if 0 <= y < H and 0 <= x < W:
                                s.add((ci * H + y) * W + x)
                out.append(s)
    return out


def _members(L, b):
    """Flat output indices of a core block."""
    if L.kind == "dense":
        return list(range(*b.channels))
    _, Ho, Wo = L.out_shape
    return [(c * Ho + y) * Wo + x for c in range(*b.channels) for y in range(*b.rows)
            for x in range(Wo)]


def test_board_file_and_profile():
    board = load_board("kapoho_point")
    assert board.chips == 8 and board.mesh == (2, 4) and board.chip_profile == "loihi2"
    p = board.profile()
    assert p.chips == 8 and p.total_cores == 8 * load_profile("loihi2").cores_per_chip
    assert board.coords(5) == (1, 1)
    assert board.path(0, 7) == [(0, 1), (1, 2), (2, 3), (3, 7)]  # x first, then y
    assert board.path(6, 1) == [(6, 5), (5, 1)]
    with pytest.raises(ConfigError, match="unknown board"):
        load_board("nope")
    with pytest.raises(ConfigError, match="cannot hold"):
        Board("b", "", "loihi2", 9, (2, 4))


@pytest.mark.parametrize("fan_in", [None, 200])
def test_partition_fits_tiles_and_matches_brute_force(fan_in):
    base = load_profile("loihi2")
    prof = dataclasses.replace(base, neurons_per_core=150, synaptic_memory_bytes_per_core=6000,
                               max_fan_in_per_core=fan_in)
    plan = _plan("C6K3-SP2-C8K3S2-FC20-FC10", (2, 12, 12), base)
    for k, L in enumerate(plan.layers):
        blocks = partition_layer(L, k, prof)
        reads = _reads(L, L.in_shape)
        seen: list[int] = []
        for b in blocks:
            mem = _members(L, b)
            seen += mem
            assert b.neurons == len(mem) <= prof.neurons_per_core
            assert b.synapses == sum(len(reads[i]) for i in mem)  # conv weights unshared
            assert b.memory_bytes <= prof.synaptic_memory_bytes_per_core
            assert b.fan_in == len(set().union(*(reads[i] for i in mem)))
            if fan_in is not None:
                assert b.fan_in <= fan_in
        assert sorted(seen) == list(range(int(np.prod(L.out_shape))))  # each neuron once
    # the fan-in limit is met by splitting rows of the first conv (channels alone cannot)
    rows = {b.rows for b in partition_layer(plan.layers[0], 0, prof)}
    assert (len(rows) > 1) == (fan_in is not None)


def test_partition_refuses_what_cannot_be_split():
    base = load_profile("loihi2")
    plan = _plan("C4K3-FC10", (1, 8, 8), base)
    prof = dataclasses.replace(base, max_fan_in_per_core=100)
    with pytest.raises(HardwareFitError, match=r"layer2.*max_fan_in_per_core.*dense"):
        partition_plan(plan, prof)  # the dense layer reads all 144 inputs
    tiny = dataclasses.replace(base, synaptic_memory_bytes_per_core=8)
    with pytest.raises(HardwareFitError, match="bytes of synapses"):
        partition_layer(plan.layers[0], 0, tiny)


def test_traffic_matches_brute_force_on_a_small_board():
    base = load_profile("loihi2")
    plan = _plan("C6K3-SP2-C8K3S2-FC20-FC10", (2, 12, 12), base)
    prof = dataclasses.replace(base, cores_per_chip=3, neurons_per_core=150,
                               synaptic_memory_bytes_per_core=6000)
    board = Board("tiny", "test board", "loihi2", 6, (2, 3))
    blocks = partition_plan(plan, prof)
    chips = place(blocks, board, prof)
    assert len({c for ch in chips for c in ch}) > 2
    rng = np.random.default_rng(4)
    counts = [rng.integers(0, 5, L.out_shape).astype(float) for L in plan.layers]
    got = traffic(plan, blocks, chips, board, counts)
    routes = messages = hops = 0.0
    for k in range(len(plan.layers) - 1):
        reads = _reads(plan.layers[k + 1], plan.layers[k + 1].in_shape)
        flat = counts[k].reshape(-1)
        for b, cb in zip(blocks[k], chips[k], strict=True):
            for d, cd in zip(blocks[k + 1], chips[k + 1], strict=True):
                if cb == cd:
                    continue
                read = set().union(*(reads[i] for i in _members(plan.layers[k + 1], d)))
                sent = [n for n in _members(plan.layers[k], b) if n in read]
                routes += len(sent)
                messages += flat[sent].sum()
                hops += flat[sent].sum() * len(board.path(cb, cd))
    assert got["inter_chip_routes"] == routes > 0
    assert got["inter_chip_messages_per_inference"] == pytest.approx(messages, abs=0)
    assert got["link_hops_per_inference"] == pytest.approx(hops, abs=0)
    with pytest.raises(HardwareFitError, match="cores but board"):
        place(blocks, Board("one", "", "loihi2", 1, (1, 1)), prof)


@pytest.mark.parametrize("arch,shape,enc,chips", [
    pytest.param(NMNIST_CNN, (2, 34, 34), "spikes", 1, id="nmnist-cnn"),
    pytest.param(VGG_32, (3, 32, 32), "bernoulli", 2, id="vgg32", marks=pytest.mark.slow),
])
def test_cnns_compile_for_a_board_and_report_traffic(arch, shape, enc, chips):
    from neurodeploy.sims.emulator import Emulator

    board = load_board("kapoho_point")
    if chips > 1:
        with pytest.raises(HardwareFitError, match="cores"):
            _plan(arch, shape, "loihi2", encoding=enc)  # one Loihi 2 chip is too small
    plan = _plan(arch, shape, board.profile(), encoding=enc)
    x = (np.random.default_rng(0).random((4, 2, *shape)) < 0.3).astype(np.uint8)
    rep = multichip_report(plan, board, spike_counts_from_trace(Emulator(plan).run(x)))
    assert rep["chips_used"] == chips
    assert rep["cores_used"] == sum(L["cores"] for L in rep["layers"])
    t = rep["traffic"]
    if chips > 1:
        assert t["inter_chip_routes"] > 0 and t["inter_chip_messages_per_inference"] > 0
        assert t["busiest_link"]["messages"] > 0
    else:
        assert t["inter_chip_routes"] == 0


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("arch,shape,enc", [
    pytest.param(NMNIST_CNN, (2, 34, 34), "spikes", id="nmnist-cnn"),
    pytest.param(VGG_32, (3, 32, 32), "bernoulli", id="vgg32"),
])
def test_emulator_equals_lava_on_the_board_nets(arch, shape, enc):
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.lava_env import lava_available, run_lava

    if not lava_available():
        pytest.skip("Lava environment (.venv-lava) not found")
    plan = _plan(arch, shape, load_board("kapoho_point").profile(), encoding=enc)
    x = (np.random.default_rng(1).random((4, 2, *shape)) < 0.3).astype(np.uint8)
    emu = Emulator(plan).run(x)
    lava = run_lava(plan, x, timeout_s=1500, record_layers=True)
    total = 0
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        e = e.numpy()
        assert e.shape == l_.shape
        assert int((e != l_).sum()) == 0, f"layer {k}: mismatched spikes"
        total += int(e.sum())
    assert total > 1000  # the nets are active, not silent
    assert np.array_equal(emu.out_spikes.numpy(), lava.out_spikes)


def test_compiler_splits_rows_when_a_core_would_exceed_its_fan_in():
    """Loihi 1 allows 4096 input axons per core: a conv reading a 32×16×16 input (8192 axons)
    used to be refused; the compiler now splits it by output rows (partition.py) and every
    core's fan-in, neuron count and memory stay within the limits."""
    prof = load_profile("loihi1")
    assert prof.max_fan_in_per_core == 4096
    plan = _plan("C8K3-FC10", (32, 16, 16), prof)
    info = plan.resources["layers"][0]
    assert max(info["input_axons_per_core"]) <= 4096 < 32 * 16 * 16
    assert sum(info["neurons_per_core"]) == info["neurons"] == 8 * 16 * 16
    assert sum(info["synapses_per_core"]) == info["synapses"]
    assert max(info["synaptic_memory_bytes_per_core"]) <= prof.synaptic_memory_bytes_per_core
    assert max(info["neurons_per_core"]) <= prof.neurons_per_core
    # the fan-out of the next layer's inputs is counted over the same (non-contiguous) cores
    assert sum(info["output_axons_per_core"]) == info["neurons"] * plan.resources["layers"][1][
        "cores"]
    # the same blocks as the partition module's own split
    blocks = partition_layer(plan.layers[0], 0, prof)
    assert [b.fan_in for b in blocks] == info["input_axons_per_core"]
    assert [b.neurons for b in blocks] == info["neurons_per_core"]
