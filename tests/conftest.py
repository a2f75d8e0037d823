"""Shared test configuration.

- ``shared_dir``: ``../shared`` beside the clone (or ``NEURODEPLOY_SHARED``); tests that need it
  skip cleanly when it is absent (a user's clone has no ``../shared``).
- ``known_digits``: a small Bernoulli digits SNN under the known draw (host maps, seed 0, T = 5)
  and the first 40 test images it classifies correctly — the spike-flip / spike-block tests'.
- ``one_thread``: one torch thread for a test (``pytestmark = pytest.mark.usefixtures(...)``).
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


@pytest.fixture
def one_thread(_quiet_and_threads):
    """One torch thread for the test (tiny searches: two threads cost ~10× on a busy host)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def known_digits(tmp_path_factory):
    """``(model, known-draw classifier, x, y)`` on the correctly classified of 40 images."""
    import torch

    from neurodeploy.attacks.toy import cached_digits_snn
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_digits_split
    from neurodeploy.encoding import KnownDrawEncoder

    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), name="digits_bern_auto",
                            encoding="bernoulli", readout="rate", epochs=4, arch="FC64-FC10")
    test = load_digits_split().test
    n = 40
    x, y = test.x[:n], test.y[:n]
    k = SNNClassifier(clf.model, KnownDrawEncoder.from_host(list(range(n)), 0, 5, (1, 8, 8)))
    with torch.no_grad():
        idx = (k(x).argmax(1) == y).nonzero()[:, 0]
    return clf.model, k.select(idx), x[idx], y[idx]
