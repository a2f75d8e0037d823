"""The bound-guided beam (neurodeploy.verify.beam) and its attack (neurodeploy.verify.beam_attack)
against brute force on random tiny plans: a beam wide enough to keep every item finds a
flipping input exactly when one exists (its pruning drops only prefixes whose admissible
suffix bound stays below the class's threshold), every input it returns flips on the emulator,
a "proved" example has no flip; a suffix bound lowered by two spikes is caught by the same
sweep. The attack returns images in the ball that fool the deployed classifier, leaves a float
classifier's images alone, and sits last in ``auto`` only where an integer plan is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.attacks.base import make_attack
from neurodeploy.attacks.presets import escalation, preset
from neurodeploy.errors import ConfigError
from neurodeploy.verify import beam
from neurodeploy.verify.beam import beam_search
from tests.test_verify import _case
from tests.test_verify_stepbound import SEEDS, _true_margins

WIDE = 10**6


def _flips(plan, emu, lv, y, level) -> bool:
    c = emu.run(torch.as_tensor(lv.spikes(level)[:, None, :]).reshape(
        lv.num_steps, 1, *plan.input_shape), record=False).logits
    return int(c.argmax(1)) != y


def _sweep(width: int = WIDE) -> dict[str, int]:
    """Counts of the outcomes over the tiny cases; asserts soundness on every case."""
    seen = {"ran": 0, "flip": 0, "missed": 0, "proved": 0}
    for seed in SEEDS:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth = _true_margins(plan, emu, lv, y)
        theta = (np.arange(truth.size) > y).astype(np.int64)
        flippable = bool(np.any(np.delete(truth - theta, y) >= 0))
        out = beam_search(plan, lv, y, width)
        if not out.ran:
            continue
        seen["ran"] += 1
        assert not (out.proved and flippable), seed
        if out.level is not None:
            assert _flips(plan, emu, lv, y, out.level), seed
            seen["flip"] += 1
        seen["missed"] += flippable and out.level is None
        seen["proved"] += out.proved
    return seen


def test_a_wide_beam_finds_a_flip_exactly_when_one_exists() -> None:
    seen = _sweep()
    assert seen["missed"] == 0
    assert seen["ran"] >= 100 and seen["flip"] >= 15 and seen["proved"] >= 10, seen


def test_a_suffix_bound_below_the_truth_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = beam._forward_backward

    def low(gains, j):
        F, H = real(gains, j)
        return F, [h - 2 for h in H]

    monkeypatch.setattr(beam, "_forward_backward", low)
    monkeypatch.setattr(beam, "PHASES", (False,))
    assert _sweep()["missed"] >= 1


def test_narrow_beams_stay_sound_and_the_step_gate_skips() -> None:
    assert _sweep(width=1)["ran"] >= 100          # soundness asserted inside
    plan, emu, x, u, y, eps, lv = next(c for c in map(_case, SEEDS)
                                        if beam.step_free_bits(c[-1]).max() > 0)
    assert not beam_search(plan, lv, y, max_step_bits=0).ran


def _deployed(seed: int):
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.encoding import KnownDrawEncoder
    from neurodeploy.sims.twin import HardwareTwin

    plan, emu, x, u, y, eps, lv = _case(seed)
    T = lv.num_steps
    ut = torch.as_tensor(u).reshape(T, 1, *plan.input_shape)
    clf = DeployedClassifier(emu, HardwareTwin(plan), KnownDrawEncoder(T, ut))
    xt = torch.as_tensor(x).reshape(1, *plan.input_shape)
    return plan, emu, clf, xt, torch.tensor([y]), eps, lv, ut


def test_the_attack_fools_the_deployed_classifier_inside_the_ball() -> None:
    fooled = 0
    for seed in SEEDS:
        plan, emu, clf, x, y, eps, lv, u = _deployed(seed)
        with torch.no_grad():
            if int(clf(x).argmax(1)) != int(y):
                continue
        out = beam_search(plan, lv, int(y), WIDE)
        if out.level is None:
            continue
        adv = make_attack("bound-beam", width=WIDE).perturb(clf, x, y, eps)
        assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            assert int(clf(adv).argmax(1)) != int(y), seed
        fooled += 1
        if fooled >= 5:
            break
    assert fooled >= 5


def test_the_attack_needs_the_known_draw_and_skips_the_float_side(known_digits) -> None:
    model, clf, x, y = known_digits
    adv = make_attack("bound-beam").perturb(clf, x[:4], y[:4], 0.1)
    assert torch.equal(adv, x[:4])                   # no integer plan: images unchanged
    for bad in ({"width": 0}, {"max_step_bits": -1}, {"near_gate": -1.0}, {"norm": "l2"}):
        with pytest.raises(ConfigError):
            make_attack("bound-beam", **bad)


def test_auto_ends_with_the_beam_where_a_plan_is() -> None:
    specs = preset("auto", stochastic=False, plan=True)
    assert specs[-1][0] == "bound-beam" and specs[-1][1]["width"] == 200
    assert specs[-1][1]["near_gate"] == 9.0
    assert all(s[0] != "bound-beam" for s in preset("auto", stochastic=False))
    assert all(s[0] != "bound-beam" for s in preset("auto-demo", stochastic=False, plan=True))
    assert all(s[0] != "bound-beam" for s in preset("auto", stochastic=True, plan=True))
    esc = escalation(2, known_draw=True, plan=True)
    assert [s[1]["width"] for s in esc if s[0] == "bound-beam"] == [800]
    assert all(s[0] != "bound-beam" for s in escalation(2, known_draw=True))
