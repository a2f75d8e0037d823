"""The ground truth for small cases: enumerate every reachable level combination.

The product ``∏_p R_p`` of an example's reachable levels (:mod:`neurodeploy.verify.levels`)
is the exact set of spike trains the ε-ball can make the host feed the chip; running all of
them through the bit-exact emulator decides robustness by brute force (tests only: the
product grows as ``(T + 1)^P``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels
from neurodeploy.verify.search import emulator_predict

#: refuse enumerations larger than this (tests keep their cases small)
MAX_COMBINATIONS = 1_000_000


def enumerate_levels(plan: DeploymentPlan, emulator: Any, lv: PixelLevels, y: int,
                     batch: int = 4096) -> tuple[bool, np.ndarray | None]:
    """(robust, a misclassifying level vector or None) by enumerating every combination."""
    total = int(np.prod([len(r) for r in lv.levels], dtype=np.float64))
    if total > MAX_COMBINATIONS:
        raise ValueError(f"{total} level combinations: too many to enumerate")
    combos = itertools.product(*lv.levels)
    while True:
        chunk = np.array(list(itertools.islice(combos, batch)), dtype=np.int64)
        if chunk.size == 0:
            return True, None
        spikes = np.stack([lv.spikes(c) for c in chunk], axis=1)
        pred = emulator_predict(emulator, plan, spikes)
        bad = np.nonzero(pred != y)[0]
        if bad.size:
            return False, chunk[bad[0]]
