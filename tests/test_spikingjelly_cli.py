"""``export``/``audit --torch-module FILE.py:FACTORY --producer spikingjelly`` (issue 23,
point 1): a SpikingJelly CNN trained on digits with SpikingJelly's own surrogate, exported and
audited end to end; bad modules exit 2 with one line naming the module, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("spikingjelly")

from neurodeploy.cli import main  # noqa: E402

NETS = Path(__file__).with_name("spikingjelly_nets.py")
T = 6
AUDIT = ["--samples", "24", "--eps", "0.1", "--attacks", "fgsm,pgd", "--attack-steps", "3",
         "--threat-models", "known", "--lava-samples", "0", "--no-certify",
         "--no-masking-checks", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits CNN trained for 2 epochs (T = 6, Bernoulli input) and its state dict."""
    import sys

    sys.path.insert(0, str(NETS.parent))
    try:
        from spikingjelly_nets import train_digits
    finally:
        sys.path.remove(str(NETS.parent))
    torch.set_num_threads(1)
    net = train_digits(steps=T, epochs=2)
    d = tmp_path_factory.mktemp("sj")
    torch.save(net.state_dict(), d / "w.pt")
    return {"net": net, "weights": d / "w.pt"}


def _args(weights, *extra):
    return ["--torch-module", f"{NETS}:digits_cnn", "--weights", str(weights),
            "--producer", "spikingjelly", "--input-shape", "1,8,8", "--steps", str(T), *extra]


def test_export_writes_the_plan_of_the_module(trained, tmp_path, capsys):
    from neurodeploy.exporters.nir_import import read_graph
    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.exporters.spikingjelly import compile_module

    out = tmp_path / "exp"
    assert main(["export", *_args(trained["weights"]), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "producer spikingjelly" in printed and "BatchNorm folded" in printed
    assert "chip:    node '2': spikes on v ≥ θ" in printed
    plan = DeploymentPlan.load(out / "plan.npz")
    want = compile_module(trained["net"], load_profile("loihi2"), T, (1, 8, 8)).plan
    assert len(plan.layers) == len(want.layers) == 2
    for a, b in zip(plan.layers, want.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and a.vth == b.vth
    g = read_graph(out / "model.nir")  # the canonical graph names its own convention
    assert g.semantics.producer == "neurodeploy"
    assert [g.nodes[n].spike_op for n in g.neurons()] == [">=", ">="]


def test_audit_end_to_end(trained, tmp_path, capsys):
    out = tmp_path / "audit"
    rc = main(["audit", *_args(trained["weights"]), *AUDIT, "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    rep = json.loads((out / "audit.json").read_text())
    clean = {r["backend"]: r["accuracy"] for r in rep["accuracy"] if r["attack"] == "clean"}
    assert clean["float"] > 0.7 and clean["deployed"] > 0.7, clean
    meta = rep["model"]["nir"]
    assert meta["producer"] == "spikingjelly" and meta["path"].endswith(":digits_cnn")
    assert any("checked: the converted graph reproduces" in n for n in meta["notes"])
    worst = {r["backend"]: r["accuracy"] for r in rep["accuracy"] if r["attack"] == "worst"}
    print(f"SpikingJelly digits CNN (T = {T}, 24 samples, ε = 0.1, fgsm+pgd, known draw): "
          f"clean {clean}, worst {worst}")
    assert worst["float"] < clean["float"] and worst["deployed"] < clean["deployed"]
    assert [la["agreement_emulator"] for la in rep["layers"]] and \
        min(la["agreement_emulator"] for la in rep["layers"]) > 0.9


@pytest.mark.parametrize("target, words", [
    ("with_maxpool", "module '2' (spikingjelly.activation_based.layer.stateless_wrapper."
                     "MaxPool2d) has no conversion"),
    ("not_a_module", "not_a_module() returned int, not a torch.nn.Module"),
    ("missing", "has no attribute 'missing'"),
])
def test_bad_modules_exit_2_naming_them(target, words, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["export", "--torch-module", f"{NETS}:{target}", "--producer", "spikingjelly",
               "--input-shape", "1,8,8", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.startswith("error:"), err
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    base = ["export", "--torch-module", f"{NETS}:digits_cnn", "--out", str(tmp_path / "o")]
    assert main(base + ["--input-shape", "1,8,8"]) == 2  # no --producer
    assert "needs --producer spikingjelly" in capsys.readouterr().err
    assert main(base + ["--producer", "spikingjelly"]) == 2  # no --input-shape
    assert "--input-shape" in capsys.readouterr().err
    assert main(base + ["--producer", "spikingjelly", "--input-shape", "1,8,8",
                        "--weights", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_format_netx_refuses_a_soft_reset_plan_naming_the_layer(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["export", "--torch-module", f"{NETS}:soft_reset_mlp", "--producer",
               "spikingjelly", "--input-shape", "1,8,8", "--steps", "4", "--format", "netx",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "plan layer 0 (layer1, dense): neuron 'sublif'" in err, err
    assert not out.exists()
