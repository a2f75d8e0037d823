"""Determinism: the same command with the same seed, run twice, gives byte-identical JSON apart
from timestamps and durations (and identical checkpoints, plans and NIR files), for every
command on digits. ``audit`` and ``pipeline`` are also compared run-against-run in
test_crash_safety (uninterrupted reference vs. killed-and-resumed); here they run as slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runs import COMMANDS, VOLATILE, outputs, prepare, run

FAST = ("train", "evaluate", "export", "simulate", "attack", "certify")


def _twice(tmp_path: Path, monkeypatch, command: str) -> tuple[dict, dict]:
    results = []
    for name in ("first", "second"):
        d = tmp_path / name
        d.mkdir()
        monkeypatch.chdir(d)
        prepare(d, command)
        assert run(COMMANDS[command][0]) == 0
        results.append(outputs(d))
    return results[0], results[1]


def _json_bytes_without_volatile(path: Path) -> bytes:
    """The JSON text re-serialized in its own key order with timestamps and durations (keys
    matching VOLATILE, whole sub-trees) replaced by a placeholder: equal bytes ⇔ the files
    differ in nothing else, key order and number formatting included."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: "<volatile>" if VOLATILE.search(str(k)) else strip(v)
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return json.dumps(strip(json.loads(path.read_text())), indent=1).encode()


def _compare(tmp_path: Path, command: str, a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert any(k.endswith(".json") for k in a), a.keys()
    for key in a:
        assert a[key] == b[key], f"{command}: {key} differs between two identical runs"
        if key.endswith(".json"):
            one = _json_bytes_without_volatile(tmp_path / "first" / key)
            two = _json_bytes_without_volatile(tmp_path / "second" / key)
            assert one == two, f"{command}: {key} bytes differ beyond timestamps/durations"


@pytest.mark.parametrize("command", FAST)
def test_same_command_and_seed_give_identical_results(tmp_path, monkeypatch, command) -> None:
    a, b = _twice(tmp_path, monkeypatch, command)
    _compare(tmp_path, command, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["audit", "pipeline"])
def test_same_audit_and_pipeline_give_identical_results(tmp_path, monkeypatch, command) -> None:
    a, b = _twice(tmp_path, monkeypatch, command)
    _compare(tmp_path, command, a, b)


def test_plans_are_byte_identical(tmp_path, monkeypatch) -> None:
    planes = []
    for name in ("first", "second"):
        d = tmp_path / name
        d.mkdir()
        monkeypatch.chdir(d)
        prepare(d, "export")
        assert run(COMMANDS["export"][0]) == 0
        planes.append((d / "ex" / "plan.npz").read_bytes())
    assert planes[0] == planes[1]
