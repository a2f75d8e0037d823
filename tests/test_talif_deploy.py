"""On-chip TA-LIF: NIR metadata extension round trip, compiler (θ_v / NDS quantization, Loihi 1
refused), emulator == independent integer reference == hardware twin, emulator == Lava's
custom TALIF process (zero mismatched spikes), and float-vs-fixed threshold traces."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.compiler import compile_model
from neurodeploy.exporters.nir_export import TALIF_META_KEY, from_nir, to_nir, write_nir
from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.sims.emulator import (
    Emulator,
    random_conv_plan,
    random_fc_plan,
    reference_lava_network,
)
from neurodeploy.sims.lava_env import lava_available, run_lava
from neurodeploy.sims.twin import HardwareTwin

needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")


def talif_model(arch: str, input_shape: tuple[int, ...], T: int, seed: int):
    """A SpikingNet with TA-LIF hidden layers, random θ_v ∈ [0, 0.4] and NDS ~ N(0.1, 0.3²)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch, input_shape, num_steps=T, neuron="talif"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n in model.neurons[:-1]:
            n.theta_v.copy_(torch.rand(n.shape, generator=g) * 0.4)
            n.set_nds(0.1 + 0.3 * torch.randn(T, *n.shape, generator=g))
    return model.eval()


def to_talif_plan(plan: DeploymentPlan, rng: np.random.Generator, shift: int = 12,
                  which: str = "hidden") -> DeploymentPlan:
    """Make layers TA-LIF with random integer θ_v mantissas and NDS (v units)."""
    layers = []
    n = len(plan.layers)
    for k, L in enumerate(plan.layers):
        if which == "hidden" and k == n - 1:
            layers.append(L)
            continue
        vth64 = max(int(L.vth), 1) << 6
        tv = rng.integers(0, 2 ** shift // 2 + 1, size=L.out_size).astype(np.int32)
        nds = rng.integers(-vth64, vth64 + 1, size=(plan.num_steps, L.out_size)).astype(np.int32)
        layers.append(dataclasses.replace(
            L, neuron="talif", neuron_params={"theta_v_shift": shift, "theta_bits": 24},
            neuron_arrays={"theta_v": tv, "nds": nds}))
    return dataclasses.replace(plan, layers=tuple(layers))


def reference_talif_run(plan: DeploymentPlan, spikes: np.ndarray
                        ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Independent int64 transcription of the aligned plan semantics (exporters/plan.py +
    sims/lava_procs/talif/process.py), dense layers only, small-value regime."""
    s = spikes.astype(np.int64)
    T, B = s.shape[:2]
    outs, thetas = [], []
    for L in plan.layers:
        x = s.reshape(T, B, -1)
        W = np.asarray(L.weights, dtype=np.int64)
        a = np.einsum("tbi,oi->tbo", x, W)  # even mixed weights: Lava keeps them unchanged
        a = a << L.weight_exp if L.weight_exp >= 0 else a >> -L.weight_exp
        N = L.out_size
        u = np.zeros((B, N), np.int64)
        v = np.zeros((B, N), np.int64)
        theta = np.full((B, N), int(L.vth) << 6, np.int64)
        bias = np.asarray(L.bias_mant, np.int64) << L.bias_exp
        sp = np.zeros((T, B, N), np.uint8)
        th = np.zeros((T, B, N), np.int64)
        tal = L.neuron == "talif"
        for t in range(T):
            du = u * (4096 - L.du - 1)
            u = np.sign(du) * (np.abs(du) >> 12) + (a[t] << 6)
            dv = v * (4096 - L.dv)
            v = np.clip(np.sign(dv) * (np.abs(dv) >> 12) + u + bias, -(2**23 - 1), 2**23 - 1)
            if tal:
                k = L.neuron_params["theta_v_shift"]
                nds = np.asarray(L.neuron_arrays["nds"], np.int64)
                prod = np.asarray(L.neuron_arrays["theta_v"], np.int64) * (v - nds[min(t, len(nds) - 1)])
                theta = np.clip(theta + np.sign(prod) * (np.abs(prod) >> k), -(2**23 - 1),
                                2**23 - 1)
            fire = v > theta
            v[fire] = 0
            sp[t], th[t] = fire, theta
        outs.append(sp)
        thetas.append(th if tal else None)
        s = sp
    return outs, thetas


# ----------------------------------------------------------------------------- NIR


def test_nir_round_trip_talif_identical_spikes(tmp_path) -> None:
    T = 24
    model = talif_model("C4K3S1P1-AP2-FC16-FC5", (1, 8, 8), T, seed=0)
    path = write_nir(model, tmp_path / "talif.nir")
    g = nir.read(str(path))  # standard NIR reader: plain LIF nodes + metadata hints
    lifs = [k for k, v in g.nodes.items() if isinstance(v, nir.LIF)]
    assert len(lifs) == 4
    marked = [k for k in lifs if g.nodes[k].metadata.get(TALIF_META_KEY) == "talif"]
    assert sorted(marked) == ["lif1", "lif2", "lif3"]
    assert g.nodes["lif1"].metadata["nds"].shape == (T, 4, 8, 8)
    back = from_nir(path)
    assert back.config.neuron == "talif" and back.config.num_steps == T
    x = (torch.rand(T, 3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.no_grad():
        a, b = model.run(x, record=True), back.run(x, record=True)
    for k in range(4):
        assert torch.equal(a.spikes[k], b.spikes[k]), f"layer {k}"
        assert torch.equal(a.thetas[k], b.thetas[k]), f"layer {k}"
    assert sum(int(s.sum()) for s in a.spikes) > 0
    # the adaptation is really exercised: θ moves away from θ_base
    assert float((a.thetas[0] - model.config.theta).abs().max()) > 0.05


def test_nir_unknown_neuron_extension_is_refused() -> None:
    model = talif_model("FC6-FC3", (1, 2, 2), 5, seed=2)
    g = to_nir(model)
    g.nodes["lif1"].metadata[TALIF_META_KEY] = "resonate-and-fire"
    with pytest.raises(ConfigError, match="resonate-and-fire"):
        from_nir(g)


# ----------------------------------------------------------------------------- compiler


def test_compile_talif_quantization_and_validation(tmp_path) -> None:
    model = talif_model("C4K3S1P1-AP2-FC16-FC5", (1, 8, 8), 12, seed=3)
    plan = compile_model(model, "loihi2")
    plan.validate()
    plan.save(tmp_path / "p.npz")
    loaded = DeploymentPlan.load(tmp_path / "p.npz")
    for k, (L, M) in enumerate(zip(plan.layers, loaded.layers, strict=True)):
        assert L.neuron == M.neuron == ("talif" if k < 3 else "lif")
        if L.neuron != "talif":
            continue
        neuron = model.neurons[k]
        shift = L.neuron_params["theta_v_shift"]
        tv = neuron.theta_v.detach().double().numpy().reshape(-1)
        assert np.array_equal(L.neuron_arrays["theta_v"], np.round(tv * 2.0**shift))
        assert int(L.neuron_arrays["theta_v"].max()) < 2**16
        # the finest shift that fits 16 bits, up to the profile's talif_theta_v_shift_max = 15
        assert shift == 15 or round(tv.max() * 2.0 ** (shift + 1)) >= 2**16
        nds = neuron.nds.detach().double().numpy().reshape(12, -1)
        assert L.neuron_arrays["nds"].shape == (12, L.out_size)
        unit = L.scale * 64
        assert np.abs(L.neuron_arrays["nds"] / unit - nds).max() <= 0.5 / unit + 1e-12
        for key in ("theta_v", "nds"):
            assert np.array_equal(L.neuron_arrays[key], M.neuron_arrays[key])
        q = plan.quantization[L.name]
        assert q["theta_v_max_abs_err"] <= 2.0 ** -(shift + 1) + 1e-12
        assert q["nds_max_abs_err"] <= 0.5 / unit + 1e-12
    assert "theta_v_max_abs_err_rel_max" in plan.quantization["summary"]


def test_compile_talif_refused_on_loihi1() -> None:
    model = talif_model("FC8-FC3", (1, 2, 2), 5, seed=4)
    with pytest.raises(HardwareFitError, match=r"layer 1 \(FC8\).*programmable neurons.*loihi1"):
        compile_model(model, "loihi1")


# ----------------------------------------------------------------------------- emulator / twin


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 12), st.integers(0, 15))
def test_emulator_and_twin_equal_reference_random_talif_fc(seed, n_layers, T, shift) -> None:
    rng = np.random.default_rng(seed)
    sizes = tuple(int(rng.integers(1, 25)) for _ in range(n_layers + 1))
    plan = to_talif_plan(random_fc_plan(rng, sizes, num_steps=T, vth=int(rng.integers(1, 400)),
                                        bias_max=300), rng, shift=shift, which="all")
    spikes = (rng.random((T, 3, sizes[0])) < 0.5).astype(np.uint8)
    ref_s, ref_th = reference_talif_run(plan, spikes)
    emu = Emulator(plan).run(spikes, record=True)
    tw = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(spikes))
    for k in range(n_layers):
        assert np.array_equal(emu.layer_spikes[k].numpy(), ref_s[k]), f"layer {k}"
        assert np.array_equal(emu.layer_theta[k].numpy(), ref_th[k]), f"layer {k} θ"
        assert torch.equal(tw.spikes[k], emu.layer_spikes[k].double()), f"twin layer {k}"
        assert torch.equal(tw.theta[k].to(torch.int64), emu.layer_theta[k]), f"twin θ {k}"


def test_twin_equals_emulator_talif_conv_pool() -> None:
    rng = np.random.default_rng(11)
    total = 0
    for _ in range(3):
        plan = to_talif_plan(random_conv_plan(rng, (2, 6, 7), 3, (3, 3), (1, 1), (1, 1), 2, 4,
                                              vth=int(rng.integers(1, 200))), rng)
        spikes = (rng.random((6, 3, 2, 6, 7)) < 0.5).astype(np.uint8)
        emu = Emulator(plan).run(spikes, record=True)
        tw = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(spikes))
        for k in range(len(plan.layers)):
            assert torch.equal(tw.spikes[k], emu.layer_spikes[k].double())
            if plan.layers[k].neuron == "talif":
                assert torch.equal(tw.theta[k].to(torch.int64), emu.layer_theta[k])
            else:
                assert emu.layer_theta[k] is None
        total += sum(int(s.sum()) for s in emu.layer_spikes)
    assert total > 0


# ----------------------------------------------------------------------------- Lava


def assert_lava_equals_emulator(plan: DeploymentPlan, spikes: np.ndarray, raw: bool = False
                                ) -> int:
    """Emulator == Lava (custom TALIF process) on every layer and step; with ``raw`` also the
    emulator module's literal numpy transcription == Lava's global sink trains."""
    lava = run_lava(plan, spikes, timeout_s=300, record_layers=True, raw=raw)
    emu = Emulator(plan).run(spikes)
    n = 0
    for k, (e, l_) in enumerate(zip(emu.layer_spikes, lava.layer_spikes, strict=True)):
        mism = int((e.numpy() != l_).sum())
        assert mism == 0, f"layer {k}: {mism} mismatched spikes of {l_.size}"
        n += l_.size
    if raw:
        trains, _ = reference_lava_network(plan, spikes)
        for k, (r, l_) in enumerate(zip(trains, lava.raw, strict=True)):
            assert np.array_equal(r, l_), f"layer {k}: transcription differs from Lava"
    return n


@pytest.mark.lava
@needs_lava
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 2), st.integers(2, 8))
def test_lava_equals_emulator_random_talif(seed, n_layers, T) -> None:
    rng = np.random.default_rng(seed)
    sizes = tuple(int(rng.integers(2, 20)) for _ in range(n_layers + 1))
    plan = to_talif_plan(random_fc_plan(rng, sizes, num_steps=T, vth=int(rng.integers(1, 400)),
                                        bias_max=300), rng, shift=int(rng.integers(0, 16)),
                         which="all")
    spikes = (rng.random((T, 3, sizes[0])) < 0.5).astype(np.uint8)
    assert assert_lava_equals_emulator(plan, spikes, raw=True) > 0


@pytest.mark.lava
@needs_lava
def test_lava_equals_emulator_talif_conv_pool() -> None:
    rng = np.random.default_rng(5)
    plan = to_talif_plan(random_conv_plan(rng, (2, 5, 6), 2, (3, 3), (1, 1), (1, 1), 2, 3,
                                          num_steps=5, vth=60), rng)
    spikes = (rng.random((5, 2, 2, 5, 6)) < 0.5).astype(np.uint8)
    assert assert_lava_equals_emulator(plan, spikes, raw=True) > 0


# ----------------------------------------------------------------------------- trained model


@pytest.fixture(scope="module")
def hosnn_digits():
    """The emulator tests' digits LIF model (2 epochs), converted to HoSNN: NDS collected on
    the training images, θ_v per neuron ∈ [0.1, 0.3]."""
    from test_emulator import _train_digits_fc

    from neurodeploy.defenses.hosnn import collect_nds, hosnn_from_lif

    lif, split = _train_digits_fc(epochs=2)
    nds = collect_nds(lif, split.train.x[:400], seed=0)
    model = hosnn_from_lif(lif, nds)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in model.neurons[:-1]:
            n.theta_v.copy_(0.1 + 0.2 * torch.rand(n.shape, generator=g))
    model.eval()
    return model, split, compile_model(model, "loihi2")


def test_threshold_traces_fixed_tracks_float(hosnn_digits, capsys) -> None:
    from neurodeploy.audit.thresholds import threshold_traces
    from neurodeploy.encoding import BernoulliEncoder

    model, split, plan = hosnn_digits
    spikes = BernoulliEncoder(10)(split.test.x[:200], torch.Generator().manual_seed(0))
    traces = threshold_traces(model, plan, spikes)
    assert [t.layer for t in traces] == ["layer1"]
    t = traces[0]
    with capsys.disabled():
        print(f"\n[TA-LIF digits 64-48-10, 200 test images] θ float mean per step "
              f"{[round(v, 4) for v in t.float_mean]}\n  fixed {[round(v, 4) for v in t.fixed_mean]}"
              f"\n  trace max abs err {t.trace_max_abs_err:.2e} (rel {t.trace_max_rel_err:.2e}), "
              f"per-neuron max abs err {t.max_abs_err:.3g}, mean {t.mean_abs_err:.2e}, "
              f"spike agreement {t.spike_agreement:.4f}")
    assert len(t.float_mean) == len(t.fixed_mean) == 10
    assert max(abs(v - t.theta_base) for v in t.float_mean) > 0.01  # θ really adapts
    assert t.trace_max_rel_err < 0.02
    assert t.spike_agreement > 0.95


def test_twin_equals_emulator_on_hosnn_digits(hosnn_digits) -> None:
    from neurodeploy.encoding import BernoulliEncoder

    model, split, plan = hosnn_digits
    spikes = BernoulliEncoder(10)(split.test.x[:100], torch.Generator().manual_seed(1))
    emu = Emulator(plan).run(spikes.to(torch.uint8), record=True)
    tw = HardwareTwin(plan, encoding="spikes").run(spikes)
    for k in range(len(plan.layers)):
        assert torch.equal(tw.spikes[k], emu.layer_spikes[k].double())
    assert torch.equal(tw.theta[0].to(torch.int64), emu.layer_theta[0])


@pytest.mark.lava
@needs_lava
def test_lava_equals_emulator_on_hosnn_digits(hosnn_digits, capsys) -> None:
    from neurodeploy.encoding import BernoulliEncoder

    model, split, plan = hosnn_digits
    x, y = split.test.x[:40], split.test.y[:40]
    spikes = BernoulliEncoder(10)(x, torch.Generator().manual_seed(0)).to(torch.uint8).numpy()
    n = assert_lava_equals_emulator(plan, spikes)
    acc = float((Emulator(plan).run(spikes).counts.argmax(1) == y).float().mean())
    with torch.no_grad():
        acc_f = float((model(torch.as_tensor(spikes).float()).argmax(1) == y).float().mean())
    with capsys.disabled():
        print(f"\n[TA-LIF digits, 40 test images] Lava == emulator on all layers ({n} spike "
              f"slots); deployed accuracy {acc:.3f}, float model {acc_f:.3f} (converted, "
              f"not fine-tuned)")
    assert abs(acc - acc_f) <= 0.1

