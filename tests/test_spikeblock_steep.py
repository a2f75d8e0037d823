"""spike-block's steepest single-pixel rounds and the flip searches' early abort (issue 21,
completeness and budget): the moves, what the rounds find, the gate and the abort."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks.presets import escalation, preset
from neurodeploy.attacks.spikeblock import SpikeBlockConfig, count_scale, spike_block_search
from neurodeploy.attacks.spikeset import (
    BuiltSpikes,
    SpikeSetConfig,
    _levels,
    spike_set_search,
)
from neurodeploy.attacks.spikesteep import single_moves
from neurodeploy.attacks.streams import RowStreams
from neurodeploy.classifier import SNNClassifier
from neurodeploy.errors import ConfigError


@pytest.fixture(scope="module")
def known(known_digits):
    return known_digits[1:]


class Counting:
    """A classifier wrapper that counts the inputs it scores (batch dimension ``dim``; ``select``
    keeps counting)."""

    def __init__(self, clf, seen=None, dim=0):
        self.clf, self.encoder, self.model, self.dim = clf, clf.encoder, clf.model, dim
        self.seen = [0] if seen is None else seen

    def select(self, rows):
        return Counting(self.clf.select(rows), self.seen, self.dim)

    def __call__(self, x):
        self.seen[0] += x.shape[self.dim]
        return self.clf(x)


def test_single_moves_change_one_pixel_to_another_feasible_level():
    x = torch.tensor([[0.5, 0.0, 0.95, 0.3]])
    u = torch.tensor([[0.1, 0.2, 0.9, 0.35], [0.45, 0.9, 0.97, 0.9], [0.55, 0.05, 0.99, 0.28],
                      [0.6, 0.5, 0.2, 0.31]]).unsqueeze(1)  # [T=4, B=1, P=4]
    lv = _levels(x, u, 0.1)
    cur = lv.j0.clone()
    feasible = int((lv.jhi - lv.jlo).sum())  # moves off the current level
    props = single_moves(lv, cur, 100, RowStreams(0, torch.zeros(1)).at(torch.arange(1)))
    assert props.shape[0] == feasible > 0
    diff = (props != cur).sum(-1)
    assert diff.max() == 1 and diff.min() == 1
    assert bool(((props >= lv.jlo) & (props <= lv.jhi)).all())
    assert len({tuple(p[0].tolist()) for p in props}) == feasible  # no move twice
    few = single_moves(lv, cur, 2, RowStreams(1, torch.zeros(1)).at(torch.arange(1)))
    assert few.shape[0] == 2 and bool(((few != cur).sum(-1) == 1).all())


def test_steepest_rounds_break_what_the_block_runs_leave(known):
    clf, x, y = known
    eps = 0.08
    u = clf.encoder.uniform(x)
    block = SpikeBlockConfig(n_iter=20, batch=8, n_restarts=1)
    _, f0 = spike_block_search(clf, x, y, u, eps, torch.Generator().manual_seed(0), block)
    left = (~f0).nonzero()[:, 0][:8]
    assert left.numel() >= 5, int(left.numel())
    sub = clf.select(left)
    steep = SpikeBlockConfig(n_iter=20, batch=8, n_restarts=1, steep_restarts=2, steep_kicks=2,
                             steep_steps=30, steep_moves=64, round_batch=8, round_iter=20)
    x_adv, f1 = spike_block_search(sub, x[left], y[left], u[:, left], eps,
                                   torch.Generator().manual_seed(0), steep)
    assert int(f1.sum()) >= 2, (int(f1.sum()), int(left.numel()))
    with torch.no_grad():
        assert torch.equal(f1, sub(x_adv).argmax(1) != y[left])
    assert (x_adv - x[left]).abs().max() <= eps + 1e-6


def test_the_gate_skips_examples_far_from_a_flip(known):
    clf, x, y = known
    clf, x, y = clf.select(torch.arange(16)), x[:16], y[:16]
    eps = 0.02  # small ball: most examples stay many spikes from a flip
    u = clf.encoder.uniform(x)
    assert count_scale(clf) == 5.0  # rate read-out, T = 5
    runs = {}
    for gate in (0.0, 0.5):
        c = Counting(clf)
        cfg = SpikeBlockConfig(n_iter=10, batch=4, n_restarts=1, steep_restarts=1,
                               steep_kicks=1, steep_steps=10, steep_moves=32, round_batch=4,
                               round_iter=10, steep_gate=gate)
        spike_block_search(c, x, y, u, eps, torch.Generator().manual_seed(0), cfg)
        runs[gate] = c.seen[0]
    assert runs[0.5] < runs[0.0] / 2, runs
    with pytest.raises(ConfigError, match="steep_gate"):
        SpikeBlockConfig(steep_gate=-1.0)


def test_abort_gives_up_far_examples_and_changes_nothing_when_it_never_fires(known):
    clf, x, y = known
    model = clf.model
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, BuiltSpikes(model.config.num_steps))
    spk.aux_logits = "membrane"
    out, seen = {}, {}
    for name, kw in (("off", {}), ("never", {"abort_after": 5, "abort_margin": 1e9}),
                     ("far", {"abort_after": 5, "abort_margin": 0.5})):
        c = Counting(spk, dim=1)  # spike trains [T, B, …]
        cfg = SpikeSetConfig(n_iter=20, n_restarts=1, k=8, fused=False, **kw)
        out[name] = spike_set_search(model, x, y, u, 0.03, torch.Generator().manual_seed(0),
                                     cfg, c, 5.0)
        seen[name] = c.seen[0]
    assert torch.equal(out["off"][0], out["never"][0]) and seen["off"] == seen["never"]
    assert seen["far"] < seen["off"] / 2, seen
    # the examples near a flip are still searched: the aborting search breaks some
    assert int(out["far"][2].sum()) >= 1, int(out["off"][2].sum())
    with pytest.raises(ConfigError, match="abort"):
        SpikeSetConfig(abort_after=-1)


def test_auto_runs_the_steepest_rounds_and_aborts_only_outside_escalation():
    block = [p for n, p, _ in preset("auto", stochastic=False) if n == "spike-block"][0]
    assert block["steep_restarts"] >= 2 and block["steep_gate"] > 0
    flips = [p for n, p, _ in preset("auto", stochastic=False) if n == "spike-set"]
    assert flips and all(p["abort_after"] > 0 for p in flips)
    esc = escalation(1, known_draw=True)
    assert all(p["abort_after"] == 0 for n, p, _ in esc if n == "spike-set")
    eb = [p for n, p, _ in esc if n == "spike-block"][0]
    assert eb["steep_restarts"] == 2 * block["steep_restarts"]


def test_tie_margin_follows_the_decisions_tie_rule():
    from neurodeploy.attacks.base import is_correct
    from neurodeploy.attacks.spikeblock import tie_margin

    z = torch.tensor([[3.0, 5.0, 5.0, 1.0], [4.0, 2.0, 4.0, 0.0], [2.0, 6.0, 1.0, 6.0]])
    y = torch.tensor([2, 0, 1])
    m = tie_margin(z, y, 0.5)
    # row 0: class 1 ties y = 2 and is lower (wins the tie); row 1: class 2 ties y = 0 but is
    # higher (loses it); row 2: class 3 ties y = 1, higher
    assert m.tolist() == [0.5, 0.0, 0.0]
    assert (m > 0).tolist() == (~is_correct(z, y)).tolist()


def test_the_rounds_are_counted_for_a_small_input(known, monkeypatch):
    """``steep_pixels``: R rounds on an input of at most that many pixels, ⌊R·pixels/P⌋ (at
    least 1) on P pixels — what spike-block runs, and what ``auto`` sets (64: 20 rounds on the
    8×8 digits, 1 on a 784-pixel MNIST image)."""
    from neurodeploy.attacks import spikeblock
    from neurodeploy.attacks.spikeblock import steep_rounds

    cfg = SpikeBlockConfig(steep_restarts=20, steep_pixels=64)
    assert [steep_rounds(cfg, p) for p in (32, 64, 100, 784, 10_000)] == [20, 20, 12, 1, 1]
    assert steep_rounds(SpikeBlockConfig(steep_restarts=20), 784) == 20     # 0: no scaling
    assert steep_rounds(SpikeBlockConfig(steep_pixels=64), 784) == 0        # no rounds asked
    with pytest.raises(ConfigError, match="steep_pixels"):
        SpikeBlockConfig(steep_pixels=-1)
    block = [p for n, p, _ in preset("auto", stochastic=False) if n == "spike-block"][0]
    assert block["steep_pixels"] == 64 and block["steep_restarts"] == 20
    calls = []
    orig = spikeblock._steep_once
    monkeypatch.setattr(spikeblock, "_steep_once",
                        lambda *a, **k: calls.append(1) or orig(*a, **k))
    clf, x, y = known
    clf, x, y = clf.select(torch.arange(4)), x[:4], y[:4]
    u = clf.encoder.uniform(x)
    for pixels, want in ((64, 3), (32, 1)):           # the digits have 64 pixels
        calls.clear()
        cfg = SpikeBlockConfig(n_iter=2, batch=2, n_restarts=1, steep_restarts=3,
                               steep_pixels=pixels, steep_kicks=1, steep_steps=2,
                               steep_moves=4, round_batch=2, round_iter=2)
        _, fooled = spike_block_search(clf, x, y, u, 0.001, torch.Generator().manual_seed(0),
                                       cfg)
        assert not bool(fooled.all())      # a tiny ball: the rounds run on what is left
        assert len(calls) == want, (pixels, len(calls))
