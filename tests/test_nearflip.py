"""The cascade's closest approach and the near-flip restarts (issue 21): the engine hands every
attack that asks the best CW margin its rows reached in earlier steps; a spike-set search with
``near_gate`` runs only on the rows within the gate, every restart from random levels."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks import spikeset as ss
from neurodeploy.attacks.base import Attack, margin_loss
from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.attacks.spikeset import BuiltSpikes, SpikeSetConfig, _levels, spike_set_search
from neurodeploy.classifier import SNNClassifier
from neurodeploy.errors import ConfigError, DataError

EPS = 0.15


pytestmark = pytest.mark.usefixtures("one_thread")


class _Fixed(Attack):
    """Returns the clean image plus a fixed signed ε step (so its replay is known)."""

    name = "fixed-step"
    config_cls = SpikeSetConfig  # any frozen config will do; unused

    def _run(self, f, x, y, eps, gen, domain, classifier):  # noqa: ANN001
        sign = torch.where(torch.arange(x[0].numel()) % 2 == 0, 1.0, -1.0).view_as(x[0])
        return (x + eps * sign).clamp(0, 1)


class _Recorder(Attack):
    """Records the margins the engine hands over; returns the clean images."""

    name = "recorder"
    config_cls = SpikeSetConfig
    wants_margins = True
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def with_margins(self, margins):  # noqa: ANN001
        self._m = margins.clone()
        return self

    def _run(self, f, x, y, eps, gen, domain, classifier):  # noqa: ANN001
        _Recorder.seen.append((x.clone(), self._m))
        return x


def test_engine_hands_over_the_closest_approach(known_digits):
    _, clf, x, y = known_digits
    _Recorder.seen = []
    fixed = _Fixed()
    fixed.label_override = "fixed"
    rec = _Recorder()
    rec.label_override = "rec"
    r = evaluate_robustness(clf, x, y, [fixed, rec], [EPS], quiet=True)
    with torch.no_grad():
        m_clean = margin_loss(clf(x), y)
        x_step = (x + EPS * torch.where(torch.arange(64) % 2 == 0, 1.0, -1.0).view(1, 8, 8)
                  ).clamp(0, 1)
        m_step = margin_loss(clf(x_step), y)
    robust = r.robust[EPS][0]
    assert 0 < int(robust.sum()) < len(y)  # the fixed step broke some points, not all
    (xs, got), = _Recorder.seen
    assert torch.equal(xs, x[robust])  # the recorder ran on the still-robust rows only
    want = torch.maximum(m_clean, m_step)[robust]
    assert torch.allclose(got, want)
    assert (m_step[robust] > m_clean[robust]).any()  # the step moved some closer: max taken


def _near_attack(gate, restarts=1, seed=3):
    return make_attack("spike-set", n_iter=15, n_restarts=restarts, k=8,
                       grad_mode="bptt:fast_sigmoid:5", near_gate=gate, seed=seed)


def test_near_gate_runs_only_on_the_rows_within_the_gate(known_digits, monkeypatch):
    _, clf, x, y = known_digits
    with torch.no_grad():
        m = margin_loss(clf(x), y) * 5  # rate read-out, T = 5: margins in output spikes
    gate = float(m.median().abs())
    near = m >= -gate
    assert 0 < int(near.sum()) < len(y)
    ran: list[int] = []
    orig = ss.spike_set_search

    def spy(model, xs, *a, **k):  # noqa: ANN001
        ran.append(xs.shape[0])
        return orig(model, xs, *a, **k)

    monkeypatch.setattr(ss, "spike_set_search", spy)
    gen = torch.Generator().manual_seed(0)
    atk = _near_attack(gate)
    x_adv = atk.perturb(clf, x, y, EPS, gen)  # alone: the clean margins gate
    assert ran == [int(near.sum())]
    assert torch.equal(x_adv[~near], x[~near])  # far rows come back clean
    # handed-over margins gate instead of the clean ones: only row 0 counts as near
    prior = torch.full((len(y),), -100.0)
    prior[0] = 0.0
    ran.clear()
    x2 = atk.with_margins(prior).perturb(clf, x, y, EPS, torch.Generator().manual_seed(0))
    assert ran == [1] and torch.equal(x2[1:], x[1:])
    assert atk._prior is None  # with_margins returned a copy


def test_near_restarts_start_from_random_levels(known_digits, monkeypatch):
    model, clf, x, y = known_digits
    calls: list[int] = []
    orig = ss._Search.random_levels

    def spy(self, rows, draw, p):  # noqa: ANN001
        calls.append(rows.numel())
        return orig(self, rows, draw, p)

    monkeypatch.setattr(ss._Search, "random_levels", spy)
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, BuiltSpikes(5))
    spk.aux_logits = "membrane"
    for gate, want in ((0.0, 0), (2.0, len(y))):
        calls.clear()
        cfg = SpikeSetConfig(n_iter=1, n_restarts=1, k=8, patience=1000, near_gate=gate,
                             grad_mode="bptt:fast_sigmoid:5")
        spike_set_search(model, x, y, u, EPS, torch.Generator().manual_seed(0), cfg, spk, 5.0)
        assert sum(calls) == want  # clean start without the gate, random starts with it
    lv = _levels(x, u, EPS)
    assert bool((lv.jhi > lv.jlo).any())  # there were levels to draw


def test_tie_restarts_only_in_the_band(known_digits, monkeypatch):
    """``tie_restarts`` more restarts, each only on the rows whose closest approach (the handed
    over ``prior`` or the search's own) is within ``tie_gate`` output spikes of a flip."""
    model, clf, x, y = known_digits
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, BuiltSpikes(5))
    spk.aux_logits = "membrane"
    calls: list[list[int]] = []
    drawn: list[torch.Tensor] = []
    orig = ss._Search.random_levels

    def spy(self, rows, draw, p):  # noqa: ANN001
        calls.append(rows.tolist())
        drawn.append(orig(self, rows, draw, p))
        return drawn[-1]

    def still(S, rows, j, obj, won, marg, streams):  # noqa: ANN001
        # no ascent, no closer approach: the band is the clean margin and the prior alone
        return j, obj, torch.zeros_like(won), j, torch.full_like(marg, -1e9)

    monkeypatch.setattr(ss._Search, "random_levels", spy)
    monkeypatch.setattr(ss, "_climb", still)
    with torch.no_grad():
        z = spk(torch.stack([(u[:, i] < x[i]).float() for i in range(len(y))], 1))
    clean = 5.0 * margin_loss(z, y)
    right = (z.argmax(1) == y).nonzero()[:, 0].tolist()
    far = [i for i in right if clean[i] < -1.0]
    assert len(far) >= 3, "the fixture needs rows more than one spike from a flip"
    band_rows = far[:2]
    prior = torch.full((len(y),), -1e9)
    prior[band_rows] = -0.5
    cfg = SpikeSetConfig(n_iter=1, n_restarts=1, tie_restarts=3, tie_gate=1.0, k=8,
                         near_gate=9.0, grad_mode="bptt:fast_sigmoid:5")
    spike_set_search(model, x, y, u, EPS, torch.Generator().manual_seed(0), cfg, spk, 5.0,
                     prior=prior)
    want = sorted(set(band_rows) | {i for i in right if clean[i] >= -1.0})
    assert sorted(calls[0]) == right  # the first restart: every robust row
    # the tie restarts: the band only, 3 copies of each row in one batch ...
    assert len(calls) == 2 and calls[1] == [i for i in want for _ in range(3)]
    # ... each copy from its own stream: the copies of a row start from different levels
    tie = drawn[1].view(len(want), 3, -1)
    assert all(not torch.equal(tie[i, 0], tie[i, 1]) for i in range(len(want)))
    calls.clear()
    spike_set_search(model, x, y, u, EPS, torch.Generator().manual_seed(0),
                     SpikeSetConfig(n_iter=1, n_restarts=1, k=8, near_gate=9.0,
                                    grad_mode="bptt:fast_sigmoid:5"), spk, 5.0, prior=prior)
    assert len(calls) == 1  # tie_restarts 0: as before
    for bad in ({"tie_restarts": -1}, {"tie_gate": -0.5}):
        with pytest.raises(ConfigError, match="tie_"):
            SpikeSetConfig(**bad)
    from neurodeploy.attacks.presets import preset

    tie = {lab: p["tie_restarts"] for n, p, lab in preset("auto") if "near-" in lab}
    assert tie == {"spike-set:near-fs10-mix": 0, "spike-set:near-fs25-ce": 4}
    band = {lab: (p["n_restarts"], p["tie_restarts"], p["near_gate"])
            for n, p, lab in preset("auto") if lab.startswith("spike-set:tie")}
    assert band == {"spike-set:tie-fs20-cw": (1, 3, 1.0)}  # the tie band only


