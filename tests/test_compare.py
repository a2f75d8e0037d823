"""``neurodeploy compare``: joins audit.json files into a table and a robust-accuracy vs
energy plot."""

from __future__ import annotations

import json

import pytest

from neurodeploy.cli import main
from neurodeploy.cli.compare import compare_rows


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _audit(acc_f: float, acc_d: float, energy: float | None, eps=(0.05, 0.1)) -> dict:
    rows = [{"backend": b, "attack": "clean", "eps": 0.0, "accuracy": 0.9, "n": 10,
             "threat_model": "known draw"} for b in ("float", "deployed")]
    for e in eps:
        rows += [{"backend": "float", "attack": "worst", "eps": e, "accuracy": acc_f, "n": 10,
                  "threat_model": "known draw"},
                 {"backend": "deployed", "attack": "worst", "eps": e, "accuracy": acc_d, "n": 10,
                  "threat_model": "known draw"}]
    d = {"format": "neurodeploy-audit", "meta": {}, "model": {"arch": "FC8-FC2"},
         "profile": {"name": "loihi2"}, "accuracy": rows,
         "certified": {"eps": 0.05, "verified_error": 0.4,
                       "deployed": {"verified_error": 0.45}}}
    if energy is not None:
        d["efficiency"] = {
            "clean": {"deployed": {"totals": {"synaptic_operations": 123.0,
                                              "activation_sparsity": 0.8},
                                   "chip_fit": {"cores_used": 2}}},
            "ratio_adversarial_over_clean": {"deployed": {"synaptic_operations": 1.3}},
            "cost_clean": {"energy_per_inference_nj": energy, "latency_per_inference_us": 2.0,
                           "source": "Davies et al. 2018", "approximate": True}}
    return d


def test_rows_pick_largest_common_eps_and_fields() -> None:
    eps, rows = compare_rows([("a", _audit(0.5, 0.4, 10.0)),
                              ("b", _audit(0.6, 0.6, 20.0, eps=(0.05,)))], None, "known draw")
    assert eps == 0.05
    assert rows[0]["robust_deployed"] == 0.4 and rows[1]["robust_float"] == 0.6
    assert rows[0]["energy_nj"] == 10.0 and rows[0]["synops_ratio_adversarial"] == 1.3
    assert rows[0]["verified_error_deployed"] == 0.45 and rows[0]["cores_used"] == 2


def test_compare_cli_writes_table_and_plot(tmp_path, capsys) -> None:
    for name, a in (("plain", _audit(0.2, 0.1, 50.0)), ("certified", _audit(0.6, 0.55, 80.0)),
                    ("old", _audit(0.3, 0.3, None))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "audit.json").write_text(json.dumps(a))
    out = tmp_path / "cmp"
    code, err = _cli(["compare", str(tmp_path / "plain"),
                      str(tmp_path / "certified" / "audit.json"), str(tmp_path / "old"),
                      "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert [row["label"] for row in data["rows"]] == ["plain", "certified", "old"]
    assert data["eps"] == 0.1 and data["rows"][2]["energy_nj"] is None
    assert (out / "compare.png").stat().st_size > 1000
    html = (out / "compare.html").read_text()
    assert 'id="compare-plot"' in html and "certified" in html
    assert "approximate" in (out / "compare.md").read_text()


def test_compare_refuses_what_is_not_an_audit(tmp_path, capsys) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{\"a\": 1}")
    code, err = _cli(["compare", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not an audit report" in err
    code, err = _cli(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("labels", ["one"])
def test_compare_labels_must_match(tmp_path, labels, capsys) -> None:
    for n in ("a", "b"):
        (tmp_path / f"{n}.json").write_text(json.dumps(_audit(0.5, 0.5, 1.0)))
    code, err = _cli(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                      "--labels", labels, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--labels" in err
