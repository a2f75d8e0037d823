"""Find the Lava environment and run :mod:`neurodeploy.sims.lava_runner` in it (torch-free).

Lava 0.10 needs Python 3.10 and numpy < 2, so it lives in its own environment
(``.venv-lava``, made by ``scripts/setup.sh`` / ``make setup``). The interpreter is, in order:

1. ``$NEURODEPLOY_LAVA_PYTHON``;
2. ``<repo>/.venv-lava/bin/python`` beside this package's source tree, if it exists;
3. a ``python3.10`` on ``PATH`` that can ``import lava, neurodeploy.exporters.plan``.

:func:`run_lava` writes the plan and the inputs to a temporary folder, runs the runner in a
subprocess (its own process group, killed as a whole on timeout) and reads the spikes back.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, EnvironmentMissingError, NeurodeployError
from neurodeploy.exporters.plan import DeploymentPlan

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "NEURODEPLOY_LAVA_PYTHON"
HOW_TO = (f"create it with `scripts/setup.sh` (or `make setup`), which builds {REPO / '.venv-lava'}"
          f" with Python 3.10 + lava-nc 0.10.0, or set {ENV_VAR} to a Python 3.10 interpreter "
          f"that has lava-nc and neurodeploy installed")
_PROBE = "import lava, neurodeploy.exporters.plan, neurodeploy.sims.lava_runner"


class LavaRunError(NeurodeployError):
    """The Lava runner failed or timed out (its stderr tail is in the message)."""

    exit_code = 1


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
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=tmp)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise LavaRunError(f"Lava runner timed out after {timeout_s:.0f} s "
                               f"({spikes.shape[1]} samples)") from None
        except BaseException:
            _kill_group(proc)
            raise
        wall = time.perf_counter() - t0
        tail = err.decode(errors="replace")[-2000:]
        if proc.returncode == 4:
            raise EnvironmentMissingError(f"Lava runner: {tail.strip()}; {HOW_TO}")
        if proc.returncode == 2:
            raise ConfigError(f"Lava runner refused the plan or inputs: {tail.strip()}")
        if proc.returncode != 0 or not out_path.is_file():
            raise LavaRunError(f"Lava runner failed (exit {proc.returncode}):\n{tail}")
        with np.load(out_path, allow_pickle=False) as z:
            n_layers = sum(1 for k in z.files if k.startswith("layer"))
            n_raw = sum(1 for k in z.files if k.startswith("raw"))
            return LavaResult(
                out_spikes=z["out_spikes"],
                layer_spikes=[z[f"layer{k}"] for k in range(n_layers)],
                raw=[z[f"raw{k}"] for k in range(n_raw)],
                meta=json.loads(str(z["meta"])),
                wall_s=wall,
            )


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the runner and the Lava worker processes it spawned (same process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
