"""Per-layer drift and its dominant cause (exporters/nir_fidelity.py): the agreement is the
emulator's, each ablation uses the plan's own integers, and together they explain the chip."""

from __future__ import annotations

import dataclasses
import json

import nir
import numpy as np
import pytest
import torch

from neurodeploy.cli import main
from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.nir_fidelity import (
    EFFECTS,
    LayerFidelity,
    _effective,
    _row_factor,
    ablate,
    agreement,
    fidelity_report,
    format_fidelity,
    random_inputs,
)
from neurodeploy.exporters.nir_interp import NIRModel
from neurodeploy.exporters.profiles import load_profile
from neurodeploy.sims.emulator import Emulator


def _mlp(path, seed=0, n_in=16):
    rng = np.random.default_rng(seed)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.5, (20, n_in)), bias=rng.normal(0, 0.05, 20)),
        "if1": nir.IF(r=np.ones(20), v_threshold=np.full(20, 1.0)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.7, (8, 20)), bias=np.zeros(8)),
        "if2": nir.IF(r=np.ones(8), v_threshold=np.full(8, 0.7)),
        "output": nir.Output(output_type={"output": np.array([8])}),
    }, edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"),
              ("if2", "output")])
    nir.write(str(path), g)
    return path


def binary_loihi2():
    """Loihi 2 without graded spikes: multi-spike counts go out as one binary spike."""
    return dataclasses.replace(load_profile("loihi2"), graded_spike_bits=0)


@pytest.fixture(scope="module")
def sinabs_dep(tmp_path_factory):
    path = _mlp(tmp_path_factory.mktemp("fid") / "mlp.nir")
    return compile_nir(path, binary_loihi2(), 24, producer="sinabs")


def test_agreement_is_the_emulators(sinabs_dep):
    dep = sinabs_dep
    x = random_inputs(dep.plan, 16, 0.3, seed=1)
    rows = fidelity_report(dep.dgraph, dep.plan, x)
    ref = NIRModel(dep.dgraph, dtype=torch.float64).run(x.double()).spikes
    emu = Emulator(dep.plan).run(x).layer_spikes
    assert [r.node for r in rows] == ["if1", "if2"]
    for r, a, b in zip(rows, ref, emu, strict=True):
        assert r.agreement == float(((a > 0) == (b.reshape(a.shape) > 0)).double().mean())
    assert set(rows[0].effects) == set(EFFECTS)
    # sinabs: graded multi-spikes are sent as one spike — an effect that really changes spikes
    assert rows[-1].effects["multi_spike"] is not None and rows[-1].effects["multi_spike"] < 1
    assert rows[0].effects["initial_v"] is None  # nothing to ablate: v(0) = 0 already
    # every effect together reproduces the emulator closely (the effects are the drift)
    assert all(r.explained >= 0.97 for r in rows)
    assert all(r.explained >= r.agreement for r in rows)
    text = format_fidelity(rows)
    assert "if2" in text and f"{rows[-1].agreement:.4f}" in text


def test_weight_ablation_uses_the_plans_integers(sinabs_dep):
    dep = sinabs_dep
    g = ablate(dep.dgraph, dep.plan, "weights")
    for name, L in zip(g.neurons(), dep.plan.layers, strict=True):
        syn = g.nodes[g.preds(name)[0]]
        k = _row_factor(g.nodes[name], float(L.scale), syn.weight.shape[0], False)
        assert np.array_equal(np.round(syn.weight * k[:, None]),
                              _effective(L, dep.plan.fixed_point))  # both groups, combined
        orig = dep.dgraph.nodes[dep.dgraph.preds(name)[0]].weight
        assert not np.array_equal(syn.weight, orig)


def test_dominant_is_the_lowest_effect():
    r = LayerFidelity("l", "n", 0.9, {"weights": 0.95, "decays": 1.0, "multi_spike": 0.91,
                                      "v_floor": None})
    assert r.dominant == "multi_spike"
    assert LayerFidelity("l", "n", 1.0, {"weights": 1.0, "v_floor": None}).dominant is None
    assert agreement(torch.tensor([0., 2., 1.]), torch.tensor([0., 1., 0.])) == pytest.approx(2 / 3)


def test_export_and_simulate_print_the_causes(tmp_path, capsys):
    path = _mlp(tmp_path / "mlp.nir", n_in=64)
    d = tmp_path / "dep"
    assert main(["export", "--nir", str(path), "--producer", "sinabs", "--steps", "12",
                 "--out", str(d)]) == 0
    out = capsys.readouterr().out
    assert "fidelity on 8 random Bernoulli(p = 0.2)" in out and "dominant cause" in out
    js = tmp_path / "r.json"
    assert main(["simulate", "--plan", str(d / "plan.npz"), "--model", str(path),
                 "--samples", "20", "--out", str(js), "-q"]) == 0
    out = capsys.readouterr().out
    assert "fidelity (emulator, first 20 samples)" in out
    fid = json.loads(js.read_text())["backend_meta"]["fidelity"]
    assert [f["node"] for f in fid] == ["if1", "if2"]
    assert all(0 <= f["agreement"] <= 1 and f["dominant"] in (*EFFECTS, None) for f in fid)
