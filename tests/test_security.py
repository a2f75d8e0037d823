"""No file read by the project runs code (issue 24).

Every loader — checkpoints, training state, plans, attack state, audit state, shard state, NIR,
JSON — is handed a crafted payload whose unpickling would create a marker file (a pickle
whose ``__reduce__`` calls ``open(marker, "w")``). Each must be refused with exit 2 (or the
loader's error) and the marker must not exist. A state of another job is refused too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import run

from neurodeploy.errors import CheckpointError, DataError, NeurodeployError

TRAIN = ["train", "--data", "digits", "--train-limit", "40", "--test-limit", "20", "--arch",
         "FC8-FC10", "--steps", "2", "--epochs", "1", "--threads", "1", "--out", "tr"]
AUDIT = ["audit", "--model", "tr/model.pt", "--samples", "4", "--attacks", "pgd",
         "--attack-steps", "2", "--lava-samples", "0", "--no-certify", "--no-masking-checks",
         "--threat-models", "known", "--eot", "1", "--escalation-rounds", "0", "--out", "au"]


class Payload:
    """Unpickling this creates ``marker`` (the stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = run(argv)
    finally:
        os.chdir(old)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A trained model, its export and one finished small audit (with its resumable state)."""
    root = tmp_path_factory.mktemp("security")
    for argv in (TRAIN, ["export", "--model", "tr/model.pt", "--out", "ex"], AUDIT):
        rc, err = _run(argv, root)
        assert rc == 0, (argv, err)
    return root


def _refused(argv: list[str], cwd: Path, marker: Path) -> str:
    rc, err = _run(argv, cwd)
    assert not marker.exists(), "the payload ran"
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------ torch files


def test_checkpoint_payload_is_refused(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    rec = torch.load(work / "tr" / "model.pt", weights_only=True)
    rec["extra"] = Payload(marker)
    torch.save(rec, bad)
    line = _refused(["evaluate", "--model", str(bad), "--limit", "5"], work, marker)
    assert "refused" in line and "io.open" in line
    _refused(["export", "--model", str(bad), "--out", str(tmp_path / "e")], work, marker)
    assert not (tmp_path / "e").exists()


def test_legacy_pickle_checkpoint_is_refused(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    torch.save({"format": "x", "p": Payload(marker)}, bad, _use_new_zipfile_serialization=False)
    _refused(["evaluate", "--model", str(bad), "--limit", "5"], work, marker)


def test_training_state_payload_is_refused(work: Path, tmp_path: Path) -> None:
    import shutil

    marker = tmp_path / "pwned"
    shutil.copytree(work / "tr", tmp_path / "tr")
    state = torch.load(tmp_path / "tr" / "last.pt", weights_only=True)
    state["optimizer"] = Payload(marker)
    torch.save(state, tmp_path / "tr" / "last.pt")
    (tmp_path / "small.toml").write_text("")
    argv = [*TRAIN[:-2], "--epochs", "2", "--out", "tr", "--resume"]
    _refused(argv, tmp_path, marker)


def test_attack_state_payload_is_refused(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": "neurodeploy-robustness-state", "fingerprint": Payload(marker)},
               tmp_path / "att.json.state-known.pt")
    argv = ["attack", "--model", str(work / "tr" / "model.pt"), "--attacks", "pgd", "--eps",
            "0.05", "--samples", "4", "--set", "pgd.n_iter=2", "--threat", "known", "--out",
            "att.json", "--resume"]
    _refused(argv, tmp_path, marker)
    assert not (tmp_path / "att.json").exists()


def _audit_copy(work: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    import shutil

    shutil.copytree(work / "tr", tmp_path / "tr")
    shutil.copytree(work / "au", tmp_path / "au")
    states = sorted((tmp_path / "au" / "state").rglob("*.pt"))
    assert states, "the audit kept no resumable state"
    return tmp_path / "au", states


def test_audit_state_payload_is_refused(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    au, states = _audit_copy(work, tmp_path)
    report = (au / "audit.json").read_bytes()
    for p in states:  # the real fingerprint, so the payload sits where it would be resumed
        rec = torch.load(p, weights_only=True)
        rec["robust"] = Payload(marker)
        torch.save(rec, p)
    line = _refused(AUDIT, tmp_path, marker)
    assert "refused" in line
    assert (au / "audit.json").read_bytes() == report  # the old report is untouched


def test_audit_state_of_another_job_is_refused(work: Path, tmp_path: Path) -> None:
    au, states = _audit_copy(work, tmp_path)
    for p in states:
        rec = torch.load(p, weights_only=True)
        rec["fingerprint"] = "0" * 64
        torch.save(rec, p)
    rc, err = _run(AUDIT, tmp_path)
    assert rc == 2 and "different evaluation" in err, err


def test_audit_state_of_wrong_shape_is_refused(work: Path, tmp_path: Path) -> None:
    au, states = _audit_copy(work, tmp_path)
    for p in states:
        rec = torch.load(p, weights_only=True)
        rec["robust"] = {k: v[:1] for k, v in rec["robust"].items()}
        torch.save(rec, p)
    rc, err = _run(AUDIT, tmp_path)
    assert rc == 2 and "does not fit 4 examples" in err, err


def test_shard_state_payload_is_refused(tmp_path: Path) -> None:
    from neurodeploy.scale.runner import ShardStore
    from neurodeploy.scale.shards import make_shards

    marker = tmp_path / "pwned"
    shards = make_shards(6, 3)
    store = ShardStore(tmp_path / "s", "f" * 64, shards)
    store.save(shards[0], {"x": torch.arange(3)})
    ok, res = store.load(shards[0])
    assert ok and torch.equal(res["x"], torch.arange(3))
    torch.save({"indices": list(shards[1].indices), "grid": None, "result": Payload(marker)},
               store.path(shards[1]))
    with pytest.raises(DataError, match="refused"):
        store.load(shards[1])
    assert not marker.exists()


# ------------------------------------------------------------------ npz, NIR, JSON


def test_plan_with_pickled_array_is_refused(work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with np.load(work / "ex" / "plan.npz", allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    name = next(k for k in files if k != "header")
    files[name] = np.array([Payload(marker)], dtype=object)
    bad = tmp_path / "plan.npz"
    np.savez(bad, **files)
    _refused(["simulate", "--plan", str(bad), "--samples", "3", "--out",
              str(tmp_path / "s.json")], work, marker)
    from neurodeploy.exporters.plan import DeploymentPlan, PlanError

    with pytest.raises(PlanError, match="cannot be read safely"):
        DeploymentPlan.load(bad)
    assert not marker.exists()


def test_nir_with_pickled_bytes_is_refused(work: Path, tmp_path: Path) -> None:
    import h5py

    marker = tmp_path / "pwned"
    bad = tmp_path / "model.nir"
    bad.write_bytes((work / "ex" / "model.nir").read_bytes())
    with h5py.File(bad, "r+") as f:
        paths: list[str] = []
        f.visit(lambda n: paths.append(n) if n.endswith("/weight") else None)
        shape = f[paths[0]].shape
        del f[paths[0]]
        f[paths[0]] = np.full(shape, np.void(pickle.dumps(Payload(marker))))
    line = _refused(["audit", "--model", str(bad), "--samples", "2", "--lava-samples", "0",
                     "--out", str(tmp_path / "a")], work, marker)
    assert "raw records" in line and "real numbers" in line
    assert not (tmp_path / "a").exists()


def test_json_payloads_stay_data(work: Path, tmp_path: Path) -> None:
    """JSON cannot hold code; a jsonpickle-style object stays a dict and is refused as a
    report; a 100 000-deep document is one error line, not a RecursionError."""
    marker = tmp_path / "pwned"
    evil = {"py/reduce": [{"py/function": "builtins.open"}, {"py/tuple": [str(marker), "w"]}]}
    (tmp_path / "a.json").write_text(json.dumps(evil))
    cmp = ["--out", str(tmp_path / "c")]
    line = _refused(["compare", str(tmp_path / "a.json"), str(work / "au"), *cmp], work, marker)
    assert "not an audit report" in line
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    line = _refused(["compare", str(tmp_path / "deep.json"), str(work / "au"), *cmp], work,
                    marker)
    assert "nested 100000 deep" in line


def test_masking_cache_with_foreign_keys_is_refused(tmp_path: Path) -> None:
    from neurodeploy.audit.report import Check
    from neurodeploy.safeload import load_records

    p = tmp_path / "checks.json"
    p.write_text(json.dumps([{"name": "a", "passed": True, "message": "m", "__class__": "x"}]))
    with pytest.raises(DataError, match="not a list of Check records"):
        load_records(p, Check, "masking-check cache")


def test_safe_loaders_unit(tmp_path: Path) -> None:
    from neurodeploy.safeload import check_real_array, json_depth, load_torch, loads_json

    marker = tmp_path / "pwned"
    assert json_depth('{"a": "[[[[", "b": [[1], {"c": []}]}') == 4
    assert loads_json('{"a": [1, 2]}', "x") == {"a": [1, 2]}
    with pytest.raises(DataError, match="nested 65 deep"):
        loads_json("[" * 65 + "]" * 65, "x")
    p = tmp_path / "x.pt"
    torch.save([torch.ones(2), {"k": (1, None, "s")}], p)
    assert load_torch(p, "x")[1] == {"k": (1, None, "s")}
    torch.save(Payload(marker), p)
    with pytest.raises(CheckpointError, match="global io.open"):
        load_torch(p, "x", CheckpointError)
    assert not marker.exists()
    assert check_real_array([1.5, 2], "w").dtype == np.float64
    for bad in (np.array([1 + 2j]), np.array([b"ab"]), np.array(["a"]), b"\x80\x04",
                np.array([None], dtype=object)):
        with pytest.raises(NeurodeployError):
            check_real_array(bad, "w")


# ------------------------------------------------------------------ no orphans after kill -9


def _proc_table() -> dict[int, tuple[int, bytes, str]]:
    """pid → (parent pid, start time, command line) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != b"Z":
            out[int(name)] = (int(fields[1]), fields[19], cmd)
    return out


def _descendants(root: int, table: dict[int, tuple[int, bytes, str]]) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, (pp, _, _) in table.items() if pp in frontier and p not in found}
        found |= frontier
    return found


