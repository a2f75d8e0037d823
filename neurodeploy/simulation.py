"""Run a deployment plan on a dataset with the bit-exact emulator or in Lava and compare it
with the float model, on identical host spikes.

Inputs: the host encoder's spikes (:func:`neurodeploy.encoding.host_spikes`: example i of the
split draws its Bernoulli map from ``seed·1000003 + i``, whatever batch it is in — the same
spikes the audit and every replay give that example); spike data (event folders) are used as
they are. Reported (:class:`SimulationReport`): backend accuracy, per-layer firing rates, and
with a float model the float accuracy, the per-layer spike agreement float ↔ backend
(``mean(s_float == s_backend)`` over ``[T, B, N]``) and the prediction agreement.

Used by ``neurodeploy simulate`` (:mod:`neurodeploy.cli.simulate`) and the pipeline's
simulate stage (:mod:`neurodeploy.audit.stages`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neurodeploy.errors import ConfigError, DataError
from neurodeploy.runtime import progress
from neurodeploy.sims.backends import make_backend

BACKENDS = ("emulator", "lava")


@dataclass
class LayerReport:
    name: str
    kind: str
    neurons: int
    rate_backend: float
    rate_float: float | None = None
    spike_agreement: float | None = None


@dataclass
class SimulationReport:
    """What ``simulate`` measured (saved as JSON)."""

    plan: str
    backend: str
    data: str
    samples: int
    seed: int
    num_steps: int
    accuracy_backend: float
    accuracy_float: float | None = None
    prediction_agreement: float | None = None
    layers: list[LayerReport] = field(default_factory=list)
    seconds_backend: float = 0.0
    backend_meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def encode(data: Any, num_steps: int, seed: int) -> torch.Tensor:
    """Time-first binary spikes ``[T, B, …]`` (uint8) of a split: the host encoder's Bernoulli
    spikes for images (example i of the split is example index i), as they are for events."""
    from neurodeploy.encoding import host_spikes

    if data.time_first:
        if data.num_steps != num_steps:
            raise DataError(f"spike data has T = {data.num_steps}, the plan T = {num_steps}")
        x = data.x
    else:
        x = host_spikes(data.x, torch.arange(data.x.shape[0]), seed, num_steps)
    if not ((x == 0) | (x == 1)).all():
        raise DataError("input spikes are not binary")
    return x.to(torch.uint8)


def simulate(plan, spikes, labels, backend: str, model=None, device="cpu",
             batch_size: int = 1000, timeout_s: float = 3600.0,
             quiet: bool = True) -> SimulationReport:
    """Run ``plan`` (and optionally the float ``model``) on identical ``spikes [T, B, …]``
    (each through the backend contract of :mod:`neurodeploy.trace`)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    B = spikes.shape[1]
    L = len(plan.layers)
    t0 = time.perf_counter()
    meta: dict[str, Any] = {}
    runner = make_backend(backend, plan=plan, device=str(device), timeout_s=timeout_s)
    membrane = getattr(plan, "readout", "count") == "membrane"
    logits = []  # a membrane read-out predicts from Σ_t v (the trace's logits), not counts
    if backend == "lava":  # one compile, all samples in one run
        tr = runner.run(spikes.cpu(), record=True)
        layer_spikes = [s.cpu() for s in tr.spikes]
        meta = dict(tr.meta)
        meta.pop("out_v", None)
        logits.append(tr.logits.cpu())
    else:
        chunks = []
        for i in progress(range(0, B, batch_size), desc=backend, quiet=quiet):
            tr = runner.run(spikes[:, i:i + batch_size], record=True)
            chunks.append([s.cpu() for s in tr.spikes])
            logits.append(tr.logits.detach().cpu())
        layer_spikes = [torch.cat([c[k] for c in chunks], 1) for k in range(L)]
    counts = layer_spikes[-1].reshape(spikes.shape[0], B, -1).sum(0, dtype=torch.int64)
    seconds = time.perf_counter() - t0
    pred_b = torch.cat(logits, 0).argmax(1) if membrane else counts.argmax(1)
    y = torch.as_tensor(labels)[:B].cpu()
    report = SimulationReport(
        plan="", backend=backend, data="", samples=int(B), seed=0,
        num_steps=int(spikes.shape[0]),
        accuracy_backend=float((pred_b == y).double().mean()), seconds_backend=seconds,
        backend_meta=meta)
    float_spikes: list[torch.Tensor] | None = None
    if model is not None:
        model = model.to(device).eval()
        per_batch, logits = [], []
        with torch.no_grad():
            for i in progress(range(0, B, batch_size), desc="float model", quiet=quiet):
                tr = model.run(spikes[:, i:i + batch_size].to(device).float(), record=True)
                per_batch.append([s.cpu().to(torch.uint8) for s in tr.spikes])
                logits.append(tr.logits.cpu())
        # a float model whose output population does not spike (membrane read-out) records
        # the spiking layers only: compare those
        float_spikes = [torch.cat([p[k] for p in per_batch], 1)
                        for k in range(min(L, len(per_batch[0])))]
        pred_f = torch.cat(logits).argmax(1)
        report.accuracy_float = float((pred_f == y).double().mean())
        report.prediction_agreement = float((pred_f == pred_b).double().mean())
    for k, Lk in enumerate(plan.layers):
        sb = layer_spikes[k].reshape(spikes.shape[0], B, -1)
        lr = LayerReport(Lk.name, Lk.kind, Lk.out_size, float(sb.double().mean()))
        if float_spikes is not None and k < len(float_spikes):
            sf = float_spikes[k].reshape(spikes.shape[0], B, -1)
            if sf.shape != sb.shape:
                raise ConfigError(f"layer {k}: float model has {tuple(sf.shape[2:])} neurons, "
                                  f"plan layer {Lk.name} {Lk.out_size}")
            lr.rate_float = float(sf.double().mean())
            lr.spike_agreement = float((sf == sb).double().mean())
        report.layers.append(lr)
    return report


def format_report(r: SimulationReport) -> str:
    """A plain-text table of the report."""
    lines = [f"backend {r.backend}: {r.samples} samples, T = {r.num_steps}, "
             f"{r.seconds_backend:.2f} s ({r.samples / max(r.seconds_backend, 1e-9):.1f} "
             f"samples/s)",
             f"accuracy  backend {r.accuracy_backend:.4f}"
             + (f"   float {r.accuracy_float:.4f}   Δ {r.accuracy_backend - r.accuracy_float:+.4f}"
                f"   prediction agreement {r.prediction_agreement:.4f}"
                if r.accuracy_float is not None else ""),
             f"{'layer':<10}{'kind':<7}{'neurons':>8}{'rate backend':>14}{'rate float':>12}"
             f"{'spike agreement':>17}"]
    for lr in r.layers:
        rf = f"{lr.rate_float:.4f}" if lr.rate_float is not None else "-"
        ag = f"{lr.spike_agreement:.4f}" if lr.spike_agreement is not None else "-"
        lines.append(f"{lr.name:<10}{lr.kind:<7}{lr.neurons:>8}{lr.rate_backend:>14.4f}"
                     f"{rf:>12}{ag:>17}")
    return "\n".join(lines)