def test_tie_copies_only_add_breaks(known_digits):
    """The tie restarts run after the regular ones (same draws) and only add: every example
    broken without them stays broken, each returned image is in the ε-ball and fools the
    classifier exactly where the search says so."""
    model, clf, x, y = known_digits
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, BuiltSpikes(5))
    spk.aux_logits = "membrane"

    def run(tie: int):
        cfg = SpikeSetConfig(n_iter=3, n_restarts=1, tie_restarts=tie, tie_gate=100.0, k=8,
                             grad_mode="bptt:fast_sigmoid:5")
        return spike_set_search(model, x, y, u, EPS, torch.Generator().manual_seed(3), cfg,
                                spk, 5.0)

    x0, _, f0 = run(0)
    x4, _, f4 = run(4)
    assert bool((f4 | ~f0).all()) and int(f4.sum()) > int(f0.sum()), (int(f0.sum()), int(f4.sum()))
    assert float((x4 - x).abs().max()) <= EPS + 1e-6
    with torch.no_grad():
        assert torch.equal(f4, clf(x4).argmax(1) != y)
    assert torch.equal(x4[f0], x0[f0])  # the regular restart's counterexamples are kept


def test_tie_copies_keep_the_fooling_copy(monkeypatch):
    """``_Best.keep`` with copies: per example the fooling copy wins (its levels, the fooled
    flag, its approach); without one the best objective and the best approach of any copy."""
    P = 2

    class S:
        @staticmethod
        def exact(j, rows):  # noqa: ANN001, ANN205
            return torch.zeros(len(rows)), torch.zeros(len(rows), dtype=torch.bool), \
                torch.full((len(rows),), -9.0)

    obj = torch.tensor([0.5, 0.2, 0.9, 0.1, 0.7, 0.3])  # example 0: copies 0-2, example 1: 3-5
    won = torch.tensor([False, True, False, False, False, False])
    mpk = torch.tensor([0.0, 0.0, -1.0, -2.0, -3.0, -0.5])
    jj = torch.arange(6).unsqueeze(1).repeat(1, P)  # copy c at level c in every pixel
    monkeypatch.setattr(ss, "_climb", lambda *a: (jj, obj, won, jj + 10, mpk))
    best = ss._Best(torch.zeros(2, dtype=torch.bool), torch.full((2,), -5.0),
                    torch.zeros(2, P, dtype=torch.long), torch.full((2,), -9.0),
                    torch.zeros(2, P, dtype=torch.long))
    best.keep(S(), torch.tensor([0, 0, 0, 1, 1, 1]), jj, None, copies=3)
    assert best.fooled.tolist() == [True, False]
    assert best.j[:, 0].tolist() == [1, 4]  # the fooling copy; the best objective (0.7)
    assert best.obj.tolist() == pytest.approx([0.2, 0.7])
    assert best.mj[:, 0].tolist() == [11, 15] and best.m.tolist() == [0.0, -0.5]


