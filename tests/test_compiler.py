"""NIR graph + hardware profile → deployment plan: Lava's integer rules, exactness against the
float model where the arithmetic is exact, resource map, fit errors, and the export CLI."""

from __future__ import annotations

import math
import re

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurodeploy.cli import main as cli_main
from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.compiler import compile_graph, compile_model
from neurodeploy.exporters.nir_export import read_nir, to_nir, write_nir
from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.models import ModelConfig, build_model, import_state_dict

REF = "reference_models/certify_snn/mnist_FC.pth.tar"


# ----------------------------------------------------------------------------- reference


def _trunc_div(x: np.ndarray, shift: int) -> np.ndarray:
    """Arithmetic shift right rounding toward zero (Lava's decay rounding)."""
    return np.sign(x) * (np.abs(x) >> shift)


def reference_run(plan: DeploymentPlan, x: torch.Tensor) -> list[np.ndarray]:
    """Lava ``PyLifModelBitAcc`` + Dense/Conv arithmetic on a plan, with the synaptic delays
    removed (feed-forward: delays only shift each layer's train). Test-only reference."""
    s = x.numpy().astype(np.int64)  # [T, B, *shape]
    T, B = s.shape[:2]
    out = []
    for L in plan.layers:
        W = L.weights.astype(np.int64) << L.weight_exp if L.weight_exp >= 0 else None
        if L.flatten_before:
            s = s.reshape(T, B, -1)
        flat = s.reshape(T * B, *s.shape[2:])
        if L.kind == "dense":
            a = flat.reshape(T * B, -1) @ W.T
        else:
            a = F.conv2d(torch.as_tensor(flat, dtype=torch.float64),
                         torch.as_tensor(W, dtype=torch.float64), stride=L.stride,
                         padding=L.padding, groups=L.groups).numpy()
            a = np.rint(a).astype(np.int64)
        a = a.reshape(T, B, -1)
        bias = L.bias_mant.astype(np.int64) << L.bias_exp
        v = np.zeros((B, L.out_size), dtype=np.int64)
        u = np.zeros_like(v)
        vth = L.vth << 6
        spk = []
        for t in range(T):
            u = _trunc_div(u * (4096 - (L.du + 1)), 12) + (a[t] << 6)
            u = np.where(u > 2**23, u - 2**24, u)
            u = np.where(u <= -(2**23), u + 2**24, u)
            v = np.clip(_trunc_div(v * (4096 - L.dv), 12) + u + bias, -(2**23 - 1), 2**23 - 1)
            st = v > vth
            v = np.where(st, 0, v)
            spk.append(st.astype(np.int64))
        s = np.stack(spk).reshape(T, B, *L.out_shape)
        out.append(s)
    return out


def _spikes(shape, T=20, B=4, p=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *shape), generator=g) < p).float()


def _grid_model(arch, shape, seed=0):
    """IF model (α = 1) whose weights are even multiples of 1/1024 with max |W| = 254/1024 and
    biases multiples of 1/4096: the compiler's scale is 1024 and float32 arithmetic is exact,
    so Lava's integer model must reproduce every spike."""
    torch.manual_seed(seed)
    m = build_model(ModelConfig(arch, shape, alpha=1.0, theta=0.25))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for syn in m.synapses:
            if getattr(syn, "weight", None) is None:
                continue
            w = 2 * torch.randint(-127, 128, syn.weight.shape, generator=g)
            w.view(-1)[0] = 254
            syn.weight.copy_(w.float() / 1024)
            syn.bias.copy_(torch.randint(-200, 200, syn.bias.shape, generator=g).float() / 4096)
    return m.eval()


@pytest.mark.parametrize("arch,shape", [("FC40-FC20-FC6", (1, 6, 6)),
                                        ("C6K3-AP2-SP2-FC8", (2, 8, 8)),
                                        ("C4K3S2P1-C5K3P0-FC6", (1, 9, 9))])
def test_integer_plan_reproduces_float_spikes_exactly(arch, shape):
    m = _grid_model(arch, shape)
    plan = compile_model(m, "loihi2")
    for L, q in zip(plan.layers, plan.quantization.values(), strict=False):
        if L.kind != "pool":
            assert L.scale == 1024.0 and q["threshold_err_rel"] == 0.0
            assert q["weight_max_abs_err_rel"] == 0.0 and q["bias_max_abs_err"] == 0.0
        assert L.dv == 0 and L.du == 4095
    x = _spikes(shape)
    ref = m.run(x, record=True).spikes
    got = reference_run(plan, x)
    assert sum(int(s.sum()) for s in got) > 0
    for k, (a, b) in enumerate(zip(ref, got, strict=True)):
        assert np.array_equal(a.detach().numpy().astype(np.int64), b), f"layer {k + 1}"
    assert sum(int(a[5:].sum()) for a in ref) > 0  # activity beyond the first steps


