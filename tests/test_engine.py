"""Evaluation engine: worst case over attacks, replay consistency, resume, stochastic draws."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks.base import Attack, is_correct
from neurodeploy.attacks.engine import evaluate_robustness, format_table
from neurodeploy.attacks.toy import cached_digits_snn
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError, DataError

ATTACKS = [("fgsm", {}), ("pgd", {"n_iter": 5}), ("apgd-ce", {"n_iter": 8})]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), epochs=3)
    sp = load_digits_split()
    return clf, sp.test.x[:48], sp.test.y[:48]


def _replay_consistent(clf, res, x, y):
    with torch.no_grad():
        clean_ok = is_correct(clf(x), y)
    for e in res.eps_list:
        with torch.no_grad():
            ok = is_correct(clf(res.adversarial[e]), y)
        robust = res.robust[e][0]
        broken = torch.tensor([b is not None for b in res.broken_by[e]])
        # never robust while the replay is fooled; never broken while the replay is correct
        assert torch.equal(robust, ok & clean_ok)
        assert torch.equal(broken, clean_ok & ~ok)
        assert torch.equal(robust | broken, clean_ok)


def test_worst_case_and_replay(setup):
    clf, x, y = setup
    res = evaluate_robustness(clf, x, y, ATTACKS, [0.05, 0.15], seed=0, quiet=True)
    _replay_consistent(clf, res, x, y)
    d = res.to_dict()
    json.dumps(d)
    for e in res.eps_list:
        cum = [res.cumulative[e][n][0] for n in res.attack_names]
        assert cum == sorted(cum, reverse=True)
        assert cum[-1] == res.robust_accuracy[e][0] <= res.clean_accuracy[0]
        assert (res.adversarial[e] - x).abs().max() <= e + 1e-6
    assert res.robust_accuracy[0.15][0] <= res.robust_accuracy[0.05][0]
    assert res.robust_accuracy[0.15][0] < res.clean_accuracy[0]
    assert "apgd-ce" in format_table(res)


def test_worst_case_is_min_over_attacks_per_example(setup):
    clf, x, y = setup
    both = evaluate_robustness(clf, x, y, ATTACKS[:2], [0.1], seed=3, quiet=True)
    only = [evaluate_robustness(clf, x, y, [a], [0.1], seed=3, quiet=True) for a in ATTACKS[:2]]
    # the first attack runs on the same points with the same seed in both runs
    assert not (both.robust[0.1][0] & ~only[0].robust[0.1][0]).any()
    assert both.robust_accuracy[0.1][0] <= min(o.robust_accuracy[0.1][0] for o in only)


class _Liar(Attack):
    """Returns the clean x (claims nothing) — the engine must not count any success."""

    name = "liar"

    def __init__(self):
        self.config = None

    def to_dict(self):
        return {"name": "liar"}

    def perturb(self, classifier, x, y, eps, generator=None):
        return x.clone()


class _Escaper(_Liar):
    name = "escaper"

    def to_dict(self):
        return {"name": "escaper"}

    def perturb(self, classifier, x, y, eps, generator=None):
        return (x + 2 * eps).clamp(0, 1)


def test_engine_counts_only_replayed_successes_and_checks_ball(setup):
    clf, x, y = setup
    res = evaluate_robustness(clf, x, y, [_Liar()], [0.1], quiet=True)
    assert res.robust_accuracy[0.1] == res.clean_accuracy
    assert all(b is None for b in res.broken_by[0.1])
    with pytest.raises(DataError, match="threat model"):
        evaluate_robustness(clf, x, y, [_Escaper()], [0.1], quiet=True)


class _Interrupt(Exception):
    pass


class _Flaky(Attack):
    """Wraps a real attack (same name and record) and raises on the n-th call."""

    def __init__(self, inner, fail_on):
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.config = inner.config
        self.name = inner.name

    def to_dict(self):
        return self.inner.to_dict()

    def perturb(self, classifier, x, y, eps, generator=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise _Interrupt
        return self.inner.perturb(classifier, x, y, eps, generator)


def test_resume_gives_identical_result(setup, tmp_path):
    clf, x, y = setup
    eps = [0.05, 0.1]
    full = evaluate_robustness(clf, x, y, ATTACKS, eps, seed=1, quiet=True)
    state = tmp_path / "state.pt"
    flaky = [_Flaky(make_attack(n, **p), fail_on=2 if n == "apgd-ce" else 99) for n, p in ATTACKS]
    with pytest.raises(_Interrupt):
        evaluate_robustness(clf, x, y, flaky, eps, seed=1, state_path=state, quiet=True)
    assert state.is_file()
    resumed = evaluate_robustness(clf, x, y, ATTACKS, eps, seed=1, state_path=state, quiet=True)
    a, b = full.to_dict(), resumed.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    for e in eps:
        assert torch.equal(full.adversarial[e], resumed.adversarial[e])
    with pytest.raises(ConfigError, match="different evaluation"):
        evaluate_robustness(clf, x, y, ATTACKS, [0.2], seed=1, state_path=state, quiet=True)


def test_stochastic_model_mean_and_ci(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), name="digits_bern",
                            encoding="bernoulli", epochs=3)
    sp = load_digits_split()
    x, y = sp.test.x[:32], sp.test.y[:32]
    res = evaluate_robustness(clf, x, y, [("fgsm", {})], [0.1], seed=0, draws=3, eot_iter=2, quiet=True)
    d = res.to_dict()
    ra = d["per_eps"][0]["robust_accuracy"]
    assert len(ra["per_draw"]) == 3 and ra["ci95"][0] <= ra["mean"] <= ra["ci95"][1]
    assert res.robust[0.1].shape == (3, 32)
    assert d["attacks"][0]["config"]["eot_iter"] == 2
    # the same seed gives the same numbers
    again = evaluate_robustness(clf, x, y, [("fgsm", {})], [0.1], seed=0, draws=3, eot_iter=2, quiet=True)
    assert again.robust_accuracy == res.robust_accuracy


def test_bad_configs(setup):
    clf, x, y = setup
    with pytest.raises(ConfigError, match="unknown attack"):
        evaluate_robustness(clf, x, y, [("nope", {})], [0.1], quiet=True)
    with pytest.raises(ConfigError, match="outside the input domain"):
        evaluate_robustness(clf, x, y, ATTACKS, [1.2], quiet=True)
    with pytest.raises(ConfigError, match="duplicate"):
        evaluate_robustness(clf, x, y, [("fgsm", {}), ("fgsm", {})], [0.1], quiet=True)
    with pytest.raises(DataError):
        evaluate_robustness(clf, x, y[:5], ATTACKS, [0.1], quiet=True)


def test_spike_inputs_through_engine():
    from neurodeploy.attacks.toy import train_digits_snn

    sp = load_digits_split()
    g = torch.Generator().manual_seed(0)
    T = 4
    xs = (sp.train.x[:400].unsqueeze(0) > torch.rand(T, 400, 1, 8, 8, generator=g)).float()
    clf = train_digits_snn("spikes", num_steps=T, epochs=2, x=xs, y=sp.train.y[:400])
    xt = (sp.test.x[:24].unsqueeze(0) > torch.rand(T, 24, 1, 8, 8, generator=g)).float()
    yt = sp.test.y[:24]
    res = evaluate_robustness(clf, xt, yt, [("spike-g2s", {"n_iter": 5}), ("square", {"n_queries": 30})],
                              [3, 30], quiet=True)
    for e in (3.0, 30.0):
        adv = res.adversarial[e]
        assert adv.shape == xt.shape and bool(((adv == 0) | (adv == 1)).all())
        assert int((adv != xt).permute(1, 0, 2, 3, 4).reshape(24, -1).sum(1).max()) <= e
        with torch.no_grad():
            ok = is_correct(clf(adv), yt)
        assert not (res.robust[e][0] & ~ok).any()
    with pytest.raises(ConfigError, match="ℓ0 budget"):
        evaluate_robustness(clf, xt, yt, [("spike-g2s", {})], [0.5], quiet=True)
