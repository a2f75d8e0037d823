"""One exit code per cause (README "Command line"), one-line errors, ``--out`` checked for every
command, the argument checks the bad-input issue listed, and the help cosmetics."""

from __future__ import annotations

import argparse
import sys

import pytest
from cli_runs import COMMANDS, MODEL, SMALL_AUDIT, prepare, run

from neurodeploy.cli import build_parser, main
from neurodeploy.errors import (
    EXIT_CODES,
    ConfigError,
    EnvironmentMissingError,
    HardwareFitError,
    LavaRuntimeError,
    Terminated,
)


@pytest.mark.parametrize("exc, code", [
    (ConfigError("bad\nvalue"), 2), (HardwareFitError("layer 1 too big"), 3),
    (EnvironmentMissingError("no lava"), 4), (LavaRuntimeError("runner died"), 5),
    (KeyboardInterrupt(), 130), (Terminated(), 143), (RuntimeError("bug"), 1),
    (PermissionError(13, "Permission denied", "/forbidden/x"), 2),
])
def test_each_cause_has_its_exit_code(monkeypatch, capsys, exc, code) -> None:
    from neurodeploy.cli import evaluate

    def boom(args: argparse.Namespace) -> int:
        from tqdm.auto import tqdm

        bar = tqdm(total=10, desc="work", file=sys.stderr, disable=False)
        bar.update(3)  # an open progress bar: the error must start on its own line
        raise exc

    monkeypatch.setattr(evaluate, "run", boom)
    assert main(["evaluate", "--model", "x.pt"]) == code
    assert code in EXIT_CODES
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").rstrip("\n").split("\n")[-1]
    assert "Traceback" not in err
    if code in (130, 143):
        assert last.startswith(("interrupted", "terminated")), err
    else:
        assert last.startswith("error: "), err
        assert sum(ln.startswith("error:") for ln in err.replace("\r", "\n").split("\n")) == 1


def test_global_quiet_flag_is_accepted(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "train", "--train-limit", "20", "--test-limit", "10", "--epochs", "1",
                 "--arch", "FC8-FC10", "--steps", "2", "--out", "t"]) == 0
    assert "epoch 1/1" not in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_naming_an_existing_file_or_folder_of_the_wrong_kind(tmp_path, monkeypatch, capsys,
                                                                 command) -> None:
    from neurodeploy.cli import OUT_KIND

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "afolder").mkdir()
    argv = list(COMMANDS[command][0])
    i = argv.index("--out")
    argv[i + 1] = "afile" if OUT_KIND[command] == "dir" else "afolder"
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --out"), err
    assert (tmp_path / "afile").read_text() == "keep me"
    argv[i + 1] = "afile/below"
    assert run(argv) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "afolder"]


