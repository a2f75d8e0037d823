"""``audit`` and ``pipeline`` with a NIR file as the model (issue 13, point 1): the float side is
the NIR interpreter, the deployed side the plan (given, or compiled from the file); what was
assumed is printed and written into the report; bad NIR input exits 2 with one clear line.

Files: one from our own exporter (``export`` → model.nir + plan.npz) and one written by
snntorch's own exporter (``snntorch.export_nir``) for the same trained weights (per-neuron β
and θ tensors: snntorch's exporter breaks on scalars — see tests/test_nir_producers.py).
"""

from __future__ import annotations

import json

import nir
import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.cli import main
from neurodeploy.errors import ConfigError
from neurodeploy.models import save_checkpoint

AUDIT = ["--samples", "16", "--eps", "0.1", "--attacks", "fgsm,pgd", "--attack-steps", "3",
         "--threat-models", "known", "--lava-samples", "0", "--no-certify",
         "--no-masking-checks", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained digits SNN (FC32-FC10, α = θ = 0.25, zero reset, T = 6), its checkpoint,
    our export of it (model.nir + plan.npz) and snntorch's NIR file of the same weights."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=4,
                             readout="rate").model.eval()
    d = tmp_path_factory.mktemp("nir_audit")
    ck = d / "m.pt"
    save_checkpoint(ck, model, {"data": {"source": "digits"}})
    assert main(["export", "--model", str(ck), "--out", str(d / "exp"), "-q"]) == 0
    layers: list[torch.nn.Module] = []
    for k, syn in enumerate(model.synapses):
        lin = torch.nn.Linear(syn.in_features, syn.out_features)
        with torch.no_grad():
            lin.weight.copy_(syn.weight)
            lin.bias.copy_(syn.bias)
        n = syn.out_features
        layers += [lin, snn.Leaky(beta=torch.full((n,), 0.25), threshold=torch.full((n,), 0.25),
                                  reset_mechanism="zero", init_hidden=True,
                                  output=k == len(model.synapses) - 1)]
    net = torch.nn.Sequential(*layers)
    st = d / "snntorch.nir"
    nir.write(str(st), export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
    return {"dir": d, "ckpt": ck, "exp": d / "exp", "snntorch": st}


def _report(out):
    return json.loads((out / "audit.json").read_text())


def _clean(rep):
    return {r["backend"]: r["accuracy"] for r in rep["accuracy"] if r["attack"] == "clean"}


def test_audit_own_nir_with_its_plan_equals_the_checkpoint_audit(trained, tmp_path, capsys):
    d = trained["exp"]
    assert main(["audit", "--model", str(trained["ckpt"]), *AUDIT,
                 "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["audit", "--model", str(d / "model.nir"), "--plan", str(d / "plan.npz"),
                 *AUDIT, "--out", str(tmp_path / "nir")]) == 0
    out = capsys.readouterr().out
    assert "assumed: producer 'neurodeploy' from the graph metadata" in out
    assert "input:   the graph's Input receives the host's Bernoulli" in out
    a, b = _report(tmp_path / "ckpt"), _report(tmp_path / "nir")
    # the interpreter of our NIR file is the checkpoint's float model, spike for spike
    assert _clean(a) == _clean(b)
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        for k in ("agreement_emulator", "rate_float", "rate_emulator"):
            assert la[k] == lb[k], k
    assert 0.5 < _clean(b)["float"] <= 1.0
    meta = b["model"]["nir"]
    assert meta["producer"] == "neurodeploy" and meta["reset"] == "zero"
    assert meta["num_steps"] == 6 and "as compiled" in meta["plan"]
    assert "Bernoulli" in meta["input"] and "known draw" in meta["threat_models"]
    assert b["model"]["neuron"] == "nir"
    md = (tmp_path / "nir" / "audit.md").read_text()
    assert "float (NIR interpreter)" in md and "NIR model" in md


def test_audit_snntorch_file_compiled_on_the_fly(trained, tmp_path, capsys):
    rc = main(["audit", "--model", str(trained["snntorch"]), "--producer", "snntorch",
               "--reset", "zero", "--steps", "6", *AUDIT, "--out", str(tmp_path / "st")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "assumed: reset zero given explicitly" in out
    assert "reshaped to the graph's Input (64,)" in out  # digits (1, 8, 8) → snntorch's (64,)
    rep = _report(tmp_path / "st")
    meta = rep["model"]["nir"]
    assert meta["producer"] == "snntorch" and meta["reset"] == "zero" and meta["num_steps"] == 6
    assert "compile_nir" in meta["plan"] and meta["data_reshape"]
    # the same weights and neuron as the checkpoint: the same float predictions
    assert main(["audit", "--model", str(trained["ckpt"]), *AUDIT,
                 "--out", str(tmp_path / "ckpt")]) == 0
    assert _clean(rep)["float"] == _clean(_report(tmp_path / "ckpt"))["float"]
    worst = [r for r in rep["accuracy"] if r["attack"] == "worst"]
    assert {r["backend"] for r in worst} == {"float", "deployed"}
    assert all(r["accuracy"] < _clean(rep)[r["backend"]] for r in worst)  # attacks bite


def test_pipeline_with_a_nir_model(trained, tmp_path, capsys):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'seed = 0\n[model]\nnir = "{trained["snntorch"]}"\nproducer = "snntorch"\n'
        f'reset = "zero"\nnum_steps = 6\n[simulate]\nbackends = ["emulator"]\nsamples = 40\n'
        f'[audit]\neps = [0.1]\nattacks = ["fgsm"]\nthreat_models = ["known"]\nsamples = 12\n'
        f'lava_samples = 0\nmasking_checks = false\ncertify = false\n')
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(cfg), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "[train] skipped" in printed and "assumed: reset zero given explicitly" in printed
    state = json.loads((out / "pipeline_state.json").read_text())["completed"]
    assert list(state) == ["train", "evaluate", "export", "simulate", "audit"]
    assert "skipped" in state["train"]["artifacts"]
    assert state["export"]["artifacts"]["source_nir"] == str(trained["snntorch"])
    sim = json.loads((out / "simulate" / "emulator.json").read_text())
    assert sim["accuracy_float"] > 0.5
    rep = _report(out / "audit")
    assert rep["model"]["nir"]["producer"] == "snntorch"
    assert not (out / "train").exists()


def test_pipeline_nir_config_validated_before_any_stage(trained, tmp_path):
    from neurodeploy.pipeline import validate_config

    st = str(trained["snntorch"])
    events = tmp_path / "events"
    (events / "Test" / "0").mkdir(parents=True)  # an N-MNIST folder layout
    ok = validate_config({"model": {"nir": st, "producer": "snntorch"}})
    assert ok["model"] == {"nir": st, "producer": "snntorch"}  # no checkpoint defaults
    bad = [
        ({"model": {"nir": st, "producer": "snntorch", "arch": "FC10"}}, "remove arch"),
        ({"model": {"nir": st, "producer": "snntorch"}, "train": {"epochs": 1}},
         "remove [train]"),
        ({"model": {"nir": st}}, "producer"),  # snntorch's file states no producer
        ({"model": {"nir": st, "producer": "brian"}}, "brian"),
        ({"model": {"nir": str(tmp_path / "none.nir"), "producer": "snntorch"}},
         "no such file"),
        ({"model": {"nir": st, "producer": "snntorch", "reset": "soft"}}, "reset"),
        ({"model": {"arch": "FC10", "producer": "snntorch"}}, "NIR model"),
        ({"model": {"nir": st, "producer": "snntorch"}, "data": {"source": str(events)}},
         "event data"),
    ]
    for config, words in bad:
        with pytest.raises(ConfigError) as info:
            validate_config(config)
        assert words in str(info.value), (config, str(info.value))


def test_bad_nir_input_exits_2_with_one_line(trained, tmp_path, capsys):
    garbage = tmp_path / "bad.nir"
    garbage.write_bytes(b"not an hdf5 file at all")
    d = trained["exp"]
    cases = [
        (["--model", str(tmp_path / "missing.nir")], "does not exist"),
        (["--model", str(garbage)], "cannot be read"),
        (["--model", str(trained["snntorch"])], "--producer"),  # no metadata, no producer
        (["--model", str(trained["snntorch"]), "--producer", "snntorch", "--plan",
          str(d / "plan.npz")], "not the plan of this graph"),
        (["--model", str(trained["ckpt"]), "--producer", "snntorch"], "describe a NIR model"),
        (["--model", str(d / "model.nir"), "--plan", str(d / "plan.npz"), "--profile",
          "loihi1"], "leave --profile out"),
    ]
    for args, words in cases:
        rc = main(["audit", *args, *AUDIT, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (args, err)
        assert words in err, (args, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "o" / "audit.json").exists()
