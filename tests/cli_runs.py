"""Small, fast command lines for every command on digits, and helpers to run them in-process
or in a forked child that a test can SIGKILL (shared by the crash-safety, determinism and
fuzz tests). A forked child needs no interpreter start-up or imports, so killing at a random
moment and resuming costs what the work costs."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.atomicio import is_temp_name

TRAIN = ["train", "--data", "digits", "--train-limit", "200", "--test-limit", "60", "--arch",
         "FC32-FC10", "--steps", "4", "--epochs", "4", "--threads", "1"]
MODEL = "tr/model.pt"
SMALL_AUDIT = ["--samples", "8", "--attacks", "pgd", "--attack-steps", "3", "--lava-samples",
               "0", "--no-certify", "--no-masking-checks", "--threat-models", "known", "--eot",
               "1", "--escalation-rounds", "0"]
PIPELINE_TOML = """seed = 3
[data]
train_limit = 200
test_limit = 40
[model]
arch = "FC32-FC10"
num_steps = 4
[train]
epochs = 3
[evaluate]
seeds = [0, 1]
[simulate]
backends = ["emulator"]
samples = 20
[audit]
samples = 8
attacks = ["pgd"]
attack_steps = 3
lava_samples = 0
certify = false
masking_checks = false
threat_models = ["known"]
eot = 1
escalation_rounds = 0
"""

#: command → (argv with OUT for the output, argv to continue after a kill, outputs to compare)
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "train": ([*TRAIN, "--out", "tr"], ["--resume"]),
    "evaluate": (["evaluate", "--model", MODEL, "--limit", "60", "--seeds", "2", "--out",
                  "ev.json"], []),
    "export": (["export", "--model", MODEL, "--out", "ex"], []),
    "simulate": (["simulate", "--plan", "ex/plan.npz", "--model", MODEL, "--samples", "30",
                  "--out", "sim.json"], []),
    "attack": (["attack", "--model", MODEL, "--attacks", "pgd", "--eps", "0.05,0.1",
                "--samples", "20", "--set", "pgd.n_iter=5", "--out", "att.json"], ["--resume"]),
    "certify": (["certify", "--model", MODEL, "--eps", "0.05", "--samples", "30", "--method",
                 "ibp", "--out", "cert.json"], []),
    "audit": (["audit", "--model", MODEL, *SMALL_AUDIT, "--out", "au"], []),
    "pipeline": (["pipeline", "--config", "small.toml", "--out", "pl", "--threads", "1"],
                 ["--resume"]),
}
#: what each command needs in its folder first
NEEDS = {"simulate": ["export"], "train": [], "pipeline": []}

VOLATILE = re.compile(r"(seconds|_s$|^s$|time|timestamp|finished|started|duration|wall|date|"
                      r"elapsed|when|created|git_sha|timings|load_average|^resume$)", re.I)


def run(argv: list[str]) -> int:
    import torch

    from neurodeploy.cli import main

    torch.set_num_threads(1)
    return main([*argv, "-q"])


def prepare(folder: Path, command: str) -> None:
    """Write what ``command`` needs into ``folder`` (cwd): the small pipeline config, a
    trained model and, for simulate, its plan."""
    (folder / "small.toml").write_text(PIPELINE_TOML)
    if command not in ("train", "pipeline") and not (folder / MODEL).is_file():
        assert run(COMMANDS["train"][0]) == 0
    for need in NEEDS.get(command, ["train"]):
        if need != "train":
            assert run(COMMANDS[need][0]) == 0


def _private_progress_lock() -> None:
    """In a forked child: give tqdm a lock of the child's own. tqdm's default lock holds a
    multiprocessing semaphore that a fork shares with the parent; a child SIGKILLed while it
    holds it (a progress bar being drawn) left the parent's next bar waiting forever (seen as a
    CI hang in test_crash_safety)."""
    import threading

    from tqdm.std import tqdm

    classes, seen = [tqdm], set()
    while classes:
        cls = classes.pop()
        if cls not in seen:
            seen.add(cls)
            cls.set_lock(threading.RLock())
            classes.extend(cls.__subclasses__())


def fork_run(argv: list[str], log: Path, setup: Callable[[], None] | None = None) -> int:
    """``main(argv)`` in a forked child (stdout/stderr to ``log``); returns its pid.
    ``setup()`` runs in the child first (e.g. to set :data:`CRASH_ENV` there only)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        rc = 99
        try:
            _private_progress_lock()
            if setup is not None:
                setup()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's own streams
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            signal.signal(signal.SIGINT, signal.default_int_handler)
            rc = run(argv)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    return pid


