"""Find the Lava environment and run :mod:`neurodeploy.sims.lava_runner` in it (torch-free).

Lava 0.10 needs Python 3.10 and numpy < 2, so it lives in its own environment
(``.venv-lava``, made by ``scripts/setup.sh`` / ``make setup``). The interpreter is, in order:

1. ``$NEURODEPLOY_LAVA_PYTHON``;
2. ``<repo>/.venv-lava/bin/python`` beside this package's source tree, if it exists;
3. a ``python3.10`` on ``PATH`` that can ``import lava, neurodeploy.exporters.plan``.

:func:`run_lava` writes the plan and the inputs to a temporary folder, runs the runner in a
subprocess and reads the spikes back. The runner is a managed child (:data:`WATCHDOG`):

- a small stdlib-only watchdog process leads a new session (its own process group) and starts
  the runner in that group, so the runner and the Lava worker processes it spawns are killed
  together (``killpg``) on timeout, on Ctrl-C, or on any error of the caller;
- the watchdog holds the read end of a pipe whose only write end is in the caller: when the
  caller dies in any way (SIGKILL included) the pipe reads EOF and the watchdog kills the group
  and removes the temporary folder; on Linux ``PR_SET_PDEATHSIG`` is set too;
- when the runner itself dies (crash, OOM kill), the watchdog kills the remaining Lava workers
  at once and exits, so the caller notices within a fraction of a second instead of waiting
  for the timeout.

Errors: :class:`~neurodeploy.errors.EnvironmentMissingError` (exit 4) without a Lava
environment; :class:`LavaRunError` (a :class:`~neurodeploy.errors.LavaRuntimeError`, exit 5)
when the runner fails, dies or times out.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, EnvironmentMissingError, LavaRuntimeError
from neurodeploy.exporters.plan import DeploymentPlan

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "NEURODEPLOY_LAVA_PYTHON"
HOW_TO = (f"create it with `scripts/setup.sh` (or `make setup`), which builds {REPO / '.venv-lava'}"
          f" with Python 3.10 + lava-nc 0.10.0, or set {ENV_VAR} to a Python 3.10 interpreter "
          f"that has lava-nc and neurodeploy installed")
_PROBE = "import lava, neurodeploy.exporters.plan, neurodeploy.sims.lava_runner"


class LavaRunError(LavaRuntimeError):
    """The Lava runner failed, died or timed out (its stderr tail is in the message; exit 5)."""


#: The watchdog (stdlib only): ``python -c WATCHDOG TMPDIR CMD...``; stdin is the caller's pipe.
WATCHDOG = r"""
import os, select, shutil, signal, subprocess, sys
tmp, cmd = sys.argv[1], sys.argv[2:]
me, parent = os.getpid(), os.getppid()

