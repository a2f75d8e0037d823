"""The Lava runner is a managed child: its process group dies with the caller (SIGKILL,
SIGTERM), a dead runner is noticed within seconds, a timeout is exit 5 — and no process of the
group, nor the ``neurodeploy-lava-*`` temp folder, outlives any of these. Skipped without the
Lava environment (the watchdog logic itself is plain Python and runs in every environment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from neurodeploy.sims.emulator import random_fc_plan
from neurodeploy.sims.lava_env import LavaRunError, lava_available, run_lava

REPO = Path(__file__).resolve().parents[1]
needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="Lava environment (.venv-lava) not found")
pytestmark = [pytest.mark.lava]


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def live_members(pgid: int) -> list[int]:
    """Non-zombie processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f is not None and int(f[2]) == pgid and f[0] != "Z":
                out.append(int(entry))
    return out


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f is not None and int(f[1]) == pid and f[0] != "Z":
                out.append(int(entry))
    return out


def wait_until(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


CALLER = textwrap.dedent("""
    import subprocess, sys, tempfile, numpy as np
    tempfile.tempdir = sys.argv[1]
    from neurodeploy.sims import lava_env
    from neurodeploy.sims.emulator import random_fc_plan
    real = subprocess.Popen
    def popen(*a, **k):
        p = real(*a, **k)
        if lava_env.WATCHDOG in a[0]:
            open(sys.argv[2], "w").write(str(p.pid))
        return p
    lava_env.subprocess.Popen = popen
    plan = random_fc_plan(np.random.default_rng(0), (8, 4), num_steps=4)
    lava_env.run_lava(plan, np.zeros((4, 20000, 8), np.uint8), timeout_s=600)
""")


def _start_caller(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pid_file = tmp_path / "watchdog.pid"
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(tmpdir), str(pid_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: pid_file.is_file() and pid_file.read_text(), 60)
    watchdog = int(pid_file.read_text())
    # the runner (the watchdog's child) is up and importing Lava
    assert wait_until(lambda: children(watchdog), 30)
    time.sleep(2.0)
    return caller, watchdog, tmpdir


@needs_lava
@pytest.mark.parametrize("sig", [signal.SIGKILL,
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_runner_group_dies_with_its_caller(tmp_path: Path, sig: int) -> None:
    caller, watchdog, tmpdir = _start_caller(tmp_path)
    assert any(p.name.startswith("neurodeploy-lava-") for p in tmpdir.iterdir())
    os.kill(caller.pid, sig)
    caller.wait(30)
    assert wait_until(lambda: live_members(watchdog) == [], 15), live_members(watchdog)
    assert wait_until(lambda: list(tmpdir.iterdir()) == [], 10), list(tmpdir.iterdir())


@needs_lava
def test_dead_runner_is_noticed_within_seconds(monkeypatch) -> None:
    from neurodeploy.sims import lava_env

    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    def popen(*a, **k):
        p = real(*a, **k)
        if lava_env.WATCHDOG in a[0]:
            started.append(p)
        return p

    monkeypatch.setattr(lava_env.subprocess, "Popen", popen)

    import threading

    killed_at: list[float] = []

    def kill_runner() -> None:
        wait_until(lambda: started and children(started[0].pid), 60)
        time.sleep(2.0)
        for pid in children(started[0].pid):
            os.kill(pid, signal.SIGKILL)
        killed_at.append(time.monotonic())

    threading.Thread(target=kill_runner, daemon=True).start()
    plan = random_fc_plan(np.random.default_rng(0), (8, 4), num_steps=4)
    with pytest.raises(LavaRunError, match="signal 9"):
        run_lava(plan, np.zeros((4, 20000, 8), np.uint8), timeout_s=300)
    noticed = time.monotonic() - killed_at[0]
    print(f"dead runner noticed {noticed:.2f} s after its SIGKILL")
    assert noticed < 10  # seconds, not the 300 s timeout
    assert wait_until(lambda: live_members(started[0].pid) == [], 10)


@needs_lava
def test_cli_timeout_is_exit_5_without_orphans(tmp_path: Path) -> None:
    import dataclasses

    plan = random_fc_plan(np.random.default_rng(0), (64, 10), num_steps=4)
    first = dataclasses.replace(plan.layers[0], in_shape=(1, 8, 8), flatten_before=True)
    plan = dataclasses.replace(plan, input_shape=(1, 8, 8), layers=(first, *plan.layers[1:]))
    plan.save(tmp_path / "plan.npz")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    before = {int(e) for e in os.listdir("/proc") if e.isdigit()}
    env = {**os.environ, "TMPDIR": str(tmpdir), "NEURODEPLOY_QUIET": "1"}
    r = subprocess.run([sys.executable, "-m", "neurodeploy", "simulate", "--plan",
                        str(tmp_path / "plan.npz"), "--backend", "lava", "--samples", "300",
                        "--timeout", "0.5"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 5, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Lava runner timed out"), r.stderr
    assert list(tmpdir.iterdir()) == []

    def new_lava_processes() -> list[int]:
        out = []
        for e in os.listdir("/proc"):
            if e.isdigit() and int(e) not in before:
                try:
                    cmd = Path(f"/proc/{e}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"lava_runner" in cmd and _stat(int(e)) and _stat(int(e))[0] != "Z":
                    out.append(int(e))
        return out

    assert wait_until(lambda: new_lava_processes() == [], 10), new_lava_processes()