# ----------------------------------------------------------------------------- rules


@pytest.fixture(scope="module")
def ref_model(shared_dir):
    return import_state_dict(shared_dir / REF, ModelConfig("FC512-FC256-FC10", (1, 28, 28),
                                                            readout="rate"))


@pytest.fixture(scope="module")
def ref_plan(ref_model):
    return compile_model(ref_model, "loihi2")


def test_reference_checkpoint_rules(ref_model, ref_plan):
    prof = load_profile("loihi2")
    for L, syn, (name, q) in zip(ref_plan.layers, ref_model.synapses,
                                 ref_plan.quantization.items(), strict=False):
        assert name == L.name
        W = syn.weight.detach().double().numpy()
        b = syn.bias.detach().double().numpy()
        s = L.scale
        assert L.kind == "dense" and L.weight_exp == 0 and L.delay == 1
        assert L.du == 4095 and L.dv == 3072  # α = 0.25 exact
        # mixed sign: even mantissas in [−256, 254], W_int = 2·round(W·s/2)
        assert np.all(L.weights % 2 == 0)
        assert L.weights.min() >= -256 and L.weights.max() <= 254
        assert np.abs(L.weights).max() == 254
        np.testing.assert_array_equal(L.weights, 2 * np.round(W * s / 2))
        assert np.abs(L.weights / s - W).max() <= 1 / s + 1e-12
        # threshold snapped to an exact integer; scale within one threshold step of 254/max|W|
        assert L.vth == 0.25 * s and float(L.vth).is_integer()
        assert 254 / np.abs(W).max() - 1 / 0.25 < s <= 254 / np.abs(W).max()
        # smallest bias exponent whose mantissa fits 13 bits
        e = L.bias_exp
        np.testing.assert_array_equal(L.bias_mant, np.round(b * s * 2.0 ** (6 - e)))
        assert np.abs(L.bias_mant).max() <= 4095
        if e > 0:
            assert np.abs(np.round(b * s * 2.0 ** (7 - e))).max() > 4095
        assert q["bias_max_abs_err"] <= 2.0 ** (e - 6) / 2 / s + 1e-12
        # u never wraps, even if every input spikes
        assert q["max_input_pos"] < prof.input_limit and q["max_input_neg"] < prof.input_limit
        err = np.abs(L.weights / s - W).max() / np.abs(W).max()
        assert q["weight_max_abs_err_rel"] == pytest.approx(err, rel=1e-12)
        assert err <= 1 / (s * np.abs(W).max()) + 1e-12


def test_reference_resources(ref_plan):
    prof = load_profile("loihi2")
    res = ref_plan.resources
    fans = (784, 512, 256)
    ns = (512, 256, 10)
    for info, n, fan in zip(res["layers"], ns, fans, strict=True):
        need_mem = math.ceil(n * fan * prof.bits_per_synapse / 8 /
                             prof.synaptic_memory_bytes_per_core)
        assert info["cores"] == max(math.ceil(n / prof.neurons_per_core), need_mem)
        assert sum(info["neurons_per_core"]) == n and info["synapses"] == n * fan
        assert max(info["synaptic_memory_bytes_per_core"]) <= \
            prof.synaptic_memory_bytes_per_core
        assert info["input_axons_per_core"] == [fan] * info["cores"]
    assert res["cores_used"] == sum(i["cores"] for i in res["layers"])
    assert res["layers"][0]["output_axons_per_core"] == \
        [c * res["layers"][1]["cores"] for c in res["layers"][0]["neurons_per_core"]]
    assert res["limits"]["neurons_per_core"] == prof.neurons_per_core


def test_plan_via_file_equals_compile_model(tmp_path, ref_model, ref_plan):
    g = read_nir(write_nir(ref_model, tmp_path / "r.nir"))
    plan = compile_graph(g, load_profile("loihi2"), 10, (1, 28, 28))
    plan.save(tmp_path / "plan.npz")
    back = DeploymentPlan.load(tmp_path / "plan.npz")
    for a, b in zip(ref_plan.layers, back.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias_mant, b.bias_mant)
        assert (a.vth, a.dv, a.du, a.bias_exp, a.scale) == (b.vth, b.dv, b.du, b.bias_exp,
                                                            b.scale)
    assert back.quantization["layer1"]["token"] == "FC512"
    assert back.resources == ref_plan.resources