def test_old_state_versions_are_refused(known_digits, tmp_path):
    _, clf, x, y = known_digits
    path = tmp_path / "state.pt"
    clf, x, y = clf.select(torch.arange(4)), x[:4], y[:4]
    evaluate_robustness(clf, x, y, [("fgsm", {})], [EPS], state_path=path, quiet=True)
    st = torch.load(path, weights_only=False)
    st["version"] = 1
    del st["margin"]
    torch.save(st, path)
    with pytest.raises(DataError, match="version 1"):
        evaluate_robustness(clf, x, y, [("fgsm", {})], [EPS], state_path=path, quiet=True)


def test_spike_block_near_gate(known_digits, monkeypatch):
    from neurodeploy.attacks import spikeblock as sb
    from neurodeploy.attacks.presets import escalation, preset

    _, clf, x, y = known_digits
    ran: list[int] = []
    orig = sb.spike_block_search

    def spy(c, xs, *a, **k):  # noqa: ANN001
        ran.append(xs.shape[0])
        return orig(c, xs, *a, **k)

    monkeypatch.setattr(sb, "spike_block_search", spy)
    atk = make_attack("spike-block", n_iter=5, n_restarts=1, batch=4, near_gate=2.0, seed=1)
    prior = torch.full((len(y),), -100.0)
    prior[[1, 3]] = -0.2  # rate read-out, T = 5: one output spike from a flip
    x_adv = atk.with_margins(prior).perturb(clf, x, y, EPS, torch.Generator().manual_seed(0))
    assert ran == [2]
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[[1, 3]] = False
    assert torch.equal(x_adv[keep], x[keep])
    # without the gate every row is searched; the auto preset gates at the abort margin,
    # escalation does not
    ran.clear()
    make_attack("spike-block", n_iter=5, n_restarts=1, batch=4, seed=1).perturb(
        clf, x, y, EPS, torch.Generator().manual_seed(0))
    assert ran == [len(y)]
    block = [p for n, p, _ in preset("auto") if n == "spike-block"][0]
    assert block["near_gate"] == 9.0
    esc = [p for n, p, _ in escalation(1, known_draw=True) if n == "spike-block"][0]
    assert esc["near_gate"] == 0