@pytest.mark.long
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_ray_processes_end_with_a_killed_audit(work: Path, tmp_path: Path) -> None:
    """kill -9 of ``audit --workers 2``: every process of its Ray instance (GCS, raylet,
    dashboard and runtime-env agents, workers) is gone within a few seconds."""
    import re
    import signal
    import time

    pytest.importorskip("ray")
    from cli_runs import fork_run

    argv = [*AUDIT[:-2], "--attack-steps", "400", "--samples", "8", "--workers", "2",
            "--shard-size", "2", "--out", str(tmp_path / "au")]
    old = os.getcwd()
    os.chdir(work)
    try:
        pid = fork_run(argv, tmp_path / "log.txt")
    finally:
        os.chdir(old)
    seen: dict[int, bytes] = {}
    session = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # until the agents and a worker are up
            table = _proc_table()
            for p in _descendants(pid, table) | {q for q in seen if q in table}:
                seen.setdefault(p, table[p][1])
                m = re.search(r"session_\d{4}-[\w-]+", table[p][2])
                session = session or (m.group(0) if m else None)
            cmds = [table[p][2] for p in seen if p in table]
            if (any("agent" in c for c in cmds) and any("runtime_env" in c for c in cmds)
                    and any(c.startswith("ray::") for c in cmds)):
                break
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), (tmp_path / "log.txt").read_text()
            time.sleep(0.2)
        else:
            pytest.fail(f"Ray did not come up: {cmds}")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert session is not None and len(seen) >= 6, seen
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        table = _proc_table()
        left = {p: table[p][2][:90] for p, t in seen.items() if p in table and table[p][1] == t}
        left |= {p: c[:90] for p, (_, _, c) in table.items() if session in c}
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"outlived the killed caller: {left}"


