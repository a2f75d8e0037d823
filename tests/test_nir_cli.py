"""``neurodeploy export --nir FILE`` and ``simulate --model FILE.nir`` end to end."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from neurodeploy.cli import main
from neurodeploy.cli.simulate import fit_layout
from neurodeploy.errors import DataError
from neurodeploy.exporters.plan import DeploymentPlan


def _foreign_file(path, seed=0, flat_input=False):
    """A graph as another framework writes it: no metadata, Euler τ/r at dt = 1e-4, float32."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    beta1, beta2 = f32(0.8), f32(0.9)
    lif = lambda n, beta, th: nir.LIF(  # noqa: E731
        tau=np.full(n, f32(1e-4) / (f32(1) - beta), f32), r=np.full(n, f32(1) / (f32(1) - beta),
                                                                      f32),
        v_leak=np.zeros(n, f32), v_threshold=np.full(n, th, f32), v_reset=np.zeros(n, f32))
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1),
        "fc1": nir.Affine(weight=rng.normal(0, 0.4, (24, 64)).astype(f32),
                          bias=rng.normal(0, 0.05, 24).astype(f32)),
        "lif1": lif(24, beta1, 0.6),
        "fc2": nir.Affine(weight=rng.normal(0, 0.6, (10, 24)).astype(f32),
                          bias=np.zeros(10, f32)),
        "lif2": lif(10, beta2, 0.5),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }, edges=[("input", "flat"), ("flat", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
              ("fc2", "lif2"), ("lif2", "output")])
    if flat_input:  # the Input as (64,): digits' (1, 8, 8) images have the same 64 values
        g = nir.NIRGraph(nodes={**{k: v for k, v in g.nodes.items() if k != "flat"},
                                "input": nir.Input(input_type={"input": np.array([64])})},
                         edges=[("input", "fc1")] + [e for e in g.edges if "flat" not in e])
    nir.write(str(path), g)
    return path


def test_export_nir_needs_a_producer_and_states_assumptions(tmp_path, capsys):
    f = _foreign_file(tmp_path / "net.nir")
    assert main(["export", "--nir", str(f), "--steps", "8", "--out", str(tmp_path / "a")]) == 2
    assert "--producer" in capsys.readouterr().err
    # snntorch's default reset (subtract) needs the programmable sublif neuron: not on loihi1
    rc = main(["export", "--nir", str(f), "--producer", "snntorch", "--steps", "8",
               "--profile", "loihi1", "--out", str(tmp_path / "b")])
    assert rc == 3 and "--reset zero" in capsys.readouterr().err
    rc = main(["export", "--nir", str(f), "--producer", "snntorch", "--steps", "8",
               "--out", str(tmp_path / "b2"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "reset subtract (next-step): the snntorch convention" in out
    assert [L.neuron for L in DeploymentPlan.load(tmp_path / "b2" / "plan.npz").layers] == \
        ["sublif_delayed", "sublif_delayed"]
    rc = main(["export", "--nir", str(f), "--producer", "snntorch", "--reset", "zero",
               "--steps", "8", "--out", str(tmp_path / "c"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "assumed: dt = 0.0001 s: the snntorch convention" in out
    assert "assumed: reset zero given explicitly" in out
    plan = DeploymentPlan.load(tmp_path / "c" / "plan.npz")
    meta = plan.source["nir_metadata"]
    assert meta["source_producer"] == "snntorch" and meta["reset"] == "zero"
    assert "dt = 0.0001 s" in meta["notes"] and plan.num_steps == 8
    assert [L.dv for L in plan.layers] == [round(4096 * 0.2), round(4096 * 0.1)]
    # the canonical graph written beside the plan reads back on its own
    g = nir.read(str(tmp_path / "c" / "model.nir"))
    assert str(g.metadata["source_producer"]) == "snntorch"


def test_export_nir_bad_input(tmp_path, capsys):
    assert main(["export", "--nir", str(tmp_path / "missing.nir"), "--producer", "norse",
                 "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    f = _foreign_file(tmp_path / "net.nir")
    assert main(["export", "--nir", str(f), "--model", "m.pt", "--out", str(tmp_path / "y")]) \
        == 2
    assert main(["export", "--nir", str(f), "--producer", "brian", "--out",
                 str(tmp_path / "z")]) == 2  # argparse's choice check: one error line
    assert "invalid choice: 'brian'" in capsys.readouterr().err


def test_simulate_takes_the_nir_file_as_float_model(tmp_path, capsys):
    f = _foreign_file(tmp_path / "net.nir")
    d = tmp_path / "dep"
    assert main(["export", "--nir", str(f), "--producer", "snntorch", "--reset", "zero",
                 "--steps", "8", "--out", str(d), "-q"]) == 0
    reports = {}
    for name, model in (("foreign", f), ("canonical", d / "model.nir")):
        js = tmp_path / f"{name}.json"
        assert main(["simulate", "--plan", str(d / "plan.npz"), "--model", str(model),
                     "--samples", "40", "--out", str(js), "-q"]) == 0
        reports[name] = json.loads(js.read_text())
    capsys.readouterr()
    a, b = reports["foreign"], reports["canonical"]
    # the plan's record gives the foreign file the semantics it was compiled with
    assert a["accuracy_float"] == b["accuracy_float"]
    assert [L["spike_agreement"] for L in a["layers"]] == \
        [L["spike_agreement"] for L in b["layers"]]
    assert all(L["spike_agreement"] > 0.9 for L in a["layers"])
    assert all(L["rate_float"] > 0 for L in a["layers"])


def test_simulate_reshapes_the_layout_as_audit_does(tmp_path, capsys):
    """A graph whose Input is (64,) runs on digits' (1, 8, 8) images (same values, C order)
    exactly as the same graph with a (1, 8, 8) Input and a Flatten; other sizes are refused."""
    reports = {}
    for flat in (False, True):
        f = _foreign_file(tmp_path / f"net{flat}.nir", flat_input=flat)
        d = tmp_path / f"dep{flat}"
        assert main(["export", "--nir", str(f), "--producer", "snntorch", "--reset", "zero",
                     "--steps", "8", "--out", str(d), "-q"]) == 0
        js = tmp_path / f"r{flat}.json"
        assert main(["simulate", "--plan", str(d / "plan.npz"), "--model", str(f), "--data",
                     "digits", "--samples", "30", "--out", str(js), "-q"]) == 0
        reports[flat] = json.loads(js.read_text())
    assert "reshaped to the plan's input (64,)" in capsys.readouterr().out
    a, b = reports[False], reports[True]
    assert a["accuracy_float"] == b["accuracy_float"]
    assert a["accuracy_backend"] == b["accuracy_backend"]
    assert [L["spike_agreement"] for L in a["layers"]] == \
        [L["spike_agreement"] for L in b["layers"]]
    plan = DeploymentPlan.load(tmp_path / "depTrue" / "plan.npz")
    assert tuple(plan.input_shape) == (64,)
    with pytest.raises(DataError, match="shape \\(1, 8, 9\\) \\(72 values\\).*\\(64,\\)"):
        fit_layout(torch.zeros(2, 3, 1, 8, 9), (64,), "x")