def kill_after(argv: list[str], delay: float, log: Path) -> bool:
    """Start ``argv`` in a child and SIGKILL it after ``delay`` s; True if it was still
    running (False: it finished first)."""
    pid = fork_run(argv, log)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


def kill_at(argv: list[str], point: str, log: Path) -> int:
    """Run ``argv`` in a child that SIGKILLs itself at the crash point ``point``
    (``name[@n]``, see :func:`neurodeploy.runtime.crash_point`); returns the child's exit
    code (``-9`` when it was killed there)."""
    from neurodeploy.runtime import CRASH_ENV

    pid = fork_run(argv, log, setup=lambda: os.environ.__setitem__(CRASH_ENV, point))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def normalized(obj: Any) -> Any:
    """JSON without timestamps and durations (keys matching :data:`VOLATILE`)."""
    if isinstance(obj, dict):
        return {k: normalized(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [normalized(v) for v in obj]
    return obj


def outputs(folder: Path) -> dict[str, Any]:
    """Every non-hidden output file under ``folder``, read back (JSON normalized; checkpoints
    as tensors; plans and npz as arrays; other files as bytes)."""
    import torch

    out: dict[str, Any] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.name in ("small.toml",):
            continue
        if p.suffix == ".json":
            out[str(rel)] = normalized(json.loads(p.read_text()))
        elif p.suffix == ".pt":
            rec = torch.load(p, weights_only=True)
            out[str(rel)] = _tensors(rec)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                out[str(rel)] = {k: (normalized(json.loads(str(z[k]))) if k == "header"
                                     else z[k].tolist()) for k in z.files}
        elif p.suffix in (".md", ".html"):
            out[str(rel)] = "present"  # rendered from audit.json (compared there)
        else:
            out[str(rel)] = p.read_bytes()
    return out


def _tensors(obj: Any) -> Any:
    import torch

    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [_tensors(v) for v in obj]
    return obj


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


#: Files published together: where one of a set is visible, all of it is.
TOGETHER = (("audit.json", "audit.md", "audit.html"), ("model.nir", "plan.npz"))


def check_complete(folder: Path) -> None:
    """Every visible file under ``folder`` is complete and readable (nothing truncated), and
    no set of files published together (:data:`TOGETHER`) is visible in part."""
    import torch

    from neurodeploy.exporters.plan import DeploymentPlan
    from neurodeploy.models import _read

    for p in [folder, *folder.rglob("*")]:
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_dir():
            for group in TOGETHER:
                seen = [n for n in group if (p / n).is_file()]
                # the audit command's folder holds its plan.npz without a model.nir
                if seen and seen != ["plan.npz"]:
                    assert seen == list(group), f"{p}: only {seen} of {group} visible"
        if not p.is_file():
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".pt":
            _read(p)  # CRC of every member, then torch.load
            torch.load(p, weights_only=True)
        elif p.suffix == ".npz" and p.name == "plan.npz":
            DeploymentPlan.load(p)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                [z[k] for k in z.files]
        elif p.suffix == ".nir":
            import nir

            nir.read(p)
        elif p.suffix in (".md", ".html"):
            assert p.stat().st_size > 0, p