# ------------------------------------------------------------------ bad inputs, before any work


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_ARGS = [
    (["audit", "--model", "tr/model.pt", "--square-queries", "-5", "--out", "o"],
     "--square-queries: must be an integer >= 1"),
    (["audit", "--model", "tr/model.pt", "--lava-samples", "-5", "--out", "o"],
     "--lava-samples: must be an integer >= 0 (or -1 for all)"),
    (["certify", "--model", "tr/model.pt", "--eps", "1.5"], "--eps: 1.5 is outside [0, 1]"),
    (["simulate", "--plan", "ex/plan.npz", "--samples", "0"], "--samples: must be an integer >= 1"),
    (["audit", "--model", "tr/model.pt", "--workers", "abc", "--out", "o"],
     "--workers: invalid int value: 'abc'"),
    (["evaluate", "--model", "tr/model.pt", "--seed", str(10**20)], "a seed is an integer"),
    (["evaluate", "--model", "tr/model.pt", "--out", "/proc/nd-test/e.json"],
     "nothing can be written in '/proc'"),
    (["audit", "--model", "tr/model.pt", "--out", "/proc/nd-test"],
     "nothing can be written in '/proc'"),
    (["audit", "--model", "tr/model.pt", "--ray-address", "not an address", "--out", "o"],
     "not an address"),
    (["audit", "--model", "tr/model.pt", "--ray-address", "ray://host:99999", "--out", "o"],
     "not an address"),
    (["audit", "--model", "tr/model.pt", "--ray-address", "127.0.0.1:PORT", "--out", "o"],
     "cannot connect to 127.0.0.1:"),
]


