"""``neurodeploy attack``: table, atomic JSON, resume, and clear errors for bad configs."""

from __future__ import annotations

import json

import pytest

from neurodeploy.attacks.toy import cached_digits_snn
from neurodeploy.cli import main
from neurodeploy.models import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), name="digits_bern",
                            encoding="bernoulli", readout="rate", epochs=3)
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    save_checkpoint(path, clf.model)
    return path


def test_attack_cli_table_and_json(ckpt, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["attack", "--model", str(ckpt), "--data", "digits", "--attacks", "fgsm,apgd-ce",
               "--eps", "0.05,0.1", "--samples", "24", "--set", "apgd-ce.n_iter=5", "--out", str(out),
               "--no-checks", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "apgd-ce" in text and "0.05" in text
    assert "threat model: known draw" in text
    # the headline names attacks and threat model, and says the checks did not run
    assert "robust accuracy at eps=0.1: ≤ " in text and "masking checks not run" in text
    rec = json.loads(out.read_text())["results"][0]
    assert rec["threat_model"] == "known draw" and rec["masking_checks"] is None
    assert [p["eps"] for p in rec["per_eps"]] == [0.05, 0.1]
    assert rec["attacks"][1]["config"]["n_iter"] == 5 and rec["n_examples"] == 24
    assert not rec["stochastic"] and rec["draws"] == 1
    assert not list(tmp_path.glob("*.state*"))
    # --resume with a finished run simply recomputes into the same numbers
    rc = main(["attack", "--model", str(ckpt), "--attacks", "fgsm,apgd-ce", "--eps", "0.05,0.1",
               "--samples", "24", "--set", "apgd-ce.n_iter=5", "--out", str(out), "--resume",
               "--no-checks", "-q"])
    assert rc == 0
    assert json.loads(out.read_text())["results"][0]["per_eps"] == rec["per_eps"]


def test_attack_cli_unknown_draw_and_checks(ckpt, tmp_path, capsys):
    out = tmp_path / "u.json"
    rc = main(["attack", "--model", str(ckpt), "--attacks", "fgsm", "--eps", "0.1",
               "--samples", "8", "--threat", "both", "--eot", "2", "--check-samples", "6",
               "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    recs = json.loads(out.read_text())["results"]
    assert [r["threat_model"] for r in recs] == ["known draw", "unknown draw"]
    assert recs[1]["stochastic"] and recs[1]["draws"] == 5
    assert recs[1]["per_eps"][0]["robust_accuracy"]["ci95"] is not None
    for r in recs:
        names = {c["name"] for c in r["masking_checks"]}
        assert "unbounded_attack_succeeds" in names
    heads = [ln for ln in text.splitlines() if ln.startswith("robust accuracy at eps=0.1")]
    assert len(heads) == 2 and "known draw" in heads[0] and "unknown draw" in heads[1]
    assert all(("masking checks passed" in h) or ("upper bound" in h) for h in heads)


@pytest.mark.parametrize("args,msg", [
    (["--attacks", "pgdx", "--eps", "0.1"], "unknown attack"),
    (["--attacks", "pgd", "--eps", "-0.1"], "outside"),
    (["--attacks", "pgd", "--eps", "0.1", "--threat", "unknown", "--draws", "2"], ">= 5 draws"),
    (["--attacks", "pgd", "--eps", "1.5"], "outside the input domain"),
    (["--attacks", "pgd", "--eps", "abc"], "not a number"),
    (["--attacks", "pgd", "--eps", "0.1", "--set", "pgd.n_iters=3"], "unknown parameter"),
    (["--attacks", "pgd", "--eps", "0.1", "--grad-mode", "magic"], "gradient mode"),
])
def test_attack_cli_bad_configs(ckpt, args, msg, capsys):
    rc = main(["attack", "--model", str(ckpt), "--samples", "4", "-q", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert msg in err and len(err.strip().splitlines()) == 1
