"""The known-draw block search (issue 21, completeness): gradient-free random level moves that
find counterexamples the gradient-ranked flips miss; its place in ``auto``."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks.presets import escalation, preset
from neurodeploy.attacks.spikeblock import SpikeBlockConfig, spike_block_search
from neurodeploy.attacks.spikeset import _levels
from neurodeploy.errors import ConfigError


@pytest.fixture(scope="module")
def known(known_digits):
    return known_digits[1:]


def test_block_search_returns_ball_images_on_reachable_levels_that_fool(known):
    clf, x, y = known
    eps = 0.1
    u = clf.encoder.uniform(x)
    cfg = SpikeBlockConfig(n_iter=40, batch=16, n_restarts=2)
    x_adv, fooled = spike_block_search(clf, x, y, u, eps, torch.Generator().manual_seed(0), cfg)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    lv = _levels(x, u, eps)
    level = (x_adv.reshape(1, x.shape[0], -1) > u.reshape(u.shape[0], x.shape[0], -1)).sum(0)
    assert bool(((level >= lv.jlo) & (level <= lv.jhi)).all())
    with torch.no_grad():
        assert torch.equal(fooled, clf(x_adv).argmax(1) != y)
    assert int(fooled.sum()) >= 3, int(fooled.sum())
    # unchanged pixels keep their clean value
    same = (level == lv.j0).reshape(x_adv.shape)
    assert torch.equal(x_adv[same], x[same])


def test_block_search_config_and_place_in_auto():
    with pytest.raises(ConfigError, match="batch"):
        SpikeBlockConfig(batch=0)
    with pytest.raises(ConfigError, match="norm"):
        SpikeBlockConfig(norm="l2")
    specs = preset("auto", stochastic=False)
    assert specs[-1][0] == "spike-block" and specs[-1][1]["n_restarts"] == 2
    assert not [s for s in preset("auto", stochastic=True) if s[0] == "spike-block"]
    esc = [s for s in escalation(2, known_draw=True) if s[0] == "spike-block"]
    assert [p["n_restarts"] for _, p, _ in esc] == [8]
