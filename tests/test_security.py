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
        del f[paths[0]]
        f[paths[0]] = np.void(pickle.dumps(Payload(marker)))
    _refused(["audit", "--model", str(bad), "--samples", "2", "--lava-samples", "0",
              "--out", str(tmp_path / "a")], work, marker)
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
