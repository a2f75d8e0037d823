"""``neurodeploy attack``: table, atomic JSON, resume, and clear errors for bad configs."""

from __future__ import annotations

import json

import pytest

from neurodeploy.attacks.toy import cached_digits_snn
from neurodeploy.cli import main
from neurodeploy.models import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), epochs=3)
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    save_checkpoint(path, clf.model)
    return path


def test_attack_cli_table_and_json(ckpt, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["attack", "--model", str(ckpt), "--data", "digits", "--attacks", "fgsm,apgd-ce",
               "--eps", "0.05,0.1", "--samples", "24", "--set", "apgd-ce.n_iter=5", "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "apgd-ce" in text and "0.05" in text
    rec = json.loads(out.read_text())
    assert [p["eps"] for p in rec["per_eps"]] == [0.05, 0.1]
    assert rec["attacks"][1]["config"]["n_iter"] == 5 and rec["n_examples"] == 24
    assert not out.with_name(out.name + ".state.pt").exists()
    # --resume with a finished run simply recomputes into the same numbers
    rc = main(["attack", "--model", str(ckpt), "--attacks", "fgsm,apgd-ce", "--eps", "0.05,0.1",
               "--samples", "24", "--set", "apgd-ce.n_iter=5", "--out", str(out), "--resume", "-q"])
    assert rc == 0
    assert json.loads(out.read_text())["per_eps"] == rec["per_eps"]


@pytest.mark.parametrize("args,msg", [
    (["--attacks", "pgdx", "--eps", "0.1"], "unknown attack"),
    (["--attacks", "pgd", "--eps", "-0.1"], "must be >= 0"),
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
