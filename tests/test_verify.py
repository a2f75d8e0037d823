"""Exact verification of plans (neurodeploy.verify): soundness and completeness against brute
force on random tiny plans, counterexample replay, refusal of what is not encoded, timeouts."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer
from neurodeploy.sims.emulator import Emulator, random_fc_plan
from neurodeploy.verify import UnsupportedPlan, VerifyError, cpsat_ops, verify_example
from neurodeploy.verify.exhaustive import enumerate_levels
from neurodeploy.verify.levels import check_witness, pixel_levels, witness_image

KINDS = ("lif", "talif", "sublif")


def _with_kind(plan: DeploymentPlan, kind: str, rng: np.random.Generator) -> DeploymentPlan:
    """Every hidden layer of ``plan`` as neuron ``kind`` (TA-LIF: random θ_v and NDS)."""
    layers = []
    for k, L in enumerate(plan.layers):
        if k == len(plan.layers) - 1 or kind == "lif":
            layers.append(L)
        elif kind == "talif":
            n, vth64 = L.out_size, max(int(L.vth), 1) << 6
            layers.append(dataclasses.replace(
                L, neuron="talif", neuron_params={"theta_v_shift": 10, "theta_bits": 24},
                neuron_arrays={"theta_v": rng.integers(0, 1025, n).astype(np.int32),
                               "nds": rng.integers(-vth64, vth64 + 1, (plan.num_steps, n))
                               .astype(np.int32)}))
        else:
            layers.append(dataclasses.replace(L, neuron=kind))
    out = dataclasses.replace(plan, layers=tuple(layers), raw_weights=True)
    out.validate()
    return out


def _case(seed: int):
    """A random tiny plan, example, map, label and ε (brute force stays below ~600 inputs)."""
    rng = np.random.default_rng(seed)
    T, P = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    sizes = (P, int(rng.integers(2, 6)), int(rng.integers(2, 4)))
    plan = random_fc_plan(
        rng, sizes, num_steps=T,
        weight_mode=str(rng.choice(["mixed_even", "mixed_any", "excitatory"])),
        weight_exp=int(rng.integers(-2, 8)), du=[4095, None][int(rng.integers(2))])
    plan = _with_kind(plan, KINDS[seed % 3], rng)
    x = rng.random(P).astype(np.float32)
    u = rng.random((T, P)).astype(np.float32)
    eps = float(rng.choice([0.05, 0.1, 0.2, 0.3]))
    emu = Emulator(plan)
    lv = pixel_levels(x, u, eps)
    clean = emu.run(torch.as_tensor(lv.spikes(lv.clean)[:, None, :]), record=False)
    y = int(clean.logits.argmax(1)) if rng.random() < 0.8 else int(rng.integers(sizes[-1]))
    return plan, emu, x, u, y, eps, lv


def _sweep(seeds: range, search: bool = False, twin: bool = False, enumerate_limit: int = 0
           ) -> dict[str, int]:
    """Verdicts equal brute force on every case (replays are checked inside verify)."""
    seen: dict[str, int] = {}
    for seed in seeds:
        plan, emu, x, u, y, eps, lv = _case(seed)
        truth, _ = enumerate_levels(plan, emu, lv, y)
        r = verify_example(plan, emu, x, y, u, eps, timeout=30, search=search,
                           twin=twin, enumerate_limit=enumerate_limit, search_restarts=3)
        assert r.status == ("robust" if truth else "non_robust"), (seed, r.status, r.how)
        seen[r.how] = seen.get(r.how, 0) + 1
    return seen


def test_verdicts_equal_enumeration() -> None:
    seen = _sweep(range(90))
    # the sweep must exercise the solver on both verdicts, not only interval proofs
    assert seen.get("solver", 0) >= 10 and seen.get("intervals", 0) >= 10


def test_verdicts_with_search_equal_enumeration() -> None:
    seen = _sweep(range(200, 230), search=True)
    assert seen.get("search", 0) >= 1
    _sweep(range(200, 201), search=True, twin=True)   # the twin spike-set search too
    assert _sweep(range(300, 340), enumerate_limit=10**6).get("enumeration", 0) >= 4


@pytest.mark.long
def test_verdicts_equal_enumeration_many() -> None:
    _sweep(range(1000, 1600))


def test_levels_match_sampled_images() -> None:
    """Every level a fine sample of images in the ball produces is in R_p, and every level of
    R_p has an exact witness."""
    rng = np.random.default_rng(3)
    x = rng.random(6).astype(np.float32)
    x[0], x[1] = 0.0, 1.0
    u = rng.random((7, 6)).astype(np.float32)
    u[3, 2] = u[5, 2]  # a tie: one level of pixel 2 is unreachable
    lv = pixel_levels(x, u, 0.25)
    for p in range(6):
        lo, hi = lv.bounds(p)
        grid = np.linspace(float(lo), float(hi), 4001)
        seen = {int((u[:, p].astype(np.float64) < g).sum()) for g in grid}
        assert seen <= set(lv.levels[p])
        for c in lv.levels[p]:
            level = lv.clean.copy()
            level[p] = c
            check_witness(lv, witness_image(lv, level), level)
    assert len(lv.levels[2]) < len(set(lv.levels[2]) | {int(lv.clean[2])}) + 8


def test_witness_outside_ball_is_refused() -> None:
    x = np.array([0.5], np.float32)
    u = np.array([[0.3], [0.7]], np.float32)
    lv = pixel_levels(x, u, 0.1)
    assert lv.levels == ((1,),)
    bad = np.array([0.5 + float(Fraction(1, 10)) + 1e-9])
    with pytest.raises(ValueError, match="outside"):
        check_witness(lv, bad, np.array([1]))


def _broken_sweep(monkeypatch: pytest.MonkeyPatch, attr: str, fn, verdicts: bool) -> None:
    """A broken operation is caught by the step-by-step check (and, where it changes
    decisions often enough, by the verdict sweep against brute force)."""
    monkeypatch.setattr(cpsat_ops.Ops, attr, fn)
    with pytest.raises(AssertionError):
        _step_check(range(150))
    if verdicts:
        with pytest.raises((AssertionError, VerifyError)):
            _sweep(range(300))


def test_broken_rounding_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = cpsat_ops.Ops.decay

    def floor_decay(self, x, f, d):  # floor instead of toward zero
        if x.fixed:
            return cpsat_ops.const((x.lo * f) // d) if 0 < f < d else orig(self, x, f, d)
        return self.floor_shift(self.scale(x, f), d.bit_length() - 1) if 0 < f < d else \
            orig(self, x, f, d)

    _broken_sweep(monkeypatch, "decay", floor_decay, verdicts=False)


def test_dropped_reset_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_sweep(monkeypatch, "reset", lambda self, v, s, theta, subtract, inclusive: v,
                  verdicts=True)


def test_timeout_is_unknown_never_robust(monkeypatch: pytest.MonkeyPatch) -> None:
    from ortools.sat.python import cp_model

    monkeypatch.setattr(cp_model.CpSolver, "solve", lambda self, model: cp_model.UNKNOWN)
    statuses = set()
    for seed in range(40):
        plan, emu, x, u, y, eps, lv = _case(seed)
        r = verify_example(plan, emu, x, y, u, eps, timeout=1, search=False,
                           enumerate_limit=0)
        if r.status == "robust":
            assert r.how in ("intervals", "steps")   # proved without the solver
        statuses.add(r.status)
    assert "unknown" in statuses


def test_unencoded_kind_and_field_are_refused() -> None:
    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (3, 4, 2), num_steps=3)
    x, u = np.full(3, 0.5, np.float32), np.full((3, 3), 0.4, np.float32)
    rec = dataclasses.replace(plan.layers[0], neuron="lif_delayed")
    bad = dataclasses.replace(plan, layers=(rec, plan.layers[1]))
    with pytest.raises(UnsupportedPlan, match="lif_delayed"):
        verify_example(bad, Emulator(bad), x, 0, u, 0.1, timeout=1, search=False)

    @dataclasses.dataclass(frozen=True)
    class GradedLayer(PlanLayer):
        graded_bits: int = 0

    graded = GradedLayer(**{f.name: getattr(plan.layers[0], f.name)
                            for f in dataclasses.fields(PlanLayer)}, graded_bits=3)
    bad = dataclasses.replace(plan, layers=(graded, plan.layers[1]))
    with pytest.raises(UnsupportedPlan, match="graded_bits"):
        verify_example(bad, Emulator(plan), x, 0, u, 0.1, timeout=1, search=False)


def _fix_levels(enc, lv, level) -> None:
    for p, bits in enumerate(enc.therm):
        for i, b in enumerate(bits):
            enc.ops.model.add(b == int(level[p] >= lv.levels[p][i + 1]))


def _value(solver, val) -> int:
    return int(val.expr) if isinstance(val.expr, int) else int(solver.value(val.expr))


def _step_check(seeds) -> int:
    """With the input levels fixed, the model's only solution must hold the emulator's
    pre-reset voltage and spike of every neuron at every step; returns the values checked."""
    from ortools.sat.python import cp_model

    from neurodeploy.verify.intmodel import encode

    checked = 0
    for seed in seeds:
        plan, emu, x, u, y, eps, lv = _case(seed)
        rng = np.random.default_rng(seed)
        level = np.array([r[int(rng.integers(len(r)))] for r in lv.levels])
        tr = emu.run(torch.as_tensor(lv.spikes(level)[:, None, :]), record=True, record_v=True)
        enc = encode(plan, lv, None)
        _fix_levels(enc, lv, level)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        assert solver.solve(enc.ops.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE), seed
        for k, (spikes, volts) in enumerate(enc.layers):
            got_s = np.array([[_value(solver, s) for s in row] for row in spikes])
            got_v = np.array([[_value(solver, v) for v in row] for row in volts])
            assert np.array_equal(got_v, tr.v[k][:, 0].numpy().astype(np.int64)), seed
            assert np.array_equal(got_s, tr.spikes[k][:, 0].numpy().astype(np.int64)), seed
            checked += got_v.size
    return checked


@pytest.mark.parametrize("kind", KINDS)
def test_encoding_equals_emulator_step_by_step(kind: str) -> None:
    """Every neuron-step of the model equals the emulator's, per neuron kind."""
    seeds = range(KINDS.index(kind), 150, 3)   # _case's kind is KINDS[seed % 3]
    assert _case(seeds[0])[0].layers[0].neuron == kind
    assert _step_check(seeds) > 300