def test_a_robust_point_returns_its_closest_approach(known_digits, monkeypatch):
    """spike-set hands a point it did not break back at the best CW margin its search reached
    (what the engine keeps), not at the best objective; a broken point at its counterexample."""
    model, clf, x, y = known_digits
    seen: dict[int, float] = {}
    orig = ss._Search.exact

    def spy(self, j, rows):  # noqa: ANN001
        o, f, m = orig(self, j, rows)
        for r, v in zip(rows.tolist(), m.tolist(), strict=True):
            seen[r] = max(seen.get(r, -1e9), v)
        return o, f, m

    monkeypatch.setattr(ss._Search, "exact", spy)
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, BuiltSpikes(5))
    spk.aux_logits = "membrane"
    cfg = SpikeSetConfig(n_iter=6, n_restarts=2, k=4, objective="ce",
                         grad_mode="bptt:fast_sigmoid:5")
    x_adv, spikes, fooled = spike_set_search(model, x, y, u, 0.05, torch.Generator().manual_seed(0),
                                             cfg, spk, 5.0)
    monkeypatch.setattr(ss._Search, "exact", orig)
    with torch.no_grad():
        m = margin_loss(clf(x_adv), y) * 5
        m_clean = margin_loss(clf(x), y) * 5
    kept = (~fooled).nonzero()[:, 0].tolist()
    assert kept and fooled.any()
    for r in kept:
        assert abs(float(m[r]) - seen[r]) < 1e-4, (r, float(m[r]), seen[r])
    assert (m[~fooled] > m_clean[~fooled]).any()   # some robust points did come closer
    assert torch.equal(clf(x_adv).argmax(1) != y, fooled)


@pytest.mark.parametrize("name, params", [
    ("apgd-t", {"n_iter": 4, "n_target_classes": 2, "grad_mode": "bptt:fast_sigmoid:5"}),
    ("square", {"n_queries": 12}),
])
def test_apgd_t_and_square_near_gate(known_digits, name, params):
    """With ``near_gate`` APGD-T and Square search only the rows within it (far rows come back
    clean) and the near rows exactly as the ungated attack searches that sub-batch; without a
    gate they are unchanged; the ``auto`` preset gates them at 9 spikes under the known draw
    only (not under the unknown draw, not in ``auto-demo``, not in escalation)."""
    from neurodeploy.attacks.presets import escalation, preset

    _, clf, x, y = known_digits
    near = torch.tensor([0, 2, 5])
    prior = torch.full((len(y),), -100.0)
    prior[near] = -0.2  # rate read-out, T = 5: one output spike from a flip
    gated = make_attack(name, **params, near_gate=2.0, seed=4).with_margins(prior)
    x_adv = gated.perturb(clf, x, y, EPS, torch.Generator().manual_seed(0))
    far = torch.ones(len(y), dtype=torch.bool)
    far[near] = False
    assert torch.equal(x_adv[far], x[far])
    alone = make_attack(name, **params, seed=4).perturb(
        clf.select(near), x[near], y[near], EPS, torch.Generator().manual_seed(0))
    assert torch.equal(x_adv[near], alone)
    assert not torch.equal(alone, x[near])  # the search moved the near rows
    # gate 0 = the attack as before: every row searched, same draws as with no gate at all
    a0 = make_attack(name, **params, near_gate=0.0, seed=4).perturb(
        clf, x, y, EPS, torch.Generator().manual_seed(0))
    a1 = make_attack(name, **params, seed=4).perturb(clf, x, y, EPS, torch.Generator().manual_seed(0))
    assert torch.equal(a0, a1) and not torch.equal(a0[far], x[far])
    with pytest.raises(ConfigError, match="near_gate"):
        make_attack(name, **params, near_gate=-1.0)

    def gate_of(specs):
        return [p.get("near_gate", 0) for n, p, _ in specs if n == name]

    assert gate_of(preset("auto")) == [1.0]  # the tie band (session 14)
    assert gate_of(preset("auto", stochastic=True)) == [0]
    assert gate_of(preset("auto-demo")) == [0]
    assert all(g == 0 for g in gate_of(escalation(1, known_draw=True)))