def test_single_sign_matrix_uses_odd_values():
    m = build_model(ModelConfig("FC6-FC3", (5,), bias=False))
    with torch.no_grad():
        m.synapses[0].weight.copy_(torch.rand(6, 5) * 0.3 + 0.01)
    plan = compile_model(m)
    L = plan.layers[0]
    assert L.weights.min() >= 0 and L.weights.max() <= 255 and np.any(L.weights % 2 == 1)
    np.testing.assert_array_equal(L.weights, np.round(m.synapses[0].weight.detach().double().numpy()
                                                      * L.scale))
    assert plan.quantization["layer1"]["mixed_sign"] is False


def test_pool_weights_make_threshold_exact():
    m = build_model(ModelConfig("C4K3-AP2-SP2-FC10", (1, 8, 8)))
    plan = compile_model(m)
    for L, c in ((plan.layers[1], 1 / 4), (plan.layers[2], 1.0)):
        w = int(L.weights.flat[0])
        assert L.kind == "pool" and L.groups == 4 and L.stride == (2, 2)
        assert L.weights.shape == (4, 1, 2, 2) and np.all(L.weights == w)
        assert L.vth == 0.25 * w / c  # exact
        # largest exact weight: no larger w ≤ 255 gives an integer θ·w/c
        assert all(not float(0.25 * v / c).is_integer() for v in range(w + 1, 256))
        assert not L.bias_mant.any()


def test_refusals():
    li = build_model(ModelConfig("FC8-FC4", (5,), readout="membrane"))
    # a membrane read-out runs on Loihi 2's programmable neurons (li: v sent each step)
    plan = compile_model(li)
    assert [L.neuron for L in plan.layers] == ["lif", "li"] and plan.readout == "membrane"
    with pytest.raises(HardwareFitError, match="layer 2 .*non-spiking read-out"):
        compile_model(li, "loihi1")
    g = to_nir(build_model(ModelConfig("FC8-FC4", (5,))))
    g.nodes["lif2"].metadata["reset"] = "subtract"
    # subtract reset runs on Loihi 2's programmable neurons (sublif), not on Loihi 1's fixed LIF
    assert [L.neuron for L in compile_graph(g, "loihi2", 10, (5,)).layers] == ["lif", "sublif"]
    with pytest.raises(HardwareFitError, match="layer 2.*subtract reset .node 'lif2'.*programmable"):
        compile_graph(g, "loihi1", 10, (5,))
    g.nodes["lif2"].metadata["reset"] = "halfway"
    with pytest.raises(ConfigError, match="'lif2'.*'halfway'"):
        compile_graph(g, "loihi2", 10, (5,))
    with pytest.raises(ConfigError, match="input shape"):
        compile_graph(to_nir(build_model(ModelConfig("FC8-FC4", (5,)))), "loihi2", 10, (6,))


# ----------------------------------------------------------------------------- fit errors


def _tiny_profile(tmp_path, **chip):
    text = open(load_profile("loihi2").source).read()
    text = text.replace('name = "loihi2"', 'name = "tiny"')
    for k, v in chip.items():
        text = re.sub(rf"^{k} = \d+", f"{k} = {v}", text, flags=re.M) if re.search(
            rf"^{k} = ", text, flags=re.M) else text.replace("[synapse]", f"{k} = {v}\n\n"
                                                                           "[synapse]")
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    return p


def test_too_many_cores_names_layer_and_limit(tmp_path):
    prof = _tiny_profile(tmp_path, cores_per_chip=2, neurons_per_core=16)
    m = build_model(ModelConfig("FC64-FC10", (1, 8, 8)))
    with pytest.raises(HardwareFitError) as ei:
        compile_model(m, prof)
    msg = str(ei.value)
    assert "layer 1 (FC64)" in msg and "needs 4 cores" in msg and "tiny" in msg and \
        "= 2" in msg
    assert ei.value.exit_code == 3


