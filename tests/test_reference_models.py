"""The certify_snn reference checkpoints, loaded by our code, reproduce their logged clean
accuracy on the full 10k MNIST test set (98.07 % and 92.87 %) within 0.5 points.

Semantics (research/seeds_code.md §1): LIF α = θ = 0.25 on every layer, strict '>', hard reset,
Bernoulli input, T = 10, rate readout. Skips when ../shared is absent.
"""

from __future__ import annotations

import pytest
import torch

from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.idx import load_idx_pair
from neurodeploy.evaluation import evaluate
from neurodeploy.models import ModelConfig, import_state_dict

pytestmark = pytest.mark.shared

LOGGED = {"mnist_FC.pth.tar": 0.9807, "FC_T_3_eps_0.06.pth.tar": 0.9287}


@pytest.fixture(scope="module")
def mnist_test(shared_dir):
    d = shared_dir / "data" / "mnist"
    return load_idx_pair(
        d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz", "mnist/t10k"
    )


@pytest.mark.parametrize("name", sorted(LOGGED))
def test_reference_checkpoint_clean_accuracy(shared_dir, mnist_test, name):
    path = shared_dir / "reference_models" / "certify_snn" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    assert len(mnist_test) == 10_000
    torch.set_num_threads(1)  # 2 threads are ~10x slower when other jobs share the 2 cores
    cfg = ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate")
    clf = SNNClassifier(import_state_dict(path, cfg), seed=0)
    res = evaluate(clf, mnist_test, batch_size=1000, seeds=0)
    assert abs(res.accuracy - LOGGED[name]) <= 0.005, (name, res.accuracy)
