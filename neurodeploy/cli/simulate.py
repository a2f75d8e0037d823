"""``neurodeploy simulate``: run a deployment plan on a dataset with the bit-exact emulator or
in Lava, and compare it with the float model.

Inputs are the test split's first ``--samples`` images, Bernoulli-encoded once on the host with
``--seed`` (the identical spike tensor goes to the float model and to the backend); spike data
(event folders) are used as they are. Reported: backend accuracy, per-layer firing rates, and
with ``--model`` the float accuracy, the per-layer spike agreement float ↔ backend
(``mean(s_float == s_backend)`` over ``[T, B, N]``) and the prediction agreement. Printed as a
table and, with ``--out``, written atomically as JSON.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from neurodeploy.cli.common import add_common, add_model_args, load_model, progress_disabled

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a deployment plan (emulator or Lava) and compare with the float model",
        description="Run a deployment plan on a dataset's test split with the bit-exact "
        "emulator or with Lava processes; report accuracy, per-layer firing rates and, with "
        "--model, the spike agreement float ↔ backend per layer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--plan", required=True, help="deployment plan (.npz from `export`)")
    add_model_args(p, required=False)
    p.add_argument("--data", default="digits", help="'digits' or an IDX / N-MNIST folder")
    p.add_argument("--backend", default="emulator", choices=BACKENDS)
    p.add_argument("--samples", type=int, default=500, help="first N test samples")
    p.add_argument("--batch-size", type=int, default=1000, help="emulator / float batch size")
    p.add_argument("--timeout", type=float, default=3600.0, help="Lava runner timeout (s)")
    g = p.add_argument_group("a NIR file as --model (float reference: the NIR interpreter)")
    g.add_argument("--producer", default=None,
                   help="framework that wrote the .nir (default: the file's metadata, else the "
                   "plan's record of the export)")
    g.add_argument("--reset", default=None, choices=("zero", "subtract"),
                   help="reset of the .nir (default: as recorded in the plan)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurodeploy.cli.common import resolve_device
    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import ConfigError, DataError
    from neurodeploy.exporters.plan import DeploymentPlan, PlanError

    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    try:
        plan = DeploymentPlan.load(args.plan)
    except PlanError as exc:
        raise ConfigError(str(exc)) from exc
    T = plan.num_steps
    data = load_dataset(args.data, num_steps=T).test.subset(args.samples)
    if tuple(data.input_shape) != tuple(plan.input_shape):
        raise DataError(f"data {args.data!r} has samples of shape {data.input_shape}, the plan "
                        f"expects {tuple(plan.input_shape)}")
    spikes = encode(data, T, args.seed)
    device = resolve_device(args.device)
    model = _load_model(args, data, plan) if args.model else None
    report = simulate(plan, spikes, data.y, args.backend, model=model, device=device,
                      batch_size=args.batch_size, timeout_s=args.timeout,
                      quiet=progress_disabled(args.quiet))
    report.plan, report.data, report.seed = str(args.plan), str(args.data), int(args.seed)
    print(format_report(report))
    if args.out:
        from neurodeploy.training.metrics import write_json_atomic

        write_json_atomic(args.out, report.to_dict())
        print(f"wrote {args.out}")
    return 0


def encode(data, num_steps: int, seed: int):
    """Time-first binary spikes ``[T, B, …]`` (uint8): Bernoulli for images, as-is for events."""
    import torch

    from neurodeploy.encoding import BernoulliEncoder, make_generator
    from neurodeploy.errors import DataError

    if data.time_first:
        if data.num_steps != num_steps:
            raise DataError(f"spike data has T = {data.num_steps}, the plan T = {num_steps}")
        x = data.x
    else:
        x = BernoulliEncoder(num_steps)(data.x, make_generator(seed))
    if not ((x == 0) | (x == 1)).all():
        raise DataError("input spikes are not binary")
    return x.to(torch.uint8)


def _load_model(args: argparse.Namespace, data, plan=None):
    """The float model for the comparison (see :func:`neurodeploy.cli.common.load_model`); a
    ``.nir`` file runs on the NIR interpreter with the semantics the plan was compiled with."""
    from neurodeploy.errors import ConfigError

    if str(args.model).endswith(".nir"):
        from neurodeploy.exporters.nir_deploy import float_reference_for_plan

        return float_reference_for_plan(args.model, plan, producer=args.producer,
                                        reset=args.reset)
    model = load_model(args, data.input_shape)
    if model.config.encoding == "direct":
        raise ConfigError("the float model uses direct (current) input; a deployed plan takes "
                          "spikes only, so the comparison would be meaningless")
    return model


def simulate(plan, spikes, labels, backend: str, model=None, device="cpu",
             batch_size: int = 1000, timeout_s: float = 3600.0,
             quiet: bool = True) -> SimulationReport:
    """Run ``plan`` (and optionally the float ``model``) on identical ``spikes [T, B, …]``."""
    import torch
    from tqdm import tqdm

    from neurodeploy.errors import ConfigError

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    B = spikes.shape[1]
    L = len(plan.layers)
    t0 = time.perf_counter()
    meta: dict[str, Any] = {}
    if backend == "lava":
        from neurodeploy.sims.lava_env import run_lava

        res = run_lava(plan, spikes.cpu().numpy(), timeout_s=timeout_s, record_layers=True)
        layer_spikes = [torch.as_tensor(s) for s in res.layer_spikes]
        counts = torch.as_tensor(res.counts)
        meta = res.meta
    else:
        from neurodeploy.sims.emulator import Emulator

        emu = Emulator(plan, device=device)
        chunks = []
        for i in tqdm(range(0, B, batch_size), desc="emulator", disable=quiet):
            r = emu.run(spikes[:, i:i + batch_size])
            chunks.append([s.cpu() for s in r.layer_spikes])
        layer_spikes = [torch.cat([c[k] for c in chunks], 1) for k in range(L)]
        counts = layer_spikes[-1].reshape(spikes.shape[0], B, -1).sum(0, dtype=torch.int64)
    seconds = time.perf_counter() - t0
    pred_b = counts.argmax(1)
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
            for i in tqdm(range(0, B, batch_size), desc="float model", disable=quiet):
                tr = model.run(spikes[:, i:i + batch_size].to(device).float(), record=True)
                per_batch.append([s.cpu().to(torch.uint8) for s in tr.spikes])
                logits.append(tr.logits.cpu())
        float_spikes = [torch.cat([p[k] for p in per_batch], 1) for k in range(L)]
        pred_f = torch.cat(logits).argmax(1)
        report.accuracy_float = float((pred_f == y).double().mean())
        report.prediction_agreement = float((pred_f == pred_b).double().mean())
    for k, Lk in enumerate(plan.layers):
        sb = layer_spikes[k].reshape(spikes.shape[0], B, -1)
        lr = LayerReport(Lk.name, Lk.kind, Lk.out_size, float(sb.double().mean()))
        if float_spikes is not None:
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
