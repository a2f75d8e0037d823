"""Packaging: a non-editable wheel installs exporters/ and sims/ as neurodeploy.exporters /
neurodeploy.sims (and the hardware profiles as package data), importable from another folder;
``import neurodeploy`` does not import torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NO_TORCH = (
    "import sys, neurodeploy, neurodeploy.exporters.plan, neurodeploy.pipeline, "
    "neurodeploy.training.metrics; "
    "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
    "print('torch modules:', bad[:3]); sys.exit(1 if bad else 0)"
)


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_import_neurodeploy_does_not_import_torch(tmp_path):
    proc = _run([sys.executable, "-c", NO_TORCH], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _source_copy(dst: Path) -> Path:
    """The files a build needs, copied so that building leaves the checkout untouched."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    for pkg in ("neurodeploy", "exporters", "sims", "hardware_profiles"):
        shutil.copytree(
            REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    return dst


def test_wheel_installs_namespaced_subpackages(tmp_path):
    wheels = tmp_path / "wheels"
    src = _source_copy(tmp_path / "src")
    build = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(src),
            "-w",
            str(wheels),
        ],
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("neurodeploy-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    inst = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    assert inst.returncode == 0, inst.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = (
        "import neurodeploy, neurodeploy.exporters, neurodeploy.sims, "
        "neurodeploy.hardware_profiles, neurodeploy.exporters.plan; "
        "import os; p = os.path.dirname(neurodeploy.__file__); "
        "assert 'site-packages' in p, p; "
        "assert os.path.dirname(neurodeploy.exporters.__file__) == os.path.join(p, 'exporters'); "
        "assert os.path.dirname(neurodeploy.sims.__file__) == os.path.join(p, 'sims'); "
        "print('ok', p)"
    )
    proc = _run([str(py), "-c", check], cwd=elsewhere)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr
    # the bare names must not leak into site-packages
    bare = _run([str(py), "-c", "import exporters"], cwd=elsewhere)
    assert bare.returncode != 0
    no_torch = _run([str(py), "-c", NO_TORCH], cwd=elsewhere)
    assert no_torch.returncode == 0, no_torch.stdout + no_torch.stderr
