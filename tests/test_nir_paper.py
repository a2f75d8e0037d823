"""The NIR paper's own graphs (neuromorphs/NIR ``paper/``, see tests/data/nir_paper/README.md)
reproduce the paper's published traces: float interpreter and the integer plan.

* ``lif_norse.nir`` stores τ in seconds (norse's ``from_nir`` reads it so); read as norse with the
  paper's dt = 1e-4 s it spikes at steps 460/510/710/760 as norse's published trace, and the plan
  spikes there too; on Loihi silicon the paper's trace is one step later (the synaptic delay of
  the Dense, the plan's ``latency``).
* ``lif_rockpool.nir`` (dt recovered from r): 450/500/710/760 as rockpool's trace.
* ``two_lif_neurons.nir``: LIF1's period is τ·ln(v_leak/(v_leak − θ)) at every dt.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.nir_import import read_graph
from neurodeploy.exporters.nir_interp import NIRModel
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.sims.emulator import Emulator

DATA = Path(__file__).parent / "data" / "nir_paper"
PAPER_DT = 1e-4  # paper/01_lif/README.md: "We use a timestep of dt=0.0001"


def _trace(name: str) -> np.ndarray:
    return np.loadtxt(DATA / name, delimiter=",")


def _float_run(g, x: np.ndarray):
    tr = NIRModel(g, dtype=torch.float64).run(torch.tensor(x).reshape(-1, 1, 1))
    return tr.spikes[0].reshape(-1).numpy(), tr.membranes[0].reshape(-1).numpy()


def _emulated_spikes(path: Path, producer: str, x: np.ndarray, dt: float | None = None):
    dep = compile_nir(path, load_profile("loihi2"), len(x), producer=producer, dt=dt)
    tr = Emulator(dep.plan).run(torch.tensor(x).reshape(-1, 1, 1).to(torch.uint8))
    return np.nonzero(tr.spikes[0].reshape(-1).numpy())[0], dep


def test_lif_norse_tau_in_seconds_is_decided_from_the_file():
    g = read_graph(DATA / "lif_norse.nir", producer="norse", dt=PAPER_DT)
    assert g.semantics.tau_unit == "seconds"
    assert any(n.startswith("τ stored in seconds") and "lif_norse.nir" in n for n in g.notes)
    n = g.nodes[g.neurons()[0]]
    assert n.alpha.ravel()[0] == pytest.approx(0.96) and n.gain.ravel()[0] == pytest.approx(0.04)


def test_lif_norse_reproduces_the_published_trace():
    ref = _trace("lif_norse.csv")
    s, v = _float_run(read_graph(DATA / "lif_norse.nir", producer="norse", dt=PAPER_DT),
                      ref[:, 0])
    assert np.nonzero(s)[0].tolist() == [460, 510, 710, 760]
    assert np.array_equal(np.nonzero(s)[0], np.nonzero(ref[:, 2])[0])
    quiet = ref[:, 2] == 0  # norse records v after the reset on spike steps
    assert np.abs(v[quiet] - ref[quiet, 1]).max() < 1e-6  # the CSV holds float32


def test_lif_norse_plan_spikes_as_the_paper_and_loihi():
    ref, loihi = _trace("lif_norse.csv"), _trace("lif_lava_loihi_fixed.csv")
    spikes, dep = _emulated_spikes(DATA / "lif_norse.nir", "norse", ref[:, 0], PAPER_DT)
    assert spikes.tolist() == [460, 510, 710, 760]
    # Loihi silicon: the same spikes, delayed by the Dense's one step (the plan's latency)
    assert (spikes + dep.plan.latency).tolist() == np.nonzero(loihi[:, 2])[0].tolist()


def test_lif_norse_read_as_dt_tau_never_fires():
    """The override is obeyed: read as dt·τ (norse 1.1.0), τ = 25 s and the neuron is silent
    — the defect the per-file decision removes."""
    ref = _trace("lif_norse.csv")
    g = read_graph(DATA / "lif_norse.nir", producer="norse", dt=PAPER_DT, tau_units="dt*tau")
    assert g.semantics.tau_unit == "dt*tau"
    assert any("--tau-units" in n for n in g.notes)
    s, _ = _float_run(g, ref[:, 0])
    assert s.sum() == 0


def test_mixed_tau_units_are_refused():
    import nir

    g = nir.read(str(DATA / "lif_norse.nir"))
    node = g.nodes["1"]
    node.tau = np.array([1e-5, 0.0025], dtype=np.float32)
    for f in ("r", "v_leak", "v_threshold", "v_reset"):
        setattr(node, f, np.repeat(np.asarray(getattr(node, f)), 2))
    g.nodes["0"].weight = np.ones((2, 1), dtype=np.float32)
    g.nodes["0"].bias = np.zeros(2, dtype=np.float32)
    with pytest.raises(ConfigError, match="both sides of dt.*--tau-units"):
        read_graph(g, producer="norse", dt=1e-3)
    with pytest.raises(ConfigError, match="--tau-units 'minutes'"):
        read_graph(DATA / "lif_norse.nir", producer="norse", tau_units="minutes")


def test_lif_rockpool_reproduces_the_published_trace():
    ref = _trace("lif_rockpool.csv")
    g = read_graph(DATA / "lif_rockpool.nir", producer="rockpool")
    assert g.semantics.dt == pytest.approx(PAPER_DT, rel=1e-4)
    s, v = _float_run(g, ref[:, 0])
    assert np.nonzero(s)[0].tolist() == [450, 500, 710, 760]
    assert np.array_equal(np.nonzero(s)[0], np.nonzero(ref[:, 2])[0])
    quiet = ref[:, 2] == 0
    assert np.abs(v[quiet] - ref[quiet, 1]).max() < 1e-6
    spikes, _ = _emulated_spikes(DATA / "lif_rockpool.nir", "rockpool", ref[:, 0])
    assert spikes.tolist() == [450, 500, 710, 760]


@pytest.mark.parametrize("dt", [1e-3, 1e-4])
def test_two_lif_neurons_lif1_period_does_not_depend_on_dt(dt):
    g = read_graph(DATA / "two_lif_neurons.nir", producer="neurodeploy", dt=dt)
    T = int(round(0.1 / dt))
    tr = NIRModel(g, dtype=torch.float64).run(torch.zeros(T, 1, 1))
    t1 = np.nonzero(tr.spikes[0].reshape(-1).numpy())[0]
    # Euler: v_n = 1.2·(1 − (1 − dt/τ)^n) > 1 first at n = ⌈ln 6 / −ln(1 − dt/τ)⌉ (+ strict >)
    n = math.floor(math.log(6) / -math.log(1 - dt / 0.01)) + 1
    assert np.diff(t1).tolist() == [n] * (len(t1) - 1) and t1[0] == n - 1
    assert n * dt == pytest.approx(0.01 * math.log(6), abs=dt)  # τ·ln(v_leak/(v_leak − θ))
    # LIF2 gains r·dt/τ per LIF1 spike (the paper's dt-dependent PSP, reproduced)
    v2 = tr.membranes[1].reshape(-1).numpy()
    assert v2[t1[0]] == pytest.approx(dt / 0.01)


def test_paper_graphs_compile_and_the_chip_notes_say_why():
    """The braille RNN's coarse current bias and weights, and the CNN's graded spikes and
    synapse groups, are stated in the chip notes (benchmarks/RESULTS_fidelity.md)."""
    path = DATA / "braille_noDelay_bias_zero.nir"
    one = compile_nir(path, load_profile("loihi2"), 100, producer="snntorch", reset="zero",
                      weight_groups="one")
    assert [L.neuron for L in one.plan.layers] == ["lif_delayed_rec", "lif_delayed_cb"]
    notes = "\n".join(one.chip_notes)
    assert "node 'lif2' (layer2): the bias into the current steps by 2.8% of θ" in notes
    assert "node 'lif2' (layer2): one synapse group of 8-bit weight mantissas" in notes
    auto = compile_nir(path, load_profile("loihi2"), 100, producer="snntorch", reset="zero")
    notes = "\n".join(auto.chip_notes)
    # two groups on every matrix (W_rec too) and fine current biases: no coarse grid left;
    # what remains is said: the output neurons are bias-driven oscillators
    assert "synapse group of" not in notes and "bias into the current steps" not in notes
    assert ("node 'lif2' (layer2): 7 of 7 neurons fire on their biases alone (no input)"
            in notes) and "12-bit decays and the per-step truncation of u and v" in notes
    notes = "\n".join(one.chip_notes)
    assert "node 'lif1.lif' (layer1): one synapse group" in notes
    assert "the recurrent layer keeps one group for W and W_rec" in notes
    cnn = compile_nir(DATA / "cnn_sinabs.nir", load_profile("loihi2"), 20, producer="sinabs")
    assert [L.neuron_params.get("graded_bits") for L in cnn.plan.layers] == [8] * 5
    assert sum("graded spike payloads" in n for n in cnn.chip_notes) == 5
    assert all(L.weights_lo is not None and L.weight_exp > 0 for L in cnn.plan.layers)
