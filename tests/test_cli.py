"""CLI smoke tests: --help everywhere, train → evaluate → pipeline, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurodeploy.cli import build_parser, main
from neurodeploy.pipeline import DEFAULT_CONFIG, STAGES, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--arch",
    "FC32-FC10",
    "--epochs",
    "1",
    "--train-limit",
    "200",
    "--test-limit",
    "50",
    "--steps",
    "4",
    "-q",
]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_help_everywhere(capsys):
    names = _subcommands()
    assert {"train", "evaluate", "pipeline"} <= set(names)
    for name in [*names, None]:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"] if name else ["--help"])
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    torch.set_num_threads(1)
    assert main(["train", *FAST, "--out", str(out), "--defense-opt", "ignored=1"]) == 0
    return out


def test_train_writes_outputs(trained, capsys):
    assert {"model.pt", "best.pt", "last.pt", "metrics.json"} <= {p.name for p in trained.iterdir()}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and metrics["train_config"]["lr"] == 1e-3


def test_evaluate_prints_and_writes(trained, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained / "model.pt"),
                "--limit",
                "40",
                "--seeds",
                "2",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("accuracy ") and "40 samples" in printed
    res = json.loads(out.read_text())
    assert res["total"] == 40 and res["seeds"] == [0, 1] and len(res["per_seed_accuracy"]) == 2
    assert f"{100 * res['accuracy']:.2f} %" in printed


def test_resume_of_finished_run_is_a_no_op(trained, capsys):
    before = (trained / "model.pt").read_bytes()
    assert (
        main(["train", *FAST, "--out", str(trained), "--defense-opt", "ignored=1", "--resume"]) == 0
    )
    assert (trained / "model.pt").read_bytes() == before


def _write_nan_checkpoint(src: Path, dst: Path) -> None:
    rec = torch.load(src, weights_only=True)
    rec["state_dict"]["synapses.0.weight"][0, 0] = float("nan")
    torch.save(rec, dst)


def _bad_idx_folder(folder: Path) -> Path:
    import gzip
    import struct

    folder.mkdir()
    n = 8001
    img = bytes([0, 0, 8, 3]) + struct.pack(">III", n, 28, 28) + bytes(n * 784)
    lab = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(n)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(img))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
    return folder


def test_bad_inputs_give_one_line_errors(trained, tmp_path, capsys):
    nan_ckpt = tmp_path / "nan.pt"
    _write_nan_checkpoint(trained / "model.pt", nan_ckpt)
    mnist_like = _bad_idx_folder(tmp_path / "mnist28")
    cases = [
        (["evaluate", "--model", str(tmp_path / "missing.pt")], "missing.pt"),
        (["evaluate", "--model", str(nan_ckpt)], "NaN"),
        (
            ["evaluate", "--model", str(trained / "model.pt"), "--data", str(mnist_like)],
            "shape mismatch",
        ),
        (["train", "--arch", "FC10-QQ", "--out", str(tmp_path / "x"), "-q"], "'QQ'"),
        (
            ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y"), "-q"],
            "nowhere",
        ),
        (["train", *FAST, "--defense", "nosuch", "--out", str(tmp_path / "z")], "nosuch"),
        (["train", *FAST, "--defense-opt", "novalue", "--out", str(tmp_path / "w")], "key=value"),
    ]
    for argv, fragment in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and fragment in err, (argv, err)
        assert "\n" not in err and "Traceback" not in err
    # --debug adds the traceback and keeps the cause's exit code
    assert main(["--debug", "evaluate", "--model", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err
    assert err.strip().splitlines()[-1].startswith("error: checkpoint ")


def test_entry_point_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "neurodeploy", "evaluate", "--model", str(tmp_path / "none.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "none.pt" in proc.stderr


# ----------------------------------------------------------------------------- pipeline


def test_default_config_file_matches_embedded_default():
    from_file = load_config(REPO / "configs" / "digits.toml")
    from_file.pop("_config_dir")
    assert from_file == validate_config(DEFAULT_CONFIG)
    assert list(STAGES)[:2] == ["train", "evaluate"]


def test_unknown_config_keys_are_named(tmp_path):
    from neurodeploy.errors import ConfigError

    for text, fragment in [
        ("[train]\nepochz = 3\n", "'epochz'"),
        ('[model]\narch = "FC10"\nsurogate = "rect"\n', "'surogate'"),
        ("bogus = 1\n", "'bogus'"),
        ("[data\n", "invalid TOML"),
    ]:
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=fragment):
            load_config(p)
    for text, fragment in [  # no free sections: a typo is named with its close match
        ("[trian]\nepochs = 1\n", r"unknown section \[trian\] \(did you mean 'train'\?\)"),
        ("[attack]\nwhatever = [1, 2]\n", r"unknown section \[attack\]"),
    ]:
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=fragment):
            load_config(p)


def test_pipeline_runs_records_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        '[data]\nsource = "digits"\ntrain_limit = 200\ntest_limit = 50\n'
        '[model]\narch = "FC32-FC10"\nnum_steps = 4\n'
        "[train]\nepochs = 1\n[evaluate]\nseeds = [0]\n"
    )
    out = tmp_path / "run"
    args = ["pipeline", "--config", str(cfg), "--out", str(out), "-q", "--stages", "train,evaluate"]
    assert main(args) == 0
    state = json.loads((out / "pipeline_state.json").read_text())
    assert list(state["completed"]) == ["train", "evaluate"]
    ev = json.loads((out / "evaluate.json").read_text())
    assert (
        ev["total"] == 50
        and state["completed"]["evaluate"]["artifacts"]["clean_accuracy"] == ev["accuracy"]
    )
    assert (out / "train" / "model.pt").is_file() and (out / "config.json").is_file()
    stamp = (out / "evaluate.json").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert (out / "evaluate.json").stat().st_mtime_ns == stamp  # skipped
    capsys.readouterr()
    # resuming with another config is refused; an unknown stage is named
    assert (
        main(["pipeline", "--config", str(cfg), "--out", str(out), "--resume", "--seed", "3", "-q"])
        == 2
    )
    assert "different config" in capsys.readouterr().err
    assert (
        main(
            [
                "pipeline",
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "r2"),
                "--stages",
                "evaluate,nosuch",
                "-q",
            ]
        )
        == 2
    )
    assert "nosuch" in capsys.readouterr().err
    assert (
        main(
            [
                "pipeline",
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "r3"),
                "--stages",
                "evaluate",
                "-q",
            ]
        )
        == 2
    )
    assert "train" in capsys.readouterr().err


def test_register_stage_extends_the_pipeline(tmp_path):
    from neurodeploy.pipeline import register_stage, run_pipeline

    calls = []

    def export_stage(ctx):
        calls.append(sorted(ctx.artifacts))
        (ctx.out_dir / "plan.txt").write_text("x")
        return {"plan": "plan.txt"}

    register_stage("fake_export", export_stage, after=("train",))
    try:
        cfg = validate_config(
            {
                "data": {"train_limit": 64, "test_limit": 16},
                "model": {"arch": "FC16-FC10", "num_steps": 3},
                "train": {"epochs": 1},
            }
        )
        arts = run_pipeline(cfg, tmp_path, quiet=True, stages=["train", "fake_export"])
        assert calls == [["train"]] and arts["fake_export"] == {"plan": "plan.txt"}
        assert "evaluate" not in arts
    finally:
        STAGES.pop("fake_export")


def test_train_and_evaluate_on_nmnist_folder(tmp_path, capsys):
    import numpy as np

    from neurodeploy.data.nmnist import write_events

    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for c in (0, 1):
            for i in range(3):
                n = 40
                x0 = 5 if c == 0 else 25  # class 0 events on the left, class 1 on the right
                write_events(
                    tmp_path / "nm" / split / str(c) / f"{i}.bin",
                    rng.integers(x0, x0 + 4, n),
                    rng.integers(0, 34, n),
                    rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 10_000, n)),
                )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "nm"),
                "--arch",
                "FC16-FC10",
                "--steps",
                "4",
                "--epochs",
                "2",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    from neurodeploy.models import load_checkpoint

    model, rec = load_checkpoint(out / "model.pt")
    assert model.config.encoding == "spikes" and model.config.input_shape == (2, 34, 34)
    assert rec["extra"]["data_source"] == str(tmp_path / "nm")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model.pt"), "-q"]) == 0
    assert "on 6 samples" in capsys.readouterr().out
    code = main(
        [
            "train",
            "--data",
            str(tmp_path / "nm"),
            "--encoding",
            "bernoulli",
            "--out",
            str(tmp_path / "bad"),
            "-q",
        ]
    )
    assert code == 2 and "encoding must be 'spikes'" in capsys.readouterr().err
