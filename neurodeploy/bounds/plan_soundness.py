"""Soundness of the plan bounds on the real thing: sampled members of a perturbation set run
through the bit-exact emulator (which equals Lava), every recorded integer compared with its
bound — exactly, no tolerance (integers).

Checked per layer and step: spikes in ``[s_L, s_U]``, the voltage before the reset in
``[v_L, v_U]`` and after it in ``[vr_L, vr_U]``, TA-LIF θ in ``[θ_L, θ_U]``; and the count margins ``c_y − c_j`` against
their lower bound. :func:`check_plan_soundness_lava` checks the spike bounds on the chip's
global time line instead (the literal numpy transcription of the Lava network, one step of
synaptic delay per layer, staggered resets), at global step ``τ + 1 + depth_k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from neurodeploy.bounds.ibp import other_classes
from neurodeploy.bounds.perturbation import InputBox, PerturbationSet
from neurodeploy.bounds.plan_ibp import PlanBounds, plan_ibp_bounds, plan_margin_lower


@dataclass
class PlanSoundnessReport:
    samples: int
    values_checked: int = 0
    spike_violations: list[int] = field(default_factory=list)
    voltage_violations: list[int] = field(default_factory=list)
    theta_violations: list[int] = field(default_factory=list)
    margin_violations: int = 0
    worst_margin_gap: float = float("inf")

    @property
    def total_violations(self) -> int:
        return (sum(self.spike_violations) + sum(self.voltage_violations)
                + sum(self.theta_violations) + self.margin_violations)

    @property
    def sound(self) -> bool:
        return self.total_violations == 0


def sample_members(pset: PerturbationSet, box: InputBox, n: int,
                   generator: torch.Generator | None, corner_fraction: float = 0.5
                   ) -> torch.Tensor:
    """``n`` members ``[n, T', B, *shape]``: half uniform in the set, half at its corners."""
    k = int(round(n * corner_fraction))
    return torch.cat([pset.sample(box, n - k, generator, corners=False),
                      pset.sample(box, k, generator, corners=True)])


def check_plan_soundness(
    plan, pset: PerturbationSet, x: torch.Tensor, y: torch.Tensor, steps: int,
    samples_per_input: int, generator: torch.Generator | None = None,
    bounds_fn: Callable[..., PlanBounds] = plan_ibp_bounds, chunk: int = 20000,
) -> PlanSoundnessReport:
    """Sample ``samples_per_input`` members per input and count every value outside its bound
    (``bounds_fn(plan, box)`` is the bound under test)."""
    from neurodeploy.sims.emulator import Emulator

    with torch.no_grad():
        box = pset.box(x, steps, generator)
        bounds = bounds_fn(plan, box)
        lb = plan_margin_lower(bounds, y)
        members = sample_members(pset, box, samples_per_input, generator)
    n, _, b = members.shape[:3]
    L = len(bounds.layers)
    rep = PlanSoundnessReport(samples=n * b, spike_violations=[0] * L,
                              voltage_violations=[0] * L, theta_violations=[0] * L)
    emu = Emulator(plan)
    j = other_classes(y, bounds.out.s_lo.shape[-1])
    per = max(1, chunk // b)
    for i in range(0, n, per):
        part = members[i:i + per]
        k_ = part.shape[0]
        seq = part.transpose(0, 1).reshape(steps, k_ * b, *part.shape[3:])
        res = emu.run(seq, record=True, record_v=True)
        for li, lbd in enumerate(bounds.layers):
            spk = res.layer_spikes[li].reshape(steps, k_, b, -1).to(torch.int64)
            v = res.layer_v[li].reshape(steps, k_, b, -1)
            rep.spike_violations[li] += int(((spk < lbd.s_lo.unsqueeze(1))
                                             | (spk > lbd.s_hi.unsqueeze(1))).sum())
            rep.voltage_violations[li] += int(((v < lbd.vr_lo.unsqueeze(1))
                                               | (v > lbd.vr_hi.unsqueeze(1))).sum())
            pre = getattr(res, "v", ())
            if len(pre) > li:  # the emulator also records v before the reset
                vp = pre[li].reshape(steps, k_, b, -1)
                rep.voltage_violations[li] += int(((vp < lbd.v_lo.unsqueeze(1))
                                                   | (vp > lbd.v_hi.unsqueeze(1))).sum())
                rep.values_checked += vp.numel()
            rep.values_checked += 2 * spk.numel()
            th = res.layer_theta[li] if res.layer_theta else None
            if th is not None and lbd.theta_lo is not None:
                th = th.reshape(steps, k_, b, -1)
                rep.theta_violations[li] += int(((th < lbd.theta_lo.unsqueeze(1))
                                                 | (th > lbd.theta_hi.unsqueeze(1))).sum())
                rep.values_checked += th.numel()
        counts = res.out_spikes.sum(0, dtype=torch.int64).reshape(k_, b, -1)
        margin = (counts.gather(2, y.view(1, b, 1).expand(k_, b, 1))
                  - counts.gather(2, j.unsqueeze(0).expand(k_, *j.shape)))
        gap = margin - lb.unsqueeze(0)
        rep.margin_violations += int((gap < 0).sum())
        rep.worst_margin_gap = min(rep.worst_margin_gap, float(gap.min()))
        rep.values_checked += gap.numel()
    return rep


def check_plan_soundness_lava(
    plan, pset: PerturbationSet, x: torch.Tensor, steps: int, samples_per_input: int,
    generator: torch.Generator | None = None,
    bounds_fn: Callable[..., PlanBounds] = plan_ibp_bounds, use_delay: bool = True,
) -> PlanSoundnessReport:
    """Spike bounds against the literal Lava transcription on the global time line: member m
    of input b runs as its own sample (period ``T' + L + 1``); layer k's aligned bound at τ is
    compared with its global spike at step ``τ + 1 + depth_k`` (``use_delay=False`` drops the
    delay — a deliberately broken mapping, for the tests). Slow (numpy, one step at a time)."""
    from neurodeploy.sims.emulator import reference_lava_network
    from neurodeploy.sims.lava_runner import Schedule

    with torch.no_grad():
        box = pset.box(x, steps, generator)
        bounds = bounds_fn(plan, box)
        members = sample_members(pset, box, samples_per_input, generator)
    n, _, b = members.shape[:3]
    L = len(bounds.layers)
    rep = PlanSoundnessReport(samples=n * b, spike_violations=[0] * L,
                              voltage_violations=[0] * L, theta_violations=[0] * L)
    seq = members.transpose(0, 1).reshape(steps, n * b, *members.shape[3:]).numpy()
    period = steps + L + 1
    trains, sched = reference_lava_network(plan, seq.astype(np.uint8), period=period)
    assert isinstance(sched, Schedule)
    for li, lbd in enumerate(bounds.layers):
        depth = lbd.depth if use_delay else 0
        tau = np.arange(steps)
        idx = (np.arange(n * b)[None, :] * period + depth + tau[:, None])  # [T', n·b] 0-indexed
        spk = torch.as_tensor(trains[li].reshape(trains[li].shape[0], -1)[idx]
                              .astype(np.int64)).reshape(steps, n, b, -1)
        rep.spike_violations[li] += int(((spk < lbd.s_lo.unsqueeze(1))
                                         | (spk > lbd.s_hi.unsqueeze(1))).sum())
        rep.values_checked += spk.numel()
    return rep
