"""Empirical soundness check: sample members of a perturbation set, run the exact network, and
count every value that falls outside its bound.

For ``n`` sampled input spike trains per clean input the model is run with
:meth:`~neurodeploy.models.SpikingNet.run` (``record=True``) for the T' certified steps, and
every layer's pre-reset membrane and spikes at every step are compared with the S-IBP bounds;
the margins ``r_y − r_j`` (rates over T') are compared with the lower bound of every method.

Tolerances are for floating-point rounding only (the bound and the network sum the same terms
in a different order): ``atol`` on membranes and margins; a spike outside its bound counts
unless its membrane is within ``atol`` of θ (a rounding tie at the threshold). Both are fixed
and independent of the problem size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neurodeploy.bounds.certify import input_box, margin_bounds
from neurodeploy.bounds.ibp import other_classes
from neurodeploy.bounds.perturbation import PerturbationSet


@dataclass
class SoundnessReport:
    """Violation counts (0 everywhere for a sound bound) and what was checked."""

    samples: int
    values_checked: int = 0
    membrane_violations: list[int] = field(default_factory=list)  # per layer
    spike_violations: list[int] = field(default_factory=list)  # per layer
    margin_violations: dict[str, int] = field(default_factory=dict)  # per method
    worst_margin_gap: dict[str, float] = field(default_factory=dict)  # min(true − lb)

    @property
    def total_violations(self) -> int:
        return (sum(self.membrane_violations) + sum(self.spike_violations)
                + sum(self.margin_violations.values()))

    @property
    def sound(self) -> bool:
        return self.total_violations == 0


def check_soundness(
    model,
    pset: PerturbationSet,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    samples_per_input: int,
    methods: tuple[str, ...] = ("ibp", "crown"),
    generator: torch.Generator | None = None,
    corner_fraction: float = 0.5,
    atol: float = 1e-5,
    chunk: int = 20000,
    method_options: dict | None = None,
) -> SoundnessReport:
    """Sample ``samples_per_input`` members of the set around each input and count violations."""
    with torch.no_grad():
        box = input_box(model, x, 0.0, steps, generator, pset)
        out, bounds = margin_bounds(model, box, y, methods, method_options=method_options)
        n_corner = int(round(samples_per_input * corner_fraction))
        members = torch.cat([
            pset.sample(box, samples_per_input - n_corner, generator, corners=False),
            pset.sample(box, n_corner, generator, corners=True),
        ])  # [n, T', B, *shape]
    n, _, b = members.shape[:3]
    rep = SoundnessReport(samples=n * b,
                          membrane_violations=[0] * len(bounds),
                          spike_violations=[0] * len(bounds),
                          margin_violations={m: 0 for m in methods},
                          worst_margin_gap={m: float("inf") for m in methods})
    theta = model.config.theta
    j = other_classes(y, bounds[-1].s_lo.shape[-1])
    # [T', n, B, *] → [T', n·B, *]; each sample block of size B lines up with the bounds.
    per = max(1, chunk // b)
    with torch.no_grad():
        for i in range(0, n, per):
            part = members[i:i + per]
            k_ = part.shape[0]
            seq = part.transpose(0, 1).reshape(steps, k_ * b, *part.shape[3:])
            trace = model.run(seq, record=True)
            for li, lb in enumerate(bounds):
                mem = trace.mems[li].reshape(steps, k_, b, *trace.mems[li].shape[2:])
                spk = trace.spikes[li].reshape(steps, k_, b, *trace.spikes[li].shape[2:])
                m_lo, m_hi = lb.m_lo.unsqueeze(1), lb.m_hi.unsqueeze(1)
                s_lo, s_hi = lb.s_lo.unsqueeze(1), lb.s_hi.unsqueeze(1)
                rep.membrane_violations[li] += int(
                    ((mem < m_lo - atol) | (mem > m_hi + atol)).sum())
                at_threshold = (mem - theta).abs() <= atol
                rep.spike_violations[li] += int(
                    (((spk < s_lo) | (spk > s_hi)) & ~at_threshold).sum())
                rep.values_checked += 2 * mem.numel()
            rates = trace.spikes[-1].mean(0).reshape(k_, b, -1)
            true_margin = (rates.gather(2, y.view(1, b, 1).expand(k_, b, 1))
                           - rates.gather(2, j.unsqueeze(0).expand(k_, *j.shape)))
            for m in methods:
                gap = true_margin - out[m].unsqueeze(0)
                rep.margin_violations[m] += int((gap < -atol).sum())
                rep.worst_margin_gap[m] = min(rep.worst_margin_gap[m], float(gap.min()))
                rep.values_checked += gap.numel()
    return rep
