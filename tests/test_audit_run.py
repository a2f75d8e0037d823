"""The audit end to end on a small trained digits model: host spikes, replay semantics,
backend rows, Lava replay equal to the emulator, report files."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.attacks.toy import train_digits_snn
from neurodeploy.audit.run import AuditConfig, host_spikes, run_audit
from neurodeploy.audit.stats import clopper_pearson, clustered_proportion_ci
from neurodeploy.data.core import load_digits_split
from neurodeploy.errors import ConfigError
from neurodeploy.exporters.compiler import compile_model
from neurodeploy.sims.emulator import Emulator
from neurodeploy.sims.lava_env import lava_available


def test_host_spikes_depend_on_example_index_not_batch():
    x = torch.rand(6, 1, 8, 8)
    idx = torch.arange(6)
    full = host_spikes(x, idx, seed=3, num_steps=5)
    part = host_spikes(x[[4, 1]], idx[[4, 1]], seed=3, num_steps=5)
    assert torch.equal(full[:, [4, 1]], part)
    other = host_spikes(x, idx, seed=4, num_steps=5)
    assert not torch.equal(full, other)
    assert set(full.unique().tolist()) <= {0.0, 1.0}


def test_audit_config_rejects_bad_eps():
    with pytest.raises(ConfigError):
        AuditConfig(eps=(0.0,))
    with pytest.raises(ConfigError):
        AuditConfig(eps=(1.5,))


def test_audit_config_rejects_bad_threat_models_and_budget():
    with pytest.raises(ConfigError, match="threat_models"):
        AuditConfig(threat_models=("guess",))
    with pytest.raises(ConfigError, match="preset_budget"):
        AuditConfig(preset_budget="huge")
    with pytest.raises(ConfigError, match="draws"):
        AuditConfig(draws=1)


def test_escalation_adds_longer_flip_searches_only_under_the_known_draw():
    """Escalation under the known draw reruns the spike-flip searches (they need the host's
    map); under the unknown draw there is no map to flip against."""
    from neurodeploy.audit.run import escalation_specs

    cfg = AuditConfig(attacks=("auto",))
    known = escalation_specs(cfg, 1, "known")
    unknown = escalation_specs(cfg, 1, "unknown")
    flips = [s for s in known if s[0] == "spike-set"]
    assert len(flips) >= 3 and not [s for s in unknown if s[0] == "spike-set"]
    assert {s[2] for s in unknown} < {s[2] for s in known}


def test_attack_specs_presets_single_configurations_and_threat_models():
    from neurodeploy.attacks.presets import preset
    from neurodeploy.audit.run import attack_specs, deployed_specs

    cfg = AuditConfig(attacks=("auto",), preset_budget="demo",
                      unknown_attacks=("auto-demo:apgd-ce", "pgd"), attack_steps=7)
    known, label = attack_specs(cfg, False, "known")
    assert label == "auto-demo"
    assert [s[2] for s in known] == [s[2] for s in preset("auto-demo", known_draw=True)]
    assert "spike-set" in [s[0] for s in known]
    unknown, label = attack_specs(cfg, True, "unknown")
    assert label == "auto-demo:apgd-ce+pgd"
    assert [s[2] for s in unknown] == ["apgd-ce", "pgd"] and unknown[1][1] == {"n_iter": 7}
    assert unknown[0][1]["n_iter"] == 50  # the auto-demo budget's main APGD-CE
    with pytest.raises(ConfigError, match="no configuration 'nope'"):
        attack_specs(AuditConfig(attacks=("auto:nope",)), False)
    with pytest.raises(ConfigError):
        attack_specs(AuditConfig(attacks=("no-such-attack",)), False)
    # the deployed side runs the same cascade, BPTR/RGA left out (named), spike-set on the chip
    dep, dropped = deployed_specs(known)
    assert len(dep) + len(dropped) == len(known)
    assert sorted(d.split(" ")[0] for d in dropped) == ["sweep:bptr", "sweep:rga"]
    assert any(getattr(a, "label", None) == "spike-set" for a in dep)


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    clf = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=4,
                           readout="rate")
    return clf.model.eval(), load_digits_split().test


def _cfg(**kw):
    base = dict(eps=(0.1,), attacks=("pgd",), attack_steps=4, eot=2, draws=3,
                square_queries=15, samples=24, lava_samples=0, seed=1, certify=False,
                masking_checks=False, masking_samples=12)
    base.update(kw)
    return AuditConfig(**base)


@pytest.fixture(scope="module")
def audited(digits_model, tmp_path_factory):
    model, test = digits_model
    cfg = _cfg(lava_samples=8 if lava_available() else 0, certify=True)
    out = tmp_path_factory.mktemp("audit")
    report = run_audit(model, test.x, test.y, "loihi2", cfg, out, quiet=True)
    return model, test, cfg, report, out


def test_audit_rows_threat_models_and_pairs(audited):
    model, test, cfg, report, out = audited
    assert report.backends() == ["float", "deployed"]
    # clean row of the deployed side = the emulator run on the host spikes, recomputed here
    plan = compile_model(model, profile="loihi2")
    n = cfg.samples
    sp = host_spikes(test.x[:n], torch.arange(n), cfg.seed, model.config.num_steps)
    emu = Emulator(plan).run(sp, record=True)
    ok_emu = torch.as_tensor(emu.layer_spikes[-1]).sum(0).argmax(1) == test.y[:n]
    assert report.clean("deployed").accuracy == pytest.approx(float(ok_emu.float().mean()))
    assert report.threat_models() == ["known draw", "unknown draw"]
    for side in ("float", "deployed"):
        known = report.lookup(side, "worst", 0.1, "known draw")
        unknown = report.lookup(side, "worst", 0.1, "unknown draw")
        assert known.n == unknown.n == n and known.draws == 1
        k = round(known.accuracy * n)
        assert known.ci95 == list(clopper_pearson(k, n))  # exact binomial
        assert unknown.draws == 3 and unknown.ci95[0] <= unknown.accuracy <= unknown.ci95[1]
        assert known.preset == "pgd" and known.accuracy <= report.clean(side).accuracy
        # the engine's record: per-example flags of exactly n samples, the threat model's draws
        rec = report.robustness[f"{side}/known"][0]
        assert rec["n_examples"] == n and rec["draws"] == 1
        # unknown draw: the kept inputs on 3 held-out draws; accuracy = their mean, the
        # interval over examples × draws
        ho = report.robustness[f"{side}/unknown"][-1]
        assert ho["round"] == "held-out" and ho["draws"] == 3 and ho["select_draws"] == 8
        flags = torch.tensor(ho["per_eps"][0]["robust_flags"]).float()
        assert flags.shape == (3, n) and unknown.accuracy == pytest.approx(float(flags.mean()))
        assert unknown.ci95 == pytest.approx(list(clustered_proportion_ci(flags)))
    # paired comparisons on the same samples: clean and each (threat model, ε)
    keys = {(c["threat_model"], c["eps"]) for c in report.comparisons}
    assert keys == {("known draw", 0.0), ("known draw", 0.1), ("unknown draw", 0.0),
                    ("unknown draw", 0.1)}
    k = report.comparison("known draw", 0.1)
    # the final worst case (after transfer from the other side) is the last record
    final = {s: report.robustness[f"{s}/known"][-1] for s in ("float", "deployed")}
    assert all(r["round"] == "transfer" for r in final.values())
    flags = {s: torch.tensor(final[s]["per_eps"][0]["robust_flags"][0]) for s in final}
    assert set(report.meta["transfer"]) == {"float/known", "deployed/known", "float/unknown",
                                            "deployed/unknown"}
    for s in final:  # the worst case never rises over round 0 (transfer only adds attacks),
        # and falls by exactly the examples the other side's final inputs broke
        r0 = torch.tensor(report.robustness[f"{s}/known"][0]["per_eps"][0]["robust_flags"][0])
        assert (flags[s] <= r0).all()
        moved = report.meta["transfer"][f"{s}/known"]["newly_broken"]["0.1"]
        assert int(r0.sum() - flags[s].sum()) == moved
    assert k["b"] == int((flags["float"].bool() & ~flags["deployed"].bool()).sum())
    assert k["c"] == int((~flags["float"].bool() & flags["deployed"].bool()).sum())
    assert k["delta"] == pytest.approx(float(flags["deployed"].float().mean()
                                             - flags["float"].float().mean()))
    # no masking checks ran: never "survived", every robust accuracy is an upper bound
    robust = [v for v in report.verdicts if v.startswith("Robust accuracy")]
    assert len(robust) == 2 and all("inconclusive" in v and "upper bound" in v for v in robust)


def test_deployed_classifier_is_emulator_forward_twin_backward(digits_model):
    from neurodeploy.attacks.grad_modes import gradient_mode
    from neurodeploy.audit.deployed import DeployedClassifier
    from neurodeploy.encoding import KnownDrawEncoder, host_uniform
    from neurodeploy.sims.twin import HardwareTwin

    model, test = digits_model
    plan = compile_model(model, profile="loihi2")
    emu, twin = Emulator(plan), HardwareTwin(plan)
    n, T = 10, model.config.num_steps
    x, y = test.x[:n].float(), test.y[:n]
    u = host_uniform(torch.arange(n), 5, T, tuple(x.shape[1:]))
    clf = DeployedClassifier(emu, twin, KnownDrawEncoder(T, u))
    assert not clf.stochastic and clf.input_domain == "box"
    with torch.no_grad():
        z = clf(x)
    want = emu.run((x.unsqueeze(0) > u).float(), record=False).counts.float()
    assert torch.equal(z, want)
    sub = torch.tensor([7, 2])
    with torch.no_grad():
        assert torch.equal(clf.select(sub)(x[sub]), want[sub])
    xg = x.clone().requires_grad_(True)
    z = clf(xg)
    assert torch.equal(z.detach(), want)
    torch.nn.functional.cross_entropy(z, y).backward()
    xt = x.clone().requires_grad_(True)
    zt = twin.run(KnownDrawEncoder(T, u)(xt)).spikes[-1].sum(0).float()
    torch.nn.functional.cross_entropy(zt, y).backward()
    assert torch.allclose(xg.grad, xt.grad)
    with gradient_mode(clf, "bptt:atan"):  # surrogate swapped on the twin, dtype kept
        xa = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(clf(xa), y).backward()
        assert xa.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="bptr"):
        with gradient_mode(clf, "bptr"):
            pass
    # the known-draw spike-set search on the deployed model: images in the ε-ball whose host
    # spikes fool the emulator
    from neurodeploy.audit.deployed import deployed_spike_set

    atk = deployed_spike_set({"n_iter": 20, "n_restarts": 1, "grad_mode": "bptt:fast_sigmoid:5"},
                             "spike-set")
    x_adv = atk.perturb(clf, x, y, 0.2, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    z_adv = emu.run((x_adv.unsqueeze(0) > u).float(), record=False).counts.float()
    clean_ok = want.argmax(1) == y
    fooled = (z_adv.argmax(1) != y) & clean_ok
    assert fooled.sum() >= 1, "spike-set found nothing at ε = 0.2"
    with torch.no_grad():
        assert torch.equal(clf(x_adv), z_adv)


def test_audit_lava_replay_matches_emulator(audited):
    _, _, _, report, _ = audited
    if not lava_available():
        pytest.skip("Lava environment (.venv-lava) not found")
    assert report.replay["lava_vs_emulator_spike_mismatches"] == 0
    assert report.replay["agree"] == report.replay["replays"] == 2 * 8  # clean + ε = 0.1
    assert "emulator ≡ Lava on 16 of 16 replays" in "\n".join(report.verdicts)
    assert all(r.backend != "lava" for r in report.accuracy)


def test_audit_report_files(audited):
    _, _, _, report, out = audited
    d = json.loads((out / "audit.json").read_text())
    assert d["format"] == "neurodeploy-audit"
    assert d["meta"]["samples"] == 24 and d["meta"]["seed"] == 1
    assert d["meta"]["budget"] == "pgd" and "attack float/known draw" in d["meta"]["stage_seconds"]
    assert len(d["layers"]) == 2 and all(0.5 < row["agreement_emulator"] <= 1 for row in d["layers"])
    assert d["layers"][0]["weight_error"] is not None
    assert "verified_error" in d["certified"]
    assert any("ε=0.1" in v for v in report.verdicts)
    assert (out / "audit.html").read_text().count("data:image/png;base64,") >= 3
    md = (out / "audit.md").read_text()
    assert "## Cascade: examples broken first by each attack" in md
    broken = sum(c for rec in d["robustness"].values() for pe in rec[0].get("per_eps", [])
                 for c in pe["broken_by_counts"].values())
    assert broken > 0 and "| float, known draw | 0 | 0.1 | pgd " in md


_VOLATILE = ("created", "git_sha", "stage_seconds", "stage_cpu_seconds", "attack_seconds", "load_average",
             "state_dir")


def _stable(path):
    d = json.loads(path.read_text())
    for k in _VOLATILE:
        d["meta"].pop(k)
    return d


def test_interrupted_audit_resumes_with_identical_results(digits_model, tmp_path, monkeypatch):
    import neurodeploy.audit.run as audit_run

    model, test = digits_model
    cfg = _cfg(attacks=("pgd", "square"))
    run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "whole", quiet=True)

    class Stop(Exception):
        pass

    def stop_after_first_side(stage):
        if stage == "float/known":
            raise Stop(stage)

    monkeypatch.setattr(audit_run, "_STAGE_HOOK", stop_after_first_side)
    with pytest.raises(Stop):
        run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "cut", quiet=True)
    (state,) = (tmp_path / "cut" / "state").iterdir()
    assert sorted(p.name for p in state.iterdir()) == ["float_known.pt"]
    stamp = (state / "float_known.pt").stat().st_mtime_ns
    assert not (tmp_path / "cut" / "audit.json").exists()
    monkeypatch.setattr(audit_run, "_STAGE_HOOK", None)
    run_audit(model, test.x, test.y, "loihi2", cfg, tmp_path / "cut", quiet=True)
    assert (state / "float_known.pt").stat().st_mtime_ns == stamp  # resumed, not recomputed
    assert _stable(tmp_path / "cut" / "audit.json") == _stable(tmp_path / "whole" / "audit.json")


def _fake_checks(fail_when):
    """A stand-in for run_masking_checks: six named checks; ``fail_when(side, grad_mode)``."""
    from neurodeploy.attacks.masking import CheckResult

    def fake(classifier, x, y, eps, *, attack_params=None, source_classifier=None, **kw):
        side = "deployed" if source_classifier is not None else "float"
        bad = fail_when(side, (attack_params or {}).get("grad_mode", "bptt"))
        return [CheckResult("whitebox_beats_blackbox", not bad, {"whitebox_best": 0.5,
                                                                 "square": 0.25 if bad else 0.75},
                            "white box 0.500 vs square " + ("0.250" if bad else "0.750")),
                CheckResult("unbounded_attack_succeeds", True, {"accuracy": 0.0}, "accuracy 0.000")]

    return fake


def test_failing_check_escalates_and_rechecks(digits_model, tmp_path, monkeypatch):
    import neurodeploy.attacks.masking as masking
    import neurodeploy.audit.run as audit_run

    model, test = digits_model
    calls = []
    monkeypatch.setattr(masking, "run_masking_checks",
                        _fake_checks(lambda side, mode: side == "deployed" and mode == "bptt"))
    monkeypatch.setattr(audit_run, "escalation_specs",
                        lambda config, level, threat: calls.append(level) or [("fgsm", {}, "esc:fgsm")])
    rep = run_audit(model, test.x, test.y, "loihi2", _cfg(masking_checks=True), tmp_path, quiet=True)
    assert len(rep.escalation) == 1 and calls == [1] * 4  # 2 sides × 2 threat models
    rnd = rep.escalation[0]
    assert rnd["trigger"] == {"deployed": ["whitebox_beats_blackbox"]}
    assert rnd["check_gradient"] == audit_run.check_gradient(_cfg(), 1) != {"grad_mode": "bptt"}
    for key, v in rnd["robust_accuracy"].items():  # both sides re-attacked, worst case absorbs
        assert v["after"]["0.1"] <= v["before"]["0.1"], key
        assert v["attacks"] == [["fgsm", {}, "esc:fgsm"]]
    dep = [c for c in rep.checks if c.backend == "deployed"]
    assert {c.round for c in dep} == {1} and all(c.passed for c in dep)
    assert {c.round for c in rep.checks if c.backend == "float"} == {0}
    assert {c.threat_model for c in rep.checks} == {"known draw", "unknown draw"}
    robust = [v for v in rep.verdicts if v.startswith("Robust accuracy")]
    # judged on its numbers (n = 24 may well leave it inconclusive), not gated by a check
    assert len(robust) == 2 and all("upper bound" not in v and "inconclusive: " not in v
                                    for v in robust)
    assert all(": robustness " in v for v in robust)
    # the final numbers are the worst case over round 0, the escalation round and the
    # transfer of the float side's final adversarial inputs (issue 20, point 4)
    after = rnd["robust_accuracy"]["deployed/known"]["after"]["0.1"]
    moved = rep.meta["transfer"]["deployed/known"]["newly_broken"]["0.1"]
    assert rep.lookup("deployed", "worst", 0.1, "known draw").accuracy == pytest.approx(
        after - moved / 24)


def test_check_failing_after_every_round_is_inconclusive(digits_model, tmp_path, monkeypatch):
    import neurodeploy.attacks.masking as masking
    import neurodeploy.audit.run as audit_run

    model, test = digits_model
    monkeypatch.setattr(masking, "run_masking_checks",
                        _fake_checks(lambda side, mode: side == "float"))
    monkeypatch.setattr(audit_run, "escalation_specs",
                        lambda config, level, threat: [("fgsm", {}, "esc:fgsm")])
    rep = run_audit(model, test.x, test.y, "loihi2",
                    _cfg(masking_checks=True, escalation_rounds=2, threat_models=("known",)),
                    tmp_path, quiet=True)
    assert [r["round"] for r in rep.escalation] == [1, 2]
    robust = [v for v in rep.verdicts if v.startswith("Robust accuracy")]
    assert len(robust) == 1
    assert ("inconclusive: check whitebox_beats_blackbox failed on side float (white box 0.500 "
            "vs square 0.250)") in robust[0]
    assert robust[0].count("(upper bound)") == 2 and "survived" not in robust[0]
    assert all(r.upper_bound for r in rep.accuracy if r.attack == "worst")


def test_pipeline_end_to_end_with_resume(tmp_path, capsys):
    """train → evaluate → export → simulate → audit into one folder, then a resume skips all."""
    from neurodeploy.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        '[data]\nsource = "digits"\ntrain_limit = 300\ntest_limit = 40\n'
        '[model]\narch = "FC32-FC10"\nnum_steps = 5\n'
        "[train]\nepochs = 2\n[evaluate]\nseeds = [0]\n"
        '[simulate]\nbackends = ["emulator", "lava"]\nlava_samples = 10\n'
        "[audit]\neps = [0.1]\nattacks = [\"fgsm\"]\nattack_steps = 2\neot = 1\ndraws = 2\n"
        "square_queries = 5\nsamples = 12\nlava_samples = 6\nmasking_checks = false\n"
    )
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(cfg), "--out", str(out), "-q"]) == 0
    state = json.loads((out / "pipeline_state.json").read_text())
    assert list(state["completed"]) == ["train", "evaluate", "export", "simulate", "audit"]
    for rel in ("train/model.pt", "export/model.nir", "export/plan.npz",
                "simulate/emulator.json", "audit/audit.json", "audit/audit.html", "audit/audit.md"):
        assert (out / rel).is_file(), rel
    sim = json.loads((out / "simulate" / "emulator.json").read_text())
    assert sim["samples"] == 40 and 0 <= sim["accuracy_backend"] <= 1
    if lava_available():
        assert json.loads((out / "simulate" / "lava.json").read_text())["samples"] == 10
    printed = capsys.readouterr().out.strip().splitlines()
    audit = json.loads((out / "audit" / "audit.json").read_text())
    # pipeline ends with the audit's verdict lines and the report's path
    assert printed[-1] == f"audit report: {out / 'audit' / 'audit.html'}"
    assert printed[-1 - len(audit["verdicts"]):-1] == audit["verdicts"]
    assert any(v.startswith("Robust accuracy at ε=0.1 (known draw, fgsm)") for v in audit["verdicts"])
    # the audit command on the trained checkpoint ends the same way
    rep = tmp_path / "audit_cli"
    assert main(["audit", "--model", str(out / "train" / "model.pt"), "--out", str(rep),
                 "--attacks", "fgsm", "--eps", "0.1", "--samples", "8", "--draws", "2",
                 "--threat-models", "known,unknown", "--lava-samples", "0", "--no-certify",
                 "--no-masking-checks", "-q"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    verdict = json.loads((rep / "audit.json").read_text())["verdicts"]
    assert printed == verdict + [f"report: {rep / 'audit.html'} (also audit.md, audit.json)"]
    stamp = (out / "audit" / "audit.json").stat().st_mtime_ns
    assert main(["pipeline", "--config", str(cfg), "--out", str(out), "--resume", "-q"]) == 0
    assert (out / "audit" / "audit.json").stat().st_mtime_ns == stamp


def test_pipeline_rejects_unknown_audit_key(tmp_path):
    from neurodeploy.pipeline import load_config

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[audit]\nepss = [0.1]\n")
    with pytest.raises(ConfigError, match="epss"):
        load_config(cfg)
