"""Gradient-masking checks pass on a normal SNN and fail on a deliberately masked one."""

from __future__ import annotations

import pytest

from neurodeploy.attacks.masking import run_masking_checks
from neurodeploy.attacks.toy import cached_digits_snn, masked_copy
from neurodeploy.data.core import load_digits_split

KW = {"n_iter": 15, "square_queries": 150, "fd_directions": 8}


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), epochs=3)
    sp = load_digits_split()
    return clf, sp.test.x[:40], sp.test.y[:40]


def test_checks_pass_on_normal_model(data_and_model):
    clf, x, y = data_and_model
    res = {r.name: r for r in run_masking_checks(clf, x, y, 0.1, **KW)}
    assert set(res) == {
        "iterative_beats_single_step", "whitebox_beats_blackbox", "accuracy_falls_with_eps",
        "unbounded_attack_succeeds", "gradient_matches_finite_differences", "nonzero_gradients_eval",
        "flips_beat_apgd",
    }
    failed = {n: (r.numbers, r.message) for n, r in res.items() if not r.passed}
    assert not failed
    assert res["unbounded_attack_succeeds"].numbers["accuracy"] <= 0.05


def test_checks_fail_on_masked_model(data_and_model):
    clf, x, y = data_and_model
    res = {r.name: r for r in run_masking_checks(masked_copy(clf), x, y, 0.1, **KW)}
    assert not res["nonzero_gradients_eval"].passed
    assert res["nonzero_gradients_eval"].numbers["zero_gradient_fraction"] == 1.0
    assert not res["gradient_matches_finite_differences"].passed
    assert not res["whitebox_beats_blackbox"].passed
    assert not res["unbounded_attack_succeeds"].passed


def test_noise_slack_only_for_stochastic_evaluations():
    """The unknown draw's accuracies are means over len(x)·draws Bernoulli trials: checks get
    z standard errors of slack there, and none for a deterministic classifier."""
    import math

    from neurodeploy.attacks.masking import _noise

    assert _noise((0.05,), 0, 2.0) == 0.0
    assert _noise((0.05,), 256, 2.0) == pytest.approx(2 * math.sqrt(0.05 * 0.95 / 256))
    both = _noise((0.051, 0.098), 256, 2.0)
    assert both == pytest.approx(2 * math.sqrt((0.051 * 0.949 + 0.098 * 0.902) / 256))
    assert 0.04 < both < 0.05  # small: a real masking gap (tens of points) still fails
