"""The unknown draw scored by select-then-evaluate: the attack list can change which input an
example keeps, never how often it is evaluated (issue 20, point 3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit.unknown_draw import (
    DrawScorer,
    Selection,
    attack_cascade,
    held_out,
    stream_seed,
)
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_digits_split
from neurodeploy.encoding import BernoulliEncoder, KnownDrawEncoder

N, EPS, SELECT, HOLDOUT, SEED = 16, 0.1, 4, 6, 3


class SignStep:
    """A deterministic attack: ``x + ε·sign(w)`` with a fixed direction ``w`` (seeded)."""

    def __init__(self, label: str, seed: int, scale: float = 1.0) -> None:
        self.name = self.label = label
        self.seed, self.scale = seed, scale

    def perturb(self, clf, x, y, eps, generator=None):
        w = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(self.seed))
        return (x + self.scale * eps * w.sign()).clamp(0, 1)


class NoOp:
    """A 'weaker' attack: returns its input unchanged."""

    def __init__(self, label: str) -> None:
        self.name = self.label = label

    def perturb(self, clf, x, y, eps, generator=None):
        return x.clone()

    def to_dict(self):
        return {"name": self.name}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=3,
                             readout="rate").model.eval()
    test = load_digits_split().test
    x, y = test.x[:N].float(), test.y[:N].long()
    T = model.config.num_steps
    scorer = DrawScorer(lambda u: SNNClassifier(model, KnownDrawEncoder(T, u), seed=SEED), T, SEED)
    clf = SNNClassifier(model, BernoulliEncoder(T), seed=SEED)
    return model, x, y, scorer, clf


def _score(setup, attacks) -> tuple[float, Selection]:
    _, x, y, scorer, clf = setup
    sel = Selection.start(scorer, x, y, [EPS], SELECT)
    attack_cascade(sel, clf, scorer, x, y, list(attacks), [EPS], SEED, None, "round0")
    ok = held_out(sel, scorer, y, HOLDOUT)[EPS]
    assert ok.shape == (HOLDOUT, N)  # every example: exactly HOLDOUT evaluations
    return float(ok.float().mean()), sel


def test_one_vs_eleven_attacks_same_inputs_same_number(setup):
    """PGD alone vs PGD followed by ten attacks that return their input: the kept inputs are
    the same, so is the number. The old 'broken if any replay misclassifies' scoring is not."""
    one, sel1 = _score(setup, [("pgd", {"n_iter": 5}, "pgd")])
    eleven, sel11 = _score(setup, [("pgd", {"n_iter": 5}, "pgd")]
                           + [NoOp(f"noop{k}") for k in range(10)])
    assert torch.equal(sel1.chosen[EPS], sel11.chosen[EPS])
    assert one == eleven
    assert one < 1.0  # the attack did something
    # the same lists under the engine's replay-per-attack scoring: eleven chances per draw
    _, x, y, _, clf = setup
    old = [evaluate_robustness(clf, x, y, lst, [EPS], seed=SEED, draws=3, quiet=True)
           .robust_mean(EPS) for lst in ([NoOp("noop")], [NoOp(f"noop{k}") for k in range(11)])]
    assert old[1] < old[0]


def test_held_out_draws_are_not_the_selection_draws(setup):
    """An input kept because it fooled the selection draws is still scored on fresh draws:
    the clean input's held-out score equals the clean accuracy on those draws."""
    _, x, y, scorer, _ = setup
    sel = Selection.start(scorer, x, y, [EPS], SELECT)
    ho = held_out(sel, scorer, y, HOLDOUT)[EPS]
    direct = scorer.correct(x, y, torch.arange(N), "holdout", HOLDOUT)
    assert torch.equal(ho, direct)
    sel_seeds = {stream_seed(SEED, "select", d) for d in range(SELECT)}
    ho_seeds = {stream_seed(SEED, "holdout", d) for d in range(HOLDOUT)}
    assert len(sel_seeds) == SELECT and len(ho_seeds) == HOLDOUT
    assert not sel_seeds & ho_seeds and SEED not in sel_seeds | ho_seeds  # nor the host map


POOL = [SignStep(f"sign{k}", k) for k in range(4)] + [SignStep("half0", 0, 0.5)]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4, unique=True),
       extra=st.lists(st.tuples(st.integers(0, 8), st.integers(0, len(POOL) - 1)), max_size=4))
def test_extra_attacks_change_selection_never_evaluation_chances(setup, picks, extra):
    """Over random lists: inserting no-ops and re-listed copies of listed attacks (anywhere)
    leaves the number unchanged; the kept inputs' selection rate never rises as attacks are
    added; and the score is the held-out score of the kept inputs."""
    base = [POOL[i] for i in picks]
    score, sel = _score(setup, base)
    longer = list(base)
    for k, (pos, j) in enumerate(extra):
        src = POOL[picks[j % len(picks)]]
        add = NoOp(f"noop{k}") if j % 2 else SignStep(f"copy{k}", src.seed, src.scale)
        longer.insert(pos % (len(longer) + 1), add)
    score2, sel2 = _score(setup, longer)
    assert score2 == score
    assert torch.equal(sel2.rate[EPS], sel.rate[EPS])
    # more attacks never raise a kept rate
    more, sel3 = _score(setup, base + [p for i, p in enumerate(POOL) if i not in picks])
    assert (sel3.rate[EPS] <= sel.rate[EPS]).all()
    _, x, y, scorer, _ = setup
    direct = scorer.correct(sel3.chosen[EPS], y, torch.arange(N), "holdout", HOLDOUT)
    assert more == float(direct.float().mean())