def members():
    pg, out = os.getpgrp(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit() or int(n) == me:
            continue
        try:
            with open(f"/proc/{n}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pg and fields[0] != b"Z":
            out.append(int(n))
    return out

def kill_rest():
    for _ in range(50):
        pids = members()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in pids:  # reap our own child; others are reaped by init
            try:
                os.waitpid(pid, os.WNOHANG)
            except OSError:
                pass

def abandon(*_):
    kill_rest()
    if not os.path.isdir("/proc"):
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        except OSError:
            pass
    try:  # the runner's multiprocessing temp dir (sims.lava_runner.MP_TEMPDIR_NOTE)
        shutil.rmtree(open(os.path.join(tmp, "mp_tempdir.txt")).read().strip(), ignore_errors=True)
    except OSError:
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    os._exit(137)

for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(sig, abandon)
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != parent:
    abandon()
child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
while True:
    rc = child.poll()
    if rc is not None:
        kill_rest()
        os._exit(rc if rc >= 0 else 128 - rc)
    ready, _, _ = select.select([0], [], [], 0.2)
    if ready and os.read(0, 1) == b"":
        abandon()
    if os.getppid() != parent:
        abandon()
"""


@dataclass
class LavaResult:
    """Spikes from Lava, in the emulator's aligned ``[T, B, …]`` form (uint8 numpy).

    ``layer_spikes`` is filled with ``record_layers``; ``raw`` (global sink trains
    ``[total_steps, …]``) with ``raw``; ``meta`` has the runner's timings and schedule;
    ``wall_s`` is the whole subprocess call, interpreter start-up and file I/O included.
    """

    out_spikes: np.ndarray
    layer_spikes: list[np.ndarray] = field(default_factory=list)
    raw: list[np.ndarray] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    #: a membrane read-out's v ``[T, B, classes]`` (int32 v units; ``plan.readout``)
    out_v: np.ndarray | None = None

    @property
    def counts(self) -> np.ndarray:
        return self.out_spikes.sum(0, dtype=np.int64)


def _works(python: str) -> bool:
    try:
        r = subprocess.run([python, "-c", _PROBE], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@functools.lru_cache(maxsize=8)
def _find(env_value: str | None) -> str:
    if env_value:
        if not _works(env_value):
            raise EnvironmentMissingError(
                f"{ENV_VAR}={env_value!r} cannot `{_PROBE}`; {HOW_TO}")
        return env_value
    local = REPO / ".venv-lava" / "bin" / "python"
    if local.exists() and _works(str(local)):
        return str(local)
    on_path = shutil.which("python3.10")
    if on_path and _works(on_path):
        return on_path
    raise EnvironmentMissingError(f"the Lava environment was not found; {HOW_TO}")


def find_lava_python() -> str:
    """The Lava interpreter (see module docstring); raises :class:`EnvironmentMissingError`."""
    return _find(os.environ.get(ENV_VAR) or None)


def lava_missing_reason() -> str | None:
    """``None`` when the Lava environment works, else the sentence saying why and how to
    make it (what the terminal and the reports show wherever Lava was asked for)."""
    try:
        find_lava_python()
    except EnvironmentMissingError as exc:
        return str(exc)
    return None


def warn_lava_missing(where: str, stream: Any = None) -> str | None:
    """Print ``warning: <where> runs without Lava: <reason>`` on stderr when the Lava
    environment is missing; returns the reason (``None`` when Lava is there)."""
    reason = lava_missing_reason()
    if reason is not None:
        print(f"warning: {where} runs without Lava: {reason}", file=stream or sys.stderr)
    return reason


def lava_available() -> bool:
    """True when :func:`find_lava_python` succeeds (for skipping tests)."""
    try:
        find_lava_python()
    except EnvironmentMissingError:
        return False
    return True


def run_lava(plan: DeploymentPlan | str | os.PathLike, spikes: np.ndarray,
             timeout_s: float = 600.0, record_layers: bool = False, raw: bool = False,
             period: int | None = None) -> LavaResult:
    """Run ``plan`` on ``spikes`` ``[T, B, *input_shape]`` (0/1) in Lava, in a subprocess.

    All B samples go through one compiled network in one long run (see
    :mod:`neurodeploy.sims.lava_runner`). Raises :class:`EnvironmentMissingError` (exit 4)
    without a Lava environment and :class:`LavaRunError` on failure or after ``timeout_s``.
    """
    python = find_lava_python()
    spikes = np.asarray(spikes)
    if spikes.ndim < 3:
        raise ConfigError(f"spikes must be [T, B, ...], got shape {spikes.shape}")
    if not np.isin(spikes, (0, 1)).all():
        raise ConfigError("spikes must be binary (0/1)")
    with tempfile.TemporaryDirectory(prefix="neurodeploy-lava-") as tmp:
        tmp_p = Path(tmp)
        if isinstance(plan, DeploymentPlan):
            plan_path = tmp_p / "plan.npz"
            plan.save(plan_path)
        else:
            plan_path = Path(plan)
        in_path, out_path = tmp_p / "inputs.npz", tmp_p / "out.npz"
        np.savez(in_path, spikes=spikes.astype(np.uint8))
        cmd = [python, "-m", "neurodeploy.sims.lava_runner", "--plan", str(plan_path),
               "--inputs", str(in_path), "--out", str(out_path)]
        if record_layers:
            cmd.append("--record-layers")
        if raw:
            cmd.append("--raw")
        if period is not None:
            cmd += ["--period", str(int(period))]
        t0 = time.perf_counter()
        proc, lifeline = _start_managed(cmd, tmp)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _remove_mp_tempdir(tmp_p)
            raise LavaRunError(f"Lava runner timed out after {timeout_s:g} s "
                               f"({spikes.shape[1]} samples); its processes were stopped") \
                from None
        except BaseException:
            _kill_group(proc)
            _remove_mp_tempdir(tmp_p)
            raise
        finally:
            os.close(lifeline)
        wall = time.perf_counter() - t0
        tail = err.decode(errors="replace")[-2000:]
        if proc.returncode == 4:
            raise EnvironmentMissingError(f"Lava runner: {_last_line(tail)}; {HOW_TO}")
        if proc.returncode == 2:
            raise ConfigError(f"Lava runner refused the plan or inputs: {_last_line(tail)}")
        if proc.returncode != 0 or not out_path.is_file():
            how = (f"was killed by signal {proc.returncode - 128}" if proc.returncode > 128
                   else f"failed (exit {proc.returncode})")
            raise LavaRunError(f"Lava runner {how}: {_last_line(tail) or 'no message'}")
        with np.load(out_path, allow_pickle=False) as z:
            n_layers = sum(1 for k in z.files if k.startswith("layer"))
            n_raw = sum(1 for k in z.files if k.startswith("raw"))
            return LavaResult(
                out_spikes=z["out_spikes"],
                layer_spikes=[z[f"layer{k}"] for k in range(n_layers)],
                raw=[z[f"raw{k}"] for k in range(n_raw)],
                meta=json.loads(str(z["meta"])),
                wall_s=wall,
                out_v=z["out_v"] if "out_v" in z.files else None,
            )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _start_managed(cmd: list[str], tmp: str) -> tuple[subprocess.Popen, int]:
    """Start ``cmd`` under the :data:`WATCHDOG` in a new session; returns the watchdog and the
    write end of its lifeline pipe (close it when done; the caller's death closes it too)."""
    r, w = os.pipe()  # both non-inheritable; r is handed to the watchdog as its stdin only
    try:
        proc = subprocess.Popen([sys.executable, "-c", WATCHDOG, tmp, *cmd], stdin=r,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=tmp)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    return proc, w


def _remove_mp_tempdir(run_dir: Path) -> None:
    """Remove a killed runner's multiprocessing temp dir (``pymp-*``), which it names in
    ``run_dir`` (:data:`neurodeploy.sims.lava_runner.MP_TEMPDIR_NOTE`); its finaliser never
    ran."""
    note = run_dir / "mp_tempdir.txt"
    try:
        shutil.rmtree(note.read_text().strip(), ignore_errors=True)
    except OSError:
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the watchdog, the runner and the Lava worker processes (one process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