@pytest.mark.parametrize("argv, words", [
    (["certify", "--model", "m.pt", "--eps", "1.5"], "outside [0, 1]"),
    (["certify", "--model", "m.pt", "--eps", "nan"], "not a finite number"),
    (["evaluate", "--model", "m.pt", "--limit", "-3"], "must be an integer >= 1, got -3"),
    (["attack", "--model", "m.pt", "--eps", "0.1,,0.2"], "item 2 is empty"),
    (["attack", "--model", "m.pt", "--eps", "0.1,x"], "'x' is not a number"),
    (["train", "--epochs", "0"], "must be an integer >= 1"),
    (["train", "--alpha", "2"], "outside [0, 1]"),
    (["simulate", "--plan", "p.npz", "--batch-size", "0"], "must be an integer >= 1"),
])
def test_argument_checks(tmp_path, monkeypatch, capsys, argv, words) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        sys.exit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_files_that_are_not_checkpoints_are_named(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path, "export")
    assert run(COMMANDS["export"][0]) == 0
    (tmp_path / "notes.txt").write_text("hello\n")
    cases = [("ex/model.nir", "HDF5 file (a NIR graph?)"), ("ex/plan.npz", "numpy .npz"),
             ("notes.txt", "is not a PyTorch checkpoint")]
    capsys.readouterr()
    for path, words in cases:
        assert run(["evaluate", "--model", path]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "101" not in err, err


def test_help_shows_each_default_once_and_no_rest_markup() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "(default 0) (default: 0)" not in text, name
        assert "``" not in text and ":func:" not in text and ":class:" not in text, name
        for line in text.splitlines():
            assert line.count("default") <= 1 or "default:" not in line, (name, line)


@pytest.mark.parametrize("toml, words", [
    ('[audit]\nattacks = ["pgdd"]\n', ["[audit]", "'pgdd'"]),
    ('[simulate]\nbackends = ["emulater"]\n', ["[simulate]", "did you mean 'emulator'"]),
    ('[trian]\nepochs = 1\n', ["unknown section [trian]", "did you mean 'train'"]),
    ('[train]\nepochs = "ten"\n', ["[train] epochs = 'ten': expected an integer"]),
    ('[audit]\neps = [1.5]\n', ["[audit]", "eps"]),
    ('[export]\nprofile = "loihi9"\n', ["[export] profile", "loihi9"]),
    ('[defense]\nname = "hosn"\n', ["[defense] name", "unknown defense 'hosn'"]),
])
def test_pipeline_config_is_checked_whole_before_any_stage(tmp_path, monkeypatch, capsys, toml,
                                                           words) -> None:
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(toml)
    t0 = time.perf_counter()
    assert run(["pipeline", "--config", "c.toml", "--out", "runs/p"]) == 2
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing written
    print(f"refused in {seconds:.3f} s")  # reported, not asserted (timings on a shared machine)


def test_missing_lava_is_said_wherever_lava_was_asked_for(tmp_path, monkeypatch, capsys) -> None:
    import json

    from neurodeploy.sims import lava_env

    monkeypatch.chdir(tmp_path)
    prepare(tmp_path, "simulate")
    monkeypatch.setenv(lava_env.ENV_VAR, str(tmp_path / "no-such-python"))
    lava_env._find.cache_clear()
    try:
        capsys.readouterr()
        # simulate on Lava: exit 4, one line saying how to make the environment
        assert run(["simulate", "--plan", "ex/plan.npz", "--backend", "lava"]) == 4
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "scripts/setup.sh" in err, err
        # the pipeline: a warning on the terminal before the first stage, a note in its state
        (tmp_path / "lava.toml").write_text((tmp_path / "small.toml").read_text().replace(
            'backends = ["emulator"]', 'backends = ["emulator", "lava"]'))
        assert run(["pipeline", "--config", "lava.toml", "--out", "pl", "--stages",
                    "train,export,simulate"]) == 0
        err = capsys.readouterr().err
        assert "warning: the pipeline runs without Lava" in err, err
        state = json.loads((tmp_path / "pl" / "pipeline_state.json").read_text())
        assert state["lava"].startswith("skipped: ")
        assert state["completed"]["simulate"]["artifacts"]["lava"].startswith("skipped")
        # the audit command
        assert run(["audit", "--model", MODEL, *SMALL_AUDIT[:-4], "--lava-samples", "2",
                    "--samples", "4", "--out", "au"]) == 0
        assert "warning: the audit runs without Lava" in capsys.readouterr().err
        # ... and its report says why, in the data and in both renderings
        reason = json.loads((tmp_path / "au" / "audit.json").read_text())["replay"]
        assert reason["lava_samples"] == 0 and "no-such-python" in reason["lava_skipped"]
        assert "scripts/setup.sh" in reason["lava_skipped"]
        sentence = f"Lava replay skipped: {reason['lava_skipped']}"
        assert sentence in (tmp_path / "au" / "audit.md").read_text()
        import html
        import re

        page = (tmp_path / "au" / "audit.html").read_text()
        text = re.sub(r"<[^>]+>", "", page).replace("\u00a0", " ")  # nowrap spans, no-break spaces
        assert html.escape(sentence) in text
    finally:
        lava_env._find.cache_clear()
