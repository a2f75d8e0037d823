"""One integer step: the emulator and the twin run the kernel's step bodies with two
arithmetics and agree spike for spike; format rules beyond Lava's (subtract reset, ``>=``,
wrapping v) are implemented once and checked against a plain-integer loop."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.exporters.profiles import LAVA_0_10
from neurodeploy.sims.emulator import Emulator, random_fc_plan
from neurodeploy.sims.kernel import NEURON_KINDS, SYNAPSE_KINDS
from neurodeploy.sims.twin import HardwareTwin

REPO = Path(__file__).resolve().parents[1]


def _python_reference(plan, x: np.ndarray) -> list[np.ndarray]:
    """Plain Python integers, one neuron at a time (dense layers, du = decay_max)."""
    fmt = plan.fixed_point
    out = []
    h = x.astype(np.int64)
    T, B = h.shape[:2]
    for L in plan.layers:
        W = L.weights.astype(np.int64)
        N = W.shape[0]
        s_all = np.zeros((T, B, N), np.uint8)
        for b in range(B):
            v = [0] * N
            for t in range(T):
                a = W @ h[t, b].reshape(-1)
                for n in range(N):
                    u = int(a[n]) << fmt.activation_shift          # du = max: u = a << act
                    prod = v[n] * fmt.v_factor(L.dv)
                    dec = (abs(prod) >> fmt.decay_bits) * (1 if prod >= 0 else -1)
                    vn = dec + u + (int(L.bias_mant[n]) << L.bias_exp)
                    if fmt.v_overflow == "saturate":
                        vn = max(-fmt.state_max, min(fmt.state_max, vn))
                    else:
                        m = 1 << fmt.state_bits
                        vn = (vn + m // 2) % m - m // 2
                    th = int(L.vth) << fmt.threshold_shift
                    fire = vn >= th if fmt.spike_comparison == ">=" else vn > th
                    if fire:
                        vn = vn - th if fmt.reset == "subtract" else 0
                    v[n] = vn
                    s_all[t, b, n] = fire
        out.append(s_all)
        h = s_all
    return out


@pytest.mark.parametrize("rules", [
    {},
    {"reset": "subtract"},
    {"spike_comparison": ">="},
    {"reset": "subtract", "spike_comparison": ">=", "v_overflow": "wrap"},
])
def test_format_rules_emulator_equals_twin_equals_plain_integers(rules):
    rng = np.random.default_rng(7)
    plan = random_fc_plan(rng, (9, 7, 4), num_steps=9, weight_scale=80.0, vth=30, dv=700,
                          bias_exp=2, bias_max=300)
    fmt = dataclasses.replace(LAVA_0_10, **rules)
    if rules.get("v_overflow") == "wrap":   # small state: the wrap is really exercised
        fmt = dataclasses.replace(fmt, state_bits=16)
    plan = dataclasses.replace(plan, fixed_point=fmt)
    x = (rng.random((9, 6, 9)) < 0.5).astype(np.uint8)
    ref = _python_reference(plan, x)
    emu = Emulator(plan).run(torch.as_tensor(x)).layer_spikes
    twin = HardwareTwin(plan, encoding="spikes").run(torch.as_tensor(x).double()).spikes
    for r, e, t in zip(ref, emu, twin, strict=True):
        assert np.array_equal(e.numpy(), r)
        assert np.array_equal(t.detach().numpy().astype(np.uint8), r)
    assert sum(int(r.sum()) for r in ref) > 20  # the layers do spike


def test_gradients_flow_through_the_shared_step():
    rng = np.random.default_rng(8)
    plan = random_fc_plan(rng, (6, 5, 3), num_steps=6, weight_scale=10.0, vth=20, bias_max=0)
    # scale 20: the surrogate window (float units) spans ±640 v units around θ = 1280
    plan = dataclasses.replace(plan, layers=tuple(dataclasses.replace(L, scale=20.0)
                                                  for L in plan.layers))
    twin = HardwareTwin(plan, encoding="spikes")
    x = (torch.rand(6, 4, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    x.requires_grad_(True)
    sum(s.sum() for s in twin.run(x).spikes).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def test_step_bodies_live_only_in_the_kernel():
    """The emulator and the twin call the kernel's synapse and neuron kinds; neither defines
    its own decay / θ update (the numpy Lava transcription is the separate oracle)."""
    from neurodeploy.exporters.plan import LAYER_KINDS
    from neurodeploy.exporters.plan import NEURON_KINDS as PLAN_NEURONS

    # every neuron / layer kind a plan may name has its one integer step here
    assert {"lif", "talif"} <= set(NEURON_KINDS) == set(PLAN_NEURONS)
    assert set(SYNAPSE_KINDS) == set(LAYER_KINDS)
    for rel in ("sims/emulator.py", "sims/twin.py"):
        src = (REPO / rel).read_text()
        code = src.split("def reference_lava_network")[0]  # the oracle keeps its own copy
        assert "NEURON_KINDS[" in code and "SYNAPSE_KINDS[" in code
        for body in (".trunc_()", "theta_v *", "* K.theta_v", "masked_fill_"):
            assert body not in code, f"{rel} has its own step body ({body!r})"


def test_twin_and_emulator_refuse_the_same_plans():
    """One preparation for both: a negative bias exponent (which the twin once accepted while
    the emulator refused it) is refused by both, naming the field."""
    from neurodeploy.exporters.plan import PlanError

    plan = random_fc_plan(np.random.default_rng(9), (4, 3), num_steps=3)
    bad = dataclasses.replace(plan, layers=(dataclasses.replace(plan.layers[0], bias_exp=-1),))
    for build in (lambda p: Emulator(p), lambda p: HardwareTwin(p, encoding="spikes")):
        with pytest.raises(PlanError, match="bias_exp"):
            build(bad)
