"""The ``auto`` cascade and the known-draw spike-set search (issue 11, points 2, 3 and 9)."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.attacks import make_attack
from neurodeploy.attacks.engine import evaluate_robustness
from neurodeploy.attacks.masking import run_masking_checks
from neurodeploy.attacks.presets import escalation, expand, main_gradient, preset
from neurodeploy.attacks.spikeset import (
    SpikeSetConfig,
    _levels,
    image_of,
    spike_set_search,
    spikes_of,
)
from neurodeploy.attacks.toy import cached_digits_snn
from neurodeploy.classifier import SNNClassifier
from neurodeploy.data.core import load_digits_split
from neurodeploy.encoding import KnownDrawEncoder, SpikePassThrough
from neurodeploy.errors import ConfigError
from neurodeploy.surrogates import make_surrogate


@pytest.fixture(scope="module")
def bern(tmp_path_factory):
    clf = cached_digits_snn(str(tmp_path_factory.getbasetemp()), name="digits_bern_auto",
                            encoding="bernoulli", readout="rate", epochs=4, arch="FC64-FC10")
    test = load_digits_split().test
    n = 24
    x, y = test.x[:n], test.y[:n]
    known = SNNClassifier(clf.model, KnownDrawEncoder.from_host(list(range(n)), 0, 5, (1, 8, 8)))
    keep = known(x).argmax(1) == y  # attack the points that start correct
    idx = keep.nonzero()[:, 0]
    known = known.select(idx)
    return clf.model, known, x[idx], y[idx]


def test_level_sets_are_exactly_the_reachable_spike_trains():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 5, generator=g)
    u = torch.rand(6, 3, 5, generator=g)
    eps = 0.2
    lv = _levels(x, u, eps)
    grid = torch.linspace(0, 1, 4001)
    for b in range(3):
        for p in range(5):
            xs = grid[(grid >= x[b, p] - eps - 1e-7) & (grid <= x[b, p] + eps + 1e-7)]
            reach = {tuple((xx > u[:, b, p]).int().tolist()) for xx in xs}
            lo, hi = int(lv.jlo[b, p]), int(lv.jhi[b, p])
            levels = set()
            for j in range(lo, hi + 1):
                jj = lv.j0.clone()
                jj[b, p] = j
                levels.add(tuple(spikes_of(lv, jj)[:, b, p].int().tolist()))
            assert reach == levels  # the grid is fine enough to hit every interval here
            # and the image of each level produces exactly that level's spikes
            for j in range(lo, hi + 1):
                jj = lv.j0.clone()
                jj[b, p] = j
                img = image_of(lv, jj, x)
                assert abs(float(img[b, p] - x[b, p])) <= eps + 1e-6
                assert torch.equal((img[b, p] > u[:, b, p]).float(), spikes_of(lv, jj)[:, b, p])


def test_spike_set_returns_images_in_the_ball_with_the_reported_spikes(bern):
    model, known, x, y = bern
    eps = 0.15
    u = known.encoder.uniform(x)
    spk = SNNClassifier(model, SpikePassThrough(5))
    spk.aux_logits = "membrane"
    cfg = SpikeSetConfig(n_iter=20, n_restarts=2, grad_mode="bptt:fast_sigmoid:5")
    x_adv, spikes, fooled = spike_set_search(model, x, y, u, eps, torch.Generator().manual_seed(1),
                                             cfg, spk)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal((x_adv.unsqueeze(0) > u).float(), spikes)  # exactly the reported spikes
    assert torch.equal(fooled, known(x_adv).argmax(1) != y)
    assert fooled.any()  # the search breaks points on this small model
    # the attack wrapper refuses a classifier without a known map
    with pytest.raises(ConfigError, match="known-draw"):
        make_attack("spike-set").perturb(SNNClassifier(model, seed=0), x, y, eps)


def test_preset_structure_and_escalation():
    specs = preset("auto", stochastic=False)
    names = [s[0] for s in specs]
    labels = [s[2] for s in specs]
    assert len(set(labels)) == len(labels)
    # Square, then (known draw) the near-flip restarts and the gradient-free spike-block last
    assert names[-5:] == ["square", "spike-set", "spike-set", "spike-set", "spike-block"]
    assert specs[-5][1]["n_queries"] == 500  # gated under the known draw (late_queries)
    assert [p["n_queries"] for n, p, _ in preset("auto", stochastic=True) if n == "square"] == [1000]
    # within 3 spikes of a flip, then the tie band (1 spike) only
    assert [p.get("near_gate", 0) for _, p, _ in specs[-4:-1]] == [3.0, 3.0, 1.0]
    assert [p["n_restarts"] for _, p, _ in specs[-4:-1]] == [4, 3, 1]
    assert all(p.get("near_gate", 0) == 0 for n, p, _ in specs[:-4] if n == "spike-set")
    assert not [p for n, p, _ in preset("auto-demo", stochastic=False)
                if n == "spike-set" and p.get("near_gate")]
    assert [s[0] for s in preset("auto", stochastic=True)][-1] == "square"
    main = [s for s in specs if s[2] == "apgd-ce"][0][1]
    assert main["n_iter"] >= 100 and main["n_restarts"] >= 2
    assert "apgd-t" in names and "spike-set" in names
    sweep = [s for s in specs if s[2].startswith("sweep:")]
    assert {p["grad_mode"] for _, p, _ in sweep} >= {"bptt", "bptt:assg", "rga", "bptr"}
    assert {p["input_grad"] for _, p, _ in sweep} >= {"ste", "sigmoid:50"}
    assert {p["loss_on"] for _, p, _ in sweep} == {"readout", "membrane"}
    # unknown draw: no spike-set search (no map is known)
    assert "spike-set" not in [s[0] for s in preset("auto", stochastic=True)]
    assert [s[0] for s in preset("auto", eps_kind="binary")] == ["spike-g2s", "spike-topk", "square"]
    esc = escalation(1)
    assert all(label.startswith("esc1:") for _, _, label in esc)
    assert max(p.get("n_iter", 0) for _, p, _ in esc) >= 2 * main["n_iter"]
    esc_known = escalation(1, known_draw=True)
    assert sum(p.get("near_gate", 0) > 0 for _, p, _ in esc_known) == 3
    with pytest.raises(ConfigError):
        preset("autox")
    with pytest.raises(ConfigError):
        escalation(0)
    for name, params, _ in specs + esc:  # every spec builds
        make_attack(name, **params)


def test_ensemble_succeeds_where_the_models_narrow_surrogate_fails(bern):
    """A model whose own backward is a very narrow rectangle: attacks with its surrogate see
    almost no gradient (the zero-gradient masking check fails and names itself); the auto
    cascade's independent surrogates break it anyway, and with their gradient the check passes."""
    model, known, x, y = bern
    narrow = make_surrogate("rect:0.002")
    saved = [n.spike_fn for n in model.neurons]
    try:
        for n in model.neurons:
            if getattr(n, "kind", "") != "li":
                n.spike_fn = narrow
        _narrow_checks(known, x, y)
    finally:
        for n, fn in zip(model.neurons, saved, strict=True):
            n.spike_fn = fn


def _narrow_checks(known, x, y):
    eps = 0.1
    single = evaluate_robustness(known, x, y, [("apgd-ce", {"n_iter": 20}, "model-surrogate")],
                                 [eps], quiet=True)
    auto = evaluate_robustness(known, x, y, ["auto-demo"], [eps], quiet=True)
    acc_single, acc_auto = single.robust_mean(eps), auto.robust_mean(eps)
    assert acc_auto <= acc_single - 0.3, (acc_single, acc_auto)
    checks = {c.name: c for c in run_masking_checks(known, x, y, eps, n_iter=10, square_queries=50)}
    assert not checks["nonzero_gradients_eval"].passed
    fixed = {c.name: c for c in run_masking_checks(known, x, y, eps, n_iter=10, square_queries=50,
                                                   attack_params=main_gradient(known))}
    assert fixed["nonzero_gradients_eval"].passed
    assert expand(["auto-demo"], known)[0][2] == "sweep:fs5-sm50"
