"""Float-model verification (MILP, HiGHS) against brute force on tiny random float SNNs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neurodeploy.models import ModelConfig, build_model
from neurodeploy.verify.float_milp import _predict, verify_float_example
from neurodeploy.verify.levels import pixel_levels
from neurodeploy.verify.support import UnsupportedPlan


def _case(seed: int):
    rng = np.random.default_rng(seed)
    T, P = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    torch.manual_seed(seed)
    model = build_model(ModelConfig(f"FC{int(rng.integers(2, 6))}-FC3", (P,), num_steps=T,
                                    readout=str(rng.choice(["count", "rate"])))).eval()
    with torch.no_grad():
        for syn in model.synapses:
            syn.weight.mul_(float(rng.uniform(1.0, 4.0)))
    x = rng.random(P).astype(np.float32)
    u = rng.random((T, P)).astype(np.float32)
    eps = float(rng.choice([0.1, 0.2, 0.3]))
    lv = pixel_levels(x, u, eps)
    y = _predict(model, lv.spikes(lv.clean)) if rng.random() < 0.8 else int(rng.integers(3))
    return model, x, u, y, eps, lv


def _float_sweep(seeds: range) -> dict[str, int]:
    decided = {"robust": 0, "non_robust": 0}
    for seed in seeds:
        model, x, u, y, eps, lv = _case(seed)
        truth = all(_predict(model, lv.spikes(np.array(c))) == y
                    for c in itertools.product(*lv.levels))
        r = verify_float_example(model, x, y, u, eps, timeout=20)
        if r["status"] == "unknown":
            continue
        assert r["status"] == ("robust" if truth else "non_robust"), (seed, r)
        decided[r["status"]] += 1
        if r["status"] == "non_robust" and r["how"] != "clean":
            img = np.asarray(r["counterexample"], np.float32)
            assert _predict(model, (img[None, :] > u).astype(np.uint8)) != y
    return decided


def test_float_verdicts_equal_enumeration() -> None:
    decided = _float_sweep(range(30))
    assert decided["robust"] >= 5 and decided["non_robust"] >= 3, decided


@pytest.mark.long
def test_float_verdicts_equal_enumeration_many() -> None:
    _float_sweep(range(30, 300))


def test_float_refuses_unencoded_layers() -> None:
    model = build_model(ModelConfig("FC4-FC3", (3,), num_steps=2, readout="membrane"))
    with pytest.raises(UnsupportedPlan, match="membrane"):
        verify_float_example(model, np.full(3, 0.5, np.float32), 0,
                             np.full((2, 3), 0.2, np.float32), 0.1, 1)
