"""Shared test configuration.

- ``shared_dir``: ``../shared`` beside the clone (or ``NEURODEPLOY_SHARED``); tests that need it
  skip cleanly when it is absent (a user's clone has no ``../shared``).
- Tests never download anything; they write their own small files under ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("NEURODEPLOY_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = shared_path()
    if not (p / "data" / "mnist").is_dir():
        pytest.skip(f"shared data folder not found at {p} (set NEURODEPLOY_SHARED)")
    return p


@pytest.fixture(autouse=True)
def _quiet_and_threads(monkeypatch):
    monkeypatch.setenv("NEURODEPLOY_QUIET", "1")
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
