"""Per-example random streams of the known-draw flip searches (issue 21): an example's search
does not depend on the other examples of its batch; the streams are U(0, 1) and seeded."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks.spikeblock import SpikeBlockConfig, _score, spike_block_search
from neurodeploy.attacks.spikeset import BuiltSpikes, SpikeSetConfig, _levels, spike_set_search
from neurodeploy.attacks.spikesteep import steepest_run
from neurodeploy.attacks.streams import RowStreams, content_ids, mix, mix_int
from neurodeploy.classifier import SNNClassifier

A = 5  # the example followed (its searches depend on the seed); the partners have other fates
PARTNERS = (0, 7, 9, 12, 14)


@pytest.fixture(scope="module")
def known(known_digits):
    return known_digits


pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs():
    """Batches ``[A, b]`` for every partner b, and ``[b, A]`` for the first (position)."""
    out = [(torch.tensor([A, b]), 0) for b in PARTNERS]
    out.append((torch.tensor([PARTNERS[0], A]), 1))
    return out


def _spike_set(known, rows, seed):
    model, clf, x, y = known
    u = clf.encoder.uniform(x)[:, rows]
    spk = SNNClassifier(model, BuiltSpikes(model.config.num_steps))
    spk.aux_logits = "membrane"
    cfg = SpikeSetConfig(n_iter=25, n_restarts=3, k=8, patience=3, fused=False,
                         abort_after=5, abort_margin=0.5)
    return spike_set_search(model, x[rows], y[rows], u, 0.04, torch.Generator().manual_seed(seed),
                            cfg, spk, 5.0)[0]


def _spike_block(known, rows, seed):
    _, clf, x, y = known
    u = clf.encoder.uniform(x)[:, rows]
    cfg = SpikeBlockConfig(n_iter=6, batch=4, n_restarts=2, patience=2, steep_restarts=2,
                           steep_kicks=2, steep_steps=12, steep_moves=16, round_batch=4,
                           round_iter=6, round_patience=2)
    return spike_block_search(clf.select(rows), x[rows], y[rows], u, 0.04,
                              torch.Generator().manual_seed(seed), cfg)[0]


def _steepest(known, rows, seed):
    _, clf, x, y = known
    xs, ys = x[rows], y[rows]
    lv = _levels(xs, clf.encoder.uniform(x)[:, rows], 0.04)
    streams = RowStreams.for_batch(torch.Generator().manual_seed(seed), xs, lv.us.transpose(0, 1))
    act = torch.arange(2)
    score = lambda im, yy, r: _score(clf.select(rows), im, yy, r)  # noqa: E731
    j, _ = steepest_run(score, lv, xs, ys, act, streams.at(act), 24, 3, 15)
    return j


@pytest.mark.parametrize("search", [_spike_set, _spike_block, _steepest])
def test_an_examples_search_does_not_depend_on_the_rest_of_its_batch(known, search):
    results = [search(known, rows, 0)[pos] for rows, pos in _pairs()]
    for r in results[1:]:
        assert torch.equal(r, results[0])
    # the draws matter: another seed moves the followed example elsewhere
    assert not torch.equal(search(known, torch.tensor([A, PARTNERS[0]]), 1)[0], results[0])


def test_the_row_streams_are_uniform_seeded_and_per_row():
    like = torch.zeros(1)
    s = RowStreams(7, torch.arange(3))
    u = s.uniform(torch.tensor([0, 2]), (200_000,), like)
    for row in u:
        assert abs(float(row.mean()) - 0.5) < 0.005
        assert abs(float(row.var()) - 1 / 12) < 0.002
        assert float(row.min()) >= 0.0 and float(row.max()) < 1.0
        assert abs(float((row < 0.1).float().mean()) - 0.1) < 0.004
    assert abs(float(torch.corrcoef(u)[0, 1])) < 0.01
    # row 0's second draw is the same whether row 1 drew in between or not
    a, b = RowStreams(7, torch.arange(3)), RowStreams(7, torch.arange(3))
    a.uniform(torch.tensor([0, 1]), (5,), like)
    b.uniform(torch.tensor([0]), (5,), like)
    b.uniform(torch.tensor([1]), (5,), like)
    b.uniform(torch.tensor([1]), (5,), like)
    assert torch.equal(a.uniform(torch.tensor([0]), (4,), like),
                       b.uniform(torch.tensor([0]), (4,), like))
    # same key, ids → same draws; another key → others
    c = RowStreams(7, torch.arange(3)).uniform(torch.tensor([0, 2]), (200_000,), like)
    assert torch.equal(c, u)
    assert not torch.equal(RowStreams(8, torch.arange(3)).uniform(torch.tensor([0]), (9,), like),
                           u[0, :9])


def test_row_identities_follow_the_content_and_the_hash_is_splitmix64():
    vals = [0, 1, 12345, (1 << 62) + 7, -5, -(1 << 63)]
    got = mix(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert [g & ((1 << 64) - 1) for g in got] == [mix_int(v) for v in vals]
    assert mix_int(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF  # splitmix64(seed 0), 1st output
    x = torch.rand(4, 2, 3, generator=torch.Generator().manual_seed(0))
    ids = content_ids(x)
    assert len(set(ids.tolist())) == 4
    assert torch.equal(content_ids(x[[2, 0]]), ids[[2, 0]])
    y = x.clone()
    y[1, 1, 2] = torch.nextafter(y[1, 1, 2], torch.tensor(2.0))  # one ulp
    assert content_ids(y)[1] != ids[1] and torch.equal(content_ids(y)[[0, 2, 3]], ids[[0, 2, 3]])
