"""``neurodeploy verify``: the command end to end on a small plan (JSON fields, the sandwich
certified ≤ exact ≤ attack per example, refusals with exit 2)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from neurodeploy.cli import main
from neurodeploy.sims.emulator import random_fc_plan


@pytest.fixture()
def plan_path(tmp_path):
    from neurodeploy.data.core import load_dataset

    rng = np.random.default_rng(7)
    plan = random_fc_plan(rng, (64, 12, 10), num_steps=4, weight_scale=60.0, vth=60, bias_max=0,
                          bias_exp=7)
    # output class = the first examples' label gets a bias that makes it fire at most steps:
    # some examples are robust, others not (a random plan alone is right ~10 % of the time)
    y0 = int(load_dataset("digits").test.y[0])
    out = plan.layers[1]
    bias = np.zeros(10, np.int32)
    bias[y0] = 4000 if out.vth * 64 < 4000 * 128 else 0
    plan = dataclasses.replace(plan, layers=(plan.layers[0], dataclasses.replace(
        out, bias_mant=bias)))
    path = tmp_path / "plan.npz"
    plan.save(path)
    return plan, path


def test_verify_command_sandwich(plan_path, tmp_path, capsys) -> None:
    _check_run(plan_path, tmp_path, capsys, attack=[])


@pytest.mark.long
def test_verify_robust_survives_auto(plan_path, tmp_path, capsys) -> None:
    """Every example proven robust survives the deployed auto cascade (same maps)."""
    _check_run(plan_path, tmp_path, capsys, attack=["--attack", "auto"])


def _check_run(plan_path, tmp_path, capsys, attack: list[str]) -> None:
    _, path = plan_path
    out = tmp_path / "v.json"
    rc = main(["verify", "--plan", str(path), "--data", "digits", "--eps", "0.05",
               "--samples", "6", "--timeout", "20", "--sandwich", *attack,
               "--draws", "1", "--branch-seconds", "2", "--out", str(out), "-q"])
    assert rc == 0
    rec = json.loads(out.read_text())
    statuses = [e["status"] for e in rec["examples"]]
    assert len(statuses) == 6 and set(statuses) <= {"robust", "non_robust", "unknown"}
    c = rec["summary"]["counts"]
    assert c["robust"] + c["non_robust"] + c["unknown"] == 6
    w = rec["sandwich"]
    assert w["consistent"], w["violations"]
    assert w["certified"] <= w["exact"][0] <= w["exact"][1] <= w.get("attack", 1.0)
    assert {"robust", "non_robust"} <= set(statuses)
    for e in rec["examples"]:
        if e["status"] == "non_robust":
            assert len(e["counterexample"]) == 64 and e["predicted"] != e["label"]
    assert rec["unknown_draw"]["pairs"] == 6
    assert rec["branch_seconds"] == 2.0
    opts = rec["options"]      # every option the run used, as given
    assert opts["plan"] == str(path) and opts["eps"] == 0.05 and opts["samples"] == 6
    assert opts["branch_seconds"] == 2.0 and opts["path"] is False and opts["out"] == str(out)
    assert "exact robust accuracy" in capsys.readouterr().out


def test_verify_refuses_bad_input(plan_path, tmp_path, capsys) -> None:
    plan, path = plan_path
    assert main(["verify", "--plan", str(path), "--eps", "1.5", "--samples", "2"]) == 2
    assert capsys.readouterr().err.strip().startswith("error:")
    assert main(["verify", "--plan", str(path), "--eps", "0.1", "--branch-seconds", "-1"]) == 2
    assert "--branch-seconds" in capsys.readouterr().err
    bad = dataclasses.replace(plan, layers=(dataclasses.replace(plan.layers[0],
                                                                neuron="sublif_delayed"),
                                            plan.layers[1]))
    bad_path = tmp_path / "bad.npz"
    bad.save(bad_path)
    out = tmp_path / "none.json"
    assert main(["verify", "--plan", str(bad_path), "--eps", "0.1", "--samples", "2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sublif_delayed" in err and not out.exists()


def test_exact_line_flags_violations(tmp_path) -> None:
    from neurodeploy.verify.sandwich import exact_line

    p = tmp_path / "v.json"
    p.write_text(json.dumps({"eps": 0.1, "n": 50, "model": "run/model.pt",
                             "summary": {"robust_accuracy_interval": [0.4, 0.5]}}))
    assert exact_line(str(p), "attack", 0.6, 0.1, "x/model.pt", 50).endswith("consistent")
    assert "VIOLATED" in exact_line(str(p), "attack", 0.3, 0.1, "x/model.pt", 50)
    assert "VIOLATED" in exact_line(str(p), "certify", 0.55, 0.1, "x/model.pt", 50)
    assert "not comparable: eps" in exact_line(str(p), "attack", 0.3, 0.2, "x/model.pt", 50)


def test_summary_lists_the_undecided_examples_sandwich() -> None:
    from neurodeploy.cli.verify import format_summary, summarize

    def ex(i, status, **kw):
        return {"index": i, "status": status, "how": "timeout" if status == "unknown" else "x",
                "seconds": 1.0, "solver_seconds": 0.5, "model": {}, **kw}

    examples = [ex(0, "robust"), ex(1, "non_robust", bound_score=2.0)]
    examples += [ex(10 + k, "unknown", search_score=-1.5 - k, bound_score=3.0 + k)
                 for k in range(9)]
    examples.append(ex(30, "unknown"))                   # neither side ran (the float model)
    s = summarize(examples, 0.1)
    assert [u["index"] for u in s["unknown_scores"]] == [*range(10, 19), 30]
    assert s["unknown_scores"][0] == {"index": 10, "search_score": -1.5, "bound_score": 3.0}
    assert s["unknown_scores"][-1] == {"index": 30, "search_score": None, "bound_score": None}
    text = format_summary({"summary": s, "plan": "p", "eps": 0.1, "n": len(examples)})
    line = text.splitlines()[-1]
    assert line.startswith("unknown: best score found <= max score <= step bound")
    assert "#10 [-1.5, 3]" in line and "#17 [-8.5, 10]" in line and "#18" not in line
    assert line.endswith("(+2 more in the JSON)")
