"""netx out (issue 23, point 3): a plan written as lava-dl's netx HDF5, loaded by lava-dl's own
``lava.lib.dl.netx.hdf5.Network`` and run in Lava (CPU, ``fixed_pt``) equals our emulator
spike for spike in every block; plans netx cannot express are refused naming the layer.

The Lava runs need the Lava environment with lava-dl (``make setup``); without it they skip.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.netx import check_expressible, with_netx_bias, write_netx
from neurodeploy.exporters.plan import PlanLayer

torch.set_num_threads(1)
T, B = 8, 6


def _netx_or_skip() -> None:
    from neurodeploy.sims.netx_runner import netx_available

    why = netx_available()
    if why:
        pytest.skip(why)


def _fc_plan(seed: int = 0):
    """A trained-shape FC plan (64-32-10) compiled by our own exporter, with biases."""
    from neurodeploy.exporters.compiler import compile_graph
    from neurodeploy.exporters.nir_export import to_nir
    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.models import ModelConfig, SpikingNet

    torch.manual_seed(seed)
    m = SpikingNet(ModelConfig(arch="FC32-FC10", input_shape=(1, 8, 8), num_steps=T,
                               alpha=0.5, theta=0.25)).eval()
    with torch.no_grad():
        for syn in m.synapses:
            syn.weight.mul_(3.0)
            syn.bias.uniform_(-0.05, 0.1)
    return compile_graph(to_nir(m, dt=1e-4), load_profile("loihi2"), T, (1, 8, 8))


def _cnn_plan(seed: int = 0):
    """Conv → pool (fused) → flatten → dense, converted from a SpikingJelly network."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import layer, neuron

    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.exporters.spikingjelly import compile_module

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(tau=2.0, v_threshold=0.3),
        layer.AvgPool2d(2), layer.Conv2d(4, 6, 3, stride=1), neuron.IFNode(v_threshold=0.5),
        layer.Flatten(), layer.Linear(24, 10), neuron.LIFNode(tau=4.0, v_threshold=0.2))
    return compile_module(net, load_profile("loihi2"), T, (1, 8, 8)).plan


def _run_both(plan, tmp_path, p: float = 0.5, seed: int = 1):
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.netx_runner import run_netx

    plan, _ = with_netx_bias(plan)
    path = tmp_path / "net.net"
    write_netx(plan, path)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((T, B) + tuple(plan.input_shape), generator=g) < p).to(torch.uint8)
    emu = Emulator(plan).run(x).layer_spikes
    lava, meta = run_netx(path, x.numpy(), timeout_s=900)
    return [np.asarray(e).reshape(lava[k].shape) for k, e in enumerate(emu)], lava, meta


@pytest.mark.lava
@pytest.mark.long  # one Lava run each (~40 s on 2 loaded cores)
@pytest.mark.parametrize("make", [_fc_plan, _cnn_plan], ids=["fc", "cnn"])
def test_netx_in_lava_equals_emulator(make, tmp_path):
    _netx_or_skip()
    emu, lava, meta = _run_both(make(), tmp_path)
    assert len(emu) == len(lava)
    for k, (a, b) in enumerate(zip(emu, lava, strict=True)):
        assert a.shape == b.shape, (k, a.shape, b.shape)
        assert int((a != b).sum()) == 0, f"block {k}: {int((a != b).sum())} of {a.size} differ"
        assert 0 < int(a.sum()) < a.size, f"block {k}: {int(a.sum())} spikes proves nothing"
    print(f"netx blocks built by lava-dl:\n{meta['blocks']}")


def test_written_file_is_what_slayer_writes():
    h5py = pytest.importorskip("h5py")
    plan, _ = with_netx_bias(_fc_plan())
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_netx(plan, f"{d}/n.net")
        with h5py.File(f"{d}/n.net") as f:
            lay = f["layer"]
            assert [lay[str(i)]["type"][0].decode() for i in range(len(lay))] == \
                ["input", "flatten", "dense", "dense"]
            L = plan.layers[0]
            np.testing.assert_array_equal(lay["2"]["weight"][()],
                                          np.asarray(L.weights) << L.weight_exp)
            n = lay["2"]["neuron"]
            assert n["type"][0].decode() == "CUBA" and int(n["iDecay"][()]) == L.du + 1
            assert int(n["vDecay"][()]) == L.dv and int(n["vThMant"][()]) == L.vth
            np.testing.assert_array_equal(lay["2"]["bias"][()], L.bias_mant)  # bias_exp 6


def test_bias_is_requantised_to_netx_exponent_and_noted():
    plan = _fc_plan()
    assert any(L.bias_exp < 6 for L in plan.layers)
    with pytest.raises(ConfigError, match=r"plan layer 0 \(layer1, dense\): bias_mant"):
        check_expressible(plan)
    q, notes = with_netx_bias(plan)
    check_expressible(q)
    assert all(L.bias_exp == 6 or not np.any(L.bias_mant) for L in q.layers)
    assert len(notes) == sum(L.bias_exp < 6 for L in plan.layers)
    for a, b in zip(plan.layers, q.layers, strict=True):  # rounding to the nearest 2^6 v units
        d = np.abs(np.asarray(b.bias_mant) * 64 - np.asarray(a.bias_mant) * 2 ** a.bias_exp)
        assert d.max() <= 32