@pytest.mark.long
def test_milp_translation_equals_enumeration() -> None:
    """The HiGHS translation of the same model (the solver comparison) decides as brute force."""
    from neurodeploy.verify.intmodel import encode
    from neurodeploy.verify.to_milp import solve_highs_subprocess

    checked = 0
    for seed in range(60):
        plan, emu, x, u, y, eps, lv = _case(seed)
        enc = encode(plan, lv, y)
        if not enc.targets or "lin_max" in str(enc.ops.model.proto):  # no translation
            continue
        truth, _ = enumerate_levels(plan, emu, lv, y)
        status, _ = solve_highs_subprocess(enc.ops.model, 30)
        assert status == ("robust" if truth else "non_robust"), seed
        checked += 1
    assert checked >= 10


def test_unencoded_format_field_is_refused() -> None:
    from neurodeploy.exporters.profiles import FixedPointFormat

    @dataclasses.dataclass(frozen=True)
    class GradedFormat(FixedPointFormat):
        graded_spike_bits: int = 0

    rng = np.random.default_rng(1)
    plan = random_fc_plan(rng, (3, 4, 2), num_steps=3)
    fmt = GradedFormat(**dataclasses.asdict(plan.fixed_point), graded_spike_bits=4)
    bad = dataclasses.replace(plan, fixed_point=fmt)
    x, u = np.full(3, 0.5, np.float32), np.full((3, 3), 0.4, np.float32)
    with pytest.raises(UnsupportedPlan, match="graded_spike_bits"):
        verify_example(bad, Emulator(plan), x, 0, u, 0.1, timeout=1, search=False)
    ok = dataclasses.replace(plan, fixed_point=GradedFormat(**dataclasses.asdict(
        plan.fixed_point)))   # the new field at its default: nothing changes, accepted
    verify_example(ok, Emulator(plan), x, 0, u, 0.1, timeout=1, search=False)