def test_synaptic_memory_and_fan_limits(tmp_path):
    m = build_model(ModelConfig("FC8-FC4", (1, 8, 8)))
    prof = _tiny_profile(tmp_path, synaptic_memory_bytes_per_core=32)
    with pytest.raises(HardwareFitError, match=r"layer 1 \(FC8\): one neuron has 64 synapses"):
        compile_model(m, prof)
    prof = _tiny_profile(tmp_path, max_fan_in_per_core=50)
    with pytest.raises(HardwareFitError, match=r"layer 1 \(FC8\).*64 input axons.*50"):
        compile_model(m, prof)
    prof = _tiny_profile(tmp_path, max_fan_out_per_core=3, neurons_per_core=4)
    with pytest.raises(HardwareFitError, match=r"layer 1 \(FC8\).*4 output axons.*3 per core"):
        compile_model(m, prof)


def test_oversized_model_on_loihi1():
    n = 130 * 1024  # 130 cores of 1024 neurons > 128 cores
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1])}),
               "fc1": nir.Linear(weight=np.full((n, 1), 0.1, dtype=np.float32)),
               "lif1": nir.LIF(tau=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n),
                               v_threshold=np.full(n, 0.25), v_reset=np.zeros(n)),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "output")])
    with pytest.raises(HardwareFitError, match=r"layer 1 \(FC133120\): needs 130 cores.*"
                                               r"loihi1 has 128 cores per chip"):
        compile_graph(g, "loihi1", 10, (1,))


def test_conv_fan_in_is_receptive_field():
    m = build_model(ModelConfig("C2K3-FC4", (3, 10, 10)))
    prof = load_profile("loihi1")
    plan = compile_model(m, prof)
    info = plan.resources["layers"][0]
    assert info["cores"] == 1 and info["fan_in_per_neuron"] == 3 * 9
    assert info["synapses"] == 2 * 3 * (10 * 10 * 9 - 4 * 10 * 3 + 4)  # padding taps removed
    assert info["input_axons_per_core"] == [300]


# ----------------------------------------------------------------------------- CLI


def _state_dict_file(tmp_path):
    m = build_model(ModelConfig("FC16-FC4", (1, 4, 4)))
    p = tmp_path / "sd.pth"
    torch.save({f"fc{i + 1}.{k}": v for i, s in enumerate(m.synapses)
                for k, v in s.state_dict().items()}, p)
    return p


def test_cli_export_writes_nir_and_plan(tmp_path, capsys):
    sd = _state_dict_file(tmp_path)
    out = tmp_path / "out"
    rc = cli_main(["export", "--model", str(sd), "--arch", "FC16-FC4", "--input-shape",
                   "1,4,4", "--profile", "loihi1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "profile loihi1" in text and "FC16" in text and "w err max" in text
    plan = DeploymentPlan.load(out / "plan.npz")
    assert plan.profile == "loihi1" and plan.input_shape == (1, 4, 4)
    g = nir.read(str(out / "model.nir"))
    assert isinstance(g.nodes["fc1"], nir.Affine)
    assert sorted(p.name for p in out.iterdir()) == ["model.nir", "plan.npz"]


def test_cli_unknown_profile_exit_2(tmp_path, capsys):
    sd = _state_dict_file(tmp_path)
    rc = cli_main(["export", "--model", str(sd), "--arch", "FC16-FC4", "--input-shape",
                   "1,4,4", "--profile", "loihi9", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "loihi9" in err and "loihi1" in err and "loihi2" in err
    assert not (tmp_path / "o").exists()


def test_cli_does_not_fit_exit_3(tmp_path, capsys):
    sd = _state_dict_file(tmp_path)
    prof = _tiny_profile(tmp_path, cores_per_chip=1, neurons_per_core=8)
    rc = cli_main(["export", "--model", str(sd), "--arch", "FC16-FC4", "--input-shape",
                   "1,4,4", "--profile", str(prof), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 3 and "layer 1 (FC16)" in err
    assert not (tmp_path / "o").exists()


def test_cli_export_neurodeploy_checkpoint_and_missing_arch(tmp_path, capsys):
    from neurodeploy.models import save_checkpoint

    m = build_model(ModelConfig("C2K3-AP2-FC4", (1, 6, 6), readout="count"))
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, m)
    rc = cli_main(["export", "--model", str(ck), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 0
    plan = DeploymentPlan.load(tmp_path / "o" / "plan.npz")
    assert [L.kind for L in plan.layers] == ["conv", "pool", "dense"]
    rc = cli_main(["export", "--model", str(_state_dict_file(tmp_path)), "--out",
                   str(tmp_path / "o2")])
    assert rc == 2 and "--arch" in capsys.readouterr().err