def _with(plan, k: int, **kw) -> object:
    layers = list(plan.layers)
    layers[k] = replace(layers[k], **kw)
    return replace(plan, layers=tuple(layers))


@pytest.mark.parametrize("change, words", [
    ({"neuron": "sublif"}, "plan layer 1 (layer2, dense): neuron 'sublif'"),
    ({"weight_exp": -1}, "weights·2^-1 are not integers"),
    ({"weight_exp": 2}, "exceed netx's 8-bit range"),
    ({"delay": 2}, "synaptic delay 2"),
])
def test_inexpressible_layers_are_refused_naming_them(change, words):
    plan, _ = with_netx_bias(_fc_plan())
    bad = _with(plan, 1, **change)
    if change.get("weight_exp") == -1:  # odd mantissas: Lava floors the sum, netx would not
        w = np.asarray(bad.layers[1].weights).copy()
        w.flat[0] = 3
        bad = _with(bad, 1, weights=w)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("^", r"\^")):
        check_expressible(bad)


def test_second_synapse_group_is_refused_naming_the_layer():
    """A plan-v3 dense layer with two synapse groups (``weights_lo``) has no netx block: one
    weight matrix per block, so writing it would silently drop the fine group."""
    plan, _ = with_netx_bias(_fc_plan())
    lo = np.ones_like(np.asarray(plan.layers[1].weights))
    with pytest.raises(ConfigError, match=r"plan layer 1 \(layer2, dense\): two synapse groups"):
        check_expressible(_with(plan, 1, weights_lo=lo))


def test_planlayer_fields_cover_the_format():
    """Every PlanLayer field is either written, checked, or irrelevant to a LIF block: a new
    field makes this test fail until the netx writer decides about it."""
    handled = {"name", "kind", "in_shape", "out_shape", "weights", "weight_exp", "du", "dv",
               "vth", "bias_mant", "bias_exp", "scale", "delay", "stride", "padding", "groups",
               "flatten_before", "neuron", "neuron_params", "neuron_arrays", "skip_from",
               "skip_weights", "weights_lo"}
    assert set(PlanLayer.__dataclass_fields__) == handled


def test_cli_export_format_netx(tmp_path, capsys):
    from neurodeploy.cli import main
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.models import save_checkpoint

    pytest.importorskip("h5py")
    from neurodeploy.models import ModelConfig, SpikingNet

    torch.manual_seed(0)
    m = SpikingNet(ModelConfig(arch="FC16-FC10", input_shape=(1, 8, 8), num_steps=T)).eval()
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, m, {"data": {"source": "digits"}})
    out = tmp_path / "o"
    assert main(["export", "--model", str(ck), "--format", "netx", "--out", str(out), "-q"]) == 0
    assert "net.net" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["model.nir", "net.net", "plan.npz"]
    plan = DeploymentPlan.load(out / "plan.npz")
    check_expressible(plan)  # the plan written is the one the netx file states


@pytest.mark.long  # trains a digits SNN and audits it (~50 s on 2 loaded cores)
def test_audit_of_a_netx_file(tmp_path, capsys):
    """A digits SNN trained here, exported with ``--format netx`` and audited from net.net: the
    deployed side is the plan read back from the file, the float side its integers as reals."""
    import json

    from neurodeploy.attacks.toy import train_digits_snn
    from neurodeploy.cli import main
    from neurodeploy.models import save_checkpoint

    pytest.importorskip("h5py")
    torch.manual_seed(0)
    m = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=3,
                         readout="rate").model.eval()
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, m, {"data": {"source": "digits"}})
    exp = tmp_path / "exp"
    assert main(["export", "--model", str(ck), "--format", "netx", "--out", str(exp), "-q"]) == 0
    out = tmp_path / "audit"
    rc = main(["audit", "--model", str(exp / "net.net"), "--steps", "6", "--samples", "24",
               "--eps", "0.1", "--attacks", "fgsm", "--threat-models", "known",
               "--lava-samples", "0", "--no-certify", "--no-masking-checks", "-q",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    rep = json.loads((out / "audit.json").read_text())
    clean = {r["backend"]: r["accuracy"] for r in rep["accuracy"] if r["attack"] == "clean"}
    print(f"netx digits FC32-FC10 (T = 6, 24 samples): clean {clean}")
    assert clean["float"] > 0.6 and clean["deployed"] > 0.6, clean
    assert rep["model"]["nir"]["producer"] == "lava-dl"
    assert min(la["agreement_emulator"] for la in rep["layers"]) > 0.9
