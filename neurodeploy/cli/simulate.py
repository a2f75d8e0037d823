"""``neurodeploy simulate``: run a deployment plan on a dataset with the bit-exact emulator or
in Lava, and compare it with the float model.

Inputs are the test split's first ``--samples`` images, encoded by the host encoder with
``--seed`` (:func:`neurodeploy.encoding.host_spikes`, one seeding rule: the identical spike
tensor goes to the float model and to the backend, and the audit gives example i the same
spikes); spike data
(event folders) are used as they are. Reported: backend accuracy, per-layer firing rates, and
with ``--model`` the float accuracy, the per-layer spike agreement float ↔ backend
(``mean(s_float == s_backend)`` over ``[T, B, N]``) and the prediction agreement. Printed as a
table and, with ``--out``, written atomically as JSON. The work itself is
:mod:`neurodeploy.simulation`'s.
"""

from __future__ import annotations

import argparse

from neurodeploy.cli.argtypes import positive_float, positive_int
from neurodeploy.cli.common import add_common, add_model_args, load_model, progress_disabled
from neurodeploy.simulation import (  # noqa: F401 - the library side, re-exported
    BACKENDS,
    LayerReport,
    SimulationReport,
    encode,
    format_report,
    simulate,
)


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
    p.add_argument("--backend", default="emulator", choices=BACKENDS,
                   help="bit-exact fixed-point emulator, or real Lava processes (needs .venv-lava)")
    p.add_argument("--samples", type=positive_int, default=500, help="first N test samples")
    p.add_argument("--batch-size", type=positive_int, default=1000, help="emulator / float batch size")
    p.add_argument("--timeout", type=positive_float, default=3600.0, help="Lava runner timeout (s)")
    g = p.add_argument_group("a NIR file as --model (float reference: the NIR interpreter)")
    g.add_argument("--producer", default=None,
                   help="framework that wrote the .nir (default: the file's metadata, else the "
                   "plan's record of the export)")
    g.add_argument("--reset", default=None, choices=("zero", "subtract"),
                   help="reset of the .nir (default: as recorded in the plan)")
    g.add_argument("--tau-units", default=None, choices=("seconds", "dt*tau"),
                   help="what the .nir's τ fields hold (default: as recorded in the plan, else "
                   "decided from the file)")
    add_common(p, out_help="result file (JSON; without it the report is only printed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurodeploy.cli.common import resolve_device
    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.plan import DeploymentPlan, PlanError

    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    try:
        plan = DeploymentPlan.load(args.plan)
    except PlanError as exc:
        raise ConfigError(str(exc)) from exc
    T = plan.num_steps
    data = load_dataset(args.data, num_steps=T).test.subset(args.samples)
    spikes = fit_layout(encode(data, T, args.seed), tuple(plan.input_shape), str(args.data))
    device = resolve_device(args.device)
    model = _load_model(args, data, plan) if args.model else None
    report = simulate(plan, spikes, data.y, args.backend, model=model, device=device,
                      batch_size=args.batch_size, timeout_s=args.timeout,
                      quiet=progress_disabled(args.quiet))
    report.plan, report.data, report.seed = str(args.plan), str(args.data), int(args.seed)
    print(format_report(report))
    if model is not None and hasattr(model, "graph"):  # a NIR file: why the layers drift
        report.backend_meta["fidelity"] = nir_fidelity(model.graph, plan, spikes)
    if args.out:
        from neurodeploy.training.metrics import write_json_atomic

        write_json_atomic(args.out, report.to_dict())
        print(f"wrote {args.out}")
    return 0


#: samples the per-layer cause analysis runs on (each effect reruns the float model)
FIDELITY_SAMPLES = 32


def nir_fidelity(graph, plan, spikes) -> list[dict]:
    """Print and return the per-layer agreement float ↔ emulator with its dominant cause (by
    ablation in the float interpreter, :mod:`neurodeploy.exporters.nir_fidelity`) on the
    first :data:`FIDELITY_SAMPLES` samples."""
    from neurodeploy.exporters.nir_fidelity import fidelity_report, format_fidelity

    n = min(FIDELITY_SAMPLES, int(spikes.shape[1]))
    rows = fidelity_report(graph, plan, spikes[:, :n])
    print(f"\nfidelity (emulator, first {n} samples): why each layer differs from the float model")
    print(format_fidelity(rows))
    return [r.to_dict() for r in rows]


def fit_layout(spikes, want: tuple[int, ...], data_name: str):
    """Spikes ``[T, B, *sample]`` in the plan's input shape: reshaped (C order, same values)
    when only the layout differs — as ``audit`` does for a NIR graph's Input (e.g. digits'
    (1, 8, 8) images for a graph whose Input is (64,)); refused when the sizes differ."""
    import math

    from neurodeploy.errors import DataError

    have = tuple(int(v) for v in spikes.shape[2:])
    if have == want:
        return spikes
    if math.prod(have) != math.prod(want):
        raise DataError(f"data {data_name!r} has samples of shape {have} "
                        f"({math.prod(have)} values), the plan expects {want}")
    print(f"[simulate] data samples of shape {have} reshaped to the plan's input {want} (same "
          f"values, C order)")
    return spikes.reshape(tuple(spikes.shape[:2]) + want)


def _load_model(args: argparse.Namespace, data, plan=None):
    """The float model for the comparison (see :func:`neurodeploy.cli.common.load_model`); a
    ``.nir`` file runs on the NIR interpreter with the semantics the plan was compiled with."""
    from neurodeploy.errors import ConfigError

    if str(args.model).endswith(".nir"):
        from neurodeploy.exporters.nir_deploy import float_reference_for_plan

        return float_reference_for_plan(args.model, plan, producer=args.producer,
                                        reset=args.reset, tau_units=args.tau_units)
    model = load_model(args, data.input_shape)
    if model.config.encoding == "direct":
        raise ConfigError("the float model uses direct (current) input; a deployed plan takes "
                          "spikes only, so the comparison would be meaningless")
    return model