@pytest.mark.parametrize("argv, words", BAD_ARGS, ids=[" ".join(a[:4]) for a, _ in BAD_ARGS])
def test_bad_arguments_one_error_line_exit_2(work: Path, tmp_path: Path, argv: list[str],
                                             words: str) -> None:
    import shutil
    import time

    if "--ray-address" in argv:
        pytest.importorskip("ray")
    argv = [a.replace("PORT", str(_free_port())) for a in argv]
    shutil.copytree(work / "tr", tmp_path / "tr")
    shutil.copytree(work / "ex", tmp_path / "ex")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    rc, err = _run(argv, tmp_path)
    assert time.monotonic() - t0 < 30
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "usage:" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_debug_keeps_the_exit_code(work: Path) -> None:
    rc, err = _run(["--debug", "evaluate", "--model", "missing.pt"], work)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")


BAD_CONFIGS = {
    "lava": ("[audit]\nlava_samples = -1\n", "[audit] lava_samples = -1: must be >= 0"),
    "steps_float": ("[model]\nnum_steps = 1e9\n", "expected an integer"),
    "steps": ("[model]\nnum_steps = 1000000000\n", "time steps must be an integer in"),
    "seed": (f"seed = {10**20}\n", "a seed is an integer in [0, 2**63 - 1]"),
    "batch": ("[model]\nnum_steps = 100000\n[train]\nbatch_size = 100000000\n",
              "more than"),
    "square": ("[audit]\nsquare_queries = -5\n", "[audit] square_queries = -5"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_pipeline_configs_leave_nothing(tmp_path: Path, name: str) -> None:
    text, words = BAD_CONFIGS[name]
    (tmp_path / "c.toml").write_text(text)
    rc, err = _run(["pipeline", "--config", "c.toml", "--out", "pl"], tmp_path)
    assert rc == 2 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_pipeline_failing_in_its_first_stage_leaves_nothing(tmp_path: Path) -> None:
    """Data that pass the config check but not the loader: no config.json, no folder."""
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (tmp_path / "c.toml").write_text('[data]\nsource = "idx"\n[model]\narch = "FC8-FC10"\n')
    rc, err = _run(["pipeline", "--config", "c.toml", "--out", "pl", "--stages", "train"],
                   tmp_path)
    assert rc == 2, err
    assert not (tmp_path / "pl").exists()


@pytest.mark.parametrize("kind", ["complex_weight", "bytes_weight", "complex_tau"])
def test_nir_arrays_of_other_dtypes_are_refused(work: Path, tmp_path: Path, kind: str) -> None:
    import h5py

    bad = tmp_path / "m.nir"
    bad.write_bytes((work / "ex" / "model.nir").read_bytes())
    with h5py.File(bad, "r+") as f:
        paths: list[str] = []
        f.visit(lambda n: paths.append(n))
        key = next(p for p in paths if p.endswith("/tau" if kind == "complex_tau" else "/weight"))
        value = f[key][()]
        del f[key]
        f[key] = np.full(value.shape, b"ab") if kind == "bytes_weight" else value + 1j
    for argv in (["export", "--nir", str(bad), "--producer", "neurodeploy", "--out", "e"],
                 ["audit", "--model", str(bad), "--samples", "2", "--out", "a"]):
        rc, err = _run(argv, tmp_path)
        assert rc == 2 and ("complex" in err or "bytes" in err) and "real numbers" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nir"]


def test_deep_toml_is_refused(work: Path, tmp_path: Path) -> None:
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for argv in (["pipeline", "--config", "deep.toml", "--out", "p"],
                 ["export", "--model", str(work / "tr" / "model.pt"), "--profile", "deep.toml",
                  "--out", "e"]):
        rc, err = _run(argv, tmp_path)
        assert rc == 2 and "TOML nested too deep" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.toml"]
