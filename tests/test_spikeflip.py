"""The spike-flip search of the known-draw spike set (issue 21): proposals, acceptance,
strength against APGD, its place in ``auto``, the ``flips_beat_apgd`` masking check and the
deployed side (emulator forward, twin gradient)."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks.masking import run_masking_checks
from neurodeploy.attacks.presets import FLIPS, escalation, preset
from neurodeploy.attacks.spikeset import SpikeSetConfig, _proposals, spike_set_search
from neurodeploy.classifier import SNNClassifier
from neurodeploy.encoding import KnownDrawEncoder, SpikePassThrough
from neurodeploy.errors import ConfigError


@pytest.fixture(scope="module")
def known(known_digits):
    return known_digits


def test_proposals_move_exactly_the_top_k_positive_non_tabu_pixels():
    j = torch.tensor([[0, 1, 2, 3, 0]])
    gain = torch.tensor([[5.0, -1.0, 3.0, 4.0, 0.0]])
    jbest = torch.tensor([[2, 0, 0, 1, 4]])
    tabu = torch.tensor([[False, False, False, True, False]])
    cands, top = _proposals(j, gain, jbest, tabu, (4, 2, 1))
    # pixel 3 is tabu; ranking 0 (5.0), 2 (3.0), 4 (0.0: not positive), 1 (-1)
    assert top[0, :2].tolist() == [0, 2]
    assert cands[0, 0].tolist() == [2, 1, 0, 3, 0]  # k=4: pixels 0 and 2 (the others gain ≤ 0)
    assert cands[1, 0].tolist() == [2, 1, 0, 3, 0]  # k=2
    assert cands[2, 0].tolist() == [2, 1, 2, 3, 0]  # k=1: pixel 0 only


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="objective"):
        SpikeSetConfig(objective="hinge")
    with pytest.raises(ConfigError, match="k must"):
        SpikeSetConfig(k=0)
    with pytest.raises(ConfigError, match="kick"):
        SpikeSetConfig(kick=0.0)


@pytest.mark.parametrize("objective", [
    "mix", pytest.param("cw", marks=pytest.mark.long), pytest.param("ce", marks=pytest.mark.long)])
def test_search_returns_ball_images_whose_spikes_fool_the_exact_forward(known, objective):
    model, clf, x, y = known
    eps = 0.1
    u = clf.encoder.uniform(x)
    spk = SNNClassifier(model, SpikePassThrough(5))
    spk.aux_logits = "membrane"
    cfg = SpikeSetConfig(n_iter=30, n_restarts=2, k=16, objective=objective,
                         grad_mode="bptt:fast_sigmoid:10")
    x_adv, spikes, fooled = spike_set_search(model, x, y, u, eps, torch.Generator().manual_seed(3),
                                             cfg, spk, count_scale=5.0)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal((x_adv.unsqueeze(0) > u).float(), spikes)
    with torch.no_grad():
        assert torch.equal(fooled, clf(x_adv).argmax(1) != y)
    assert int(fooled.sum()) >= 3, int(fooled.sum())


@pytest.mark.long
def test_flips_break_what_apgd_leaves_robust(known):
    """On this model APGD-CE with the cascade's main gradient leaves points robust that the
    flip search breaks; and the flip search alone breaks at least as many points as APGD-CE."""
    model, clf, x, y = known
    eps = 0.1
    gen = torch.Generator().manual_seed(0)
    main = {"grad_mode": "bptt:fast_sigmoid:5", "input_grad": "sigmoid:50", "loss_on": "membrane"}
    xa = make_attack("apgd-ce", n_iter=50, **main).perturb(clf, x, y, eps, gen)
    xf = make_attack("spike-set", n_iter=60, n_restarts=2, grad_mode="bptt:fast_sigmoid:5",
                     objective="ce").perturb(clf, x, y, eps, gen)
    with torch.no_grad():
        ba, bf = clf(xa).argmax(1) != y, clf(xf).argmax(1) != y
    assert int(bf.sum()) >= int(ba.sum()), (int(bf.sum()), int(ba.sum()))
    assert int((bf & ~ba).sum()) >= 1


def test_auto_runs_flips_with_several_surrogates_cheap_first():
    specs = preset("auto", stochastic=False)
    labels = [s[2] for s in specs]
    flips = [s for s in specs if s[0] == "spike-set" and not s[1].get("near_gate")]
    slopes = {p["grad_mode"] for _, p, _ in flips}
    assert slopes == {f"bptt:fast_sigmoid:{k}" for k in (5, 10, 20)}
    near = [s for s in specs if s[0] == "spike-set" and s[1].get("near_gate")]
    assert [p["grad_mode"] for _, p, _ in near] == ["bptt:fast_sigmoid:10",
                                                    "bptt:fast_sigmoid:25",
                                                    "bptt:fast_sigmoid:20"]  # the tie search
    assert labels.index("square") < labels.index(near[0][2]) < labels.index("spike-block")
    assert {p["objective"] for _, p, _ in flips} == {"ce", "cw", "mix"}
    # the first flip search runs right after the APGD-25 sweep, before the 100-iteration runs
    assert labels.index("spike-set") < labels.index("apgd-ce") < labels.index("apgd-t")
    assert max(specs.index(s) for s in flips) < labels.index("apgd-t")
    assert all(p["n_iter"] >= 100 for _, p, _ in flips)
    # the late searches are the small-k, long ones (they closed the eps 0.05 gap)
    late = [p for _, p, lab in flips if lab != "spike-set"]
    assert [(p["k"], p["n_iter"]) for p in late] == [(32, 200), (16, 400)]
    demo = [s for s in preset("auto-demo", stochastic=False) if s[0] == "spike-set"]
    assert [s[2] for s in demo] == [f[0] for f in FLIPS[:2]]
    assert not [s for s in preset("auto", stochastic=True) if s[0] == "spike-set"]
    esc = [s for s in escalation(1, known_draw=True) if s[0] == "spike-set"]
    assert len(esc) == len(flips) + len(near)
    assert [p["n_iter"] for _, p, _ in esc] == [2 * p["n_iter"] for _, p, _ in flips + near]
    assert [p.get("near_gate", 0) for _, p, _ in esc[-3:]] == [3.0, 3.0, 1.0]
    assert not [s for s in escalation(1) if s[0] == "spike-set"]
    for name, params, _ in specs + esc:
        make_attack(name, **params)


def test_flip_check_flags_a_gradient_that_misses(known):
    """``flips_beat_apgd`` fails when APGD's gradient is useless (a rectangle surrogate so
    narrow that no membrane falls in it) and the flips break the points it left robust; it is
    skipped where no map is known."""
    model, clf, x, y = known
    kw = {"n_iter": 5, "square_queries": 10, "eps_sweep": [0.1], "fd_directions": 2,
          "flip_iter": 40}
    res = {c.name: c for c in run_masking_checks(
        clf, x, y, 0.1, attack_params={"grad_mode": "bptt:rect:0.0001"}, **kw)}
    c = res["flips_beat_apgd"]
    assert not c.passed
    assert c.numbers["flips_broke"] > 0.2 * c.numbers["apgd_robust"] > 0
    unknown = SNNClassifier(model, seed=0)
    res = {c.name: c for c in run_masking_checks(unknown, x, y, 0.1, draws=1, eot_iter=1, **kw)}
    assert res["flips_beat_apgd"].passed and "skipped" in res["flips_beat_apgd"].numbers


@pytest.mark.long
def test_deployed_search_accepts_on_the_emulator(known):
    """The audit's deployed spike-set (emulator forward, twin gradient) runs the same search
    with the preset's parameters: its images fool the emulator on the host spikes."""
    from neurodeploy.audit.deployed import DeployedClassifier, deployed_spike_set
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.twin import HardwareTwin

    model, clf, x, y = known
    plan = compile_model(model, profile="loihi2")
    emu, twin = Emulator(plan), HardwareTwin(plan)
    u = clf.encoder.u
    dep = DeployedClassifier(emu, twin, KnownDrawEncoder(5, u))
    with torch.no_grad():
        ok = dep(x).argmax(1) == y
    _, params, label = [s for s in preset("auto-demo", stochastic=False) if s[0] == "spike-set"][1]
    atk = deployed_spike_set(params, label)
    assert atk.config.objective == "mix" and atk.config.grad_mode == "bptt:fast_sigmoid:10"
    x_adv = atk.perturb(dep, x, y, 0.1, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    counts = emu.run((x_adv.unsqueeze(0) > u).float(), record=False).counts.float()
    fooled = (counts.argmax(1) != y) & ok
    assert int(fooled.sum()) >= 3, int(fooled.sum())
