"""``neurodeploy certify``: verified robust error (S-IBP / S-CROWN / α-S-CROWN) of a checkpoint.

Example (the certified-training paper's reference model, all 10,000 MNIST test images)::

    neurodeploy certify --model ../shared/reference_models/certify_snn/FC_T_3_eps_0.06.pth.tar \\
        --arch FC512-FC256-FC10 --data ../shared/data/mnist --split all \\
        --eps 0.06 --cert-steps 10 --method ibp,crown --draws 3 --out cert.json

A sample is verified when every margin lower bound r_y − r_j (rates over the T' certified
steps) is > 0. For Bernoulli-coded digital inputs the perturbation set is the ℓ∞ ball of
half-width ε coded with one shared uniform map per draw (the paper's convention), so the
result depends on the draw: ``--draws N`` repeats with seeds seed … seed+N−1 and reports the
mean and the spread. Spike inputs use certify_snn's random flip set (each position flippable
with probability ε). Prints a table (method × verified error, clean accuracy) and writes JSON
atomically with ``--out``.

Scale-out: ``--workers N`` (local Ray) or ``--ray-address ADDR`` shard the samples × draws
into tasks of ``--shard-size`` samples, each seeded from its own indices; ``--shard-size``
alone runs the same tasks serially, with identical numbers. With ``--out FILE`` finished
shards checkpoint to ``FILE.shards/`` and a killed run resumes from them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from neurodeploy.cli.argtypes import nonneg_int, positive_int, unit_float
from neurodeploy.cli.common import add_common, progress_disabled, resolve_device
from neurodeploy.scale.cli import add_scale_args, scale_options, shard_dir_for


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "certify",
        help="verified robust error with S-IBP / S-CROWN bounds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help="neurodeploy checkpoint, or a plain state dict with --arch "
                        "(needed unless --plan is given)")
    p.add_argument("--arch", default=None,
                   help="architecture for plain state dicts (e.g. FC512-FC256-FC10)")
    p.add_argument("--input-shape", default=None,
                   help="input shape for --arch, e.g. 1,28,28 (default: the data's)")
    p.add_argument("--readout", default="rate", help="readout for --arch models (count|rate)")
    p.add_argument("--encoding", default="bernoulli", help="encoding for --arch models")
    p.add_argument("--steps", "--num-steps", dest="num_steps", type=positive_int, default=10, help="time steps T for --arch models")
    p.add_argument("--data", default="digits", help="digits, or a folder with IDX files")
    p.add_argument("--split", default="test", choices=("test", "train", "all"),
                   help="which part of the data (all = train then test, in file order)")
    p.add_argument("--eps", type=unit_float, required=True,
                   help="ℓ∞ half-width in [0, 1] (digital) or flip probability (spikes)")
    p.add_argument("--cert-steps", type=positive_int, default=None, help="T' (default: the model's T)")
    p.add_argument("--method", default="ibp,crown",
                   help="comma-separated: ibp, crown, alpha-crown (default ibp,crown)")
    p.add_argument("--alpha-iterations", type=nonneg_int, default=20, help="alpha-crown Adam steps")
    p.add_argument("--samples", type=positive_int, default=None, help="first N samples (default: all)")
    p.add_argument("--draws", type=positive_int, default=1, help="random draws (seeds seed … seed+N−1)")
    p.add_argument("--batch-size", type=positive_int, default=500, help="samples bounded at once")
    p.add_argument("--exact", default=None, metavar="VERIFY_JSON",
                   help="a `neurodeploy verify` JSON: print certified <= exact (certify's own "
                        "draws: a comparison of rates, not per example)")
    add_common(p, out_help="result file (JSON; without it the result is only printed)")
    add_scale_args(p)
    from neurodeploy.cli.certify_plan import add_plan_args

    add_plan_args(p)
    p.set_defaults(func=run)


def _shape(text: str | None) -> tuple[int, ...] | None:
    from neurodeploy.errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--input-shape {text!r}: expected integers like 1,28,28") from exc


def load_model(args: argparse.Namespace, data_shape: tuple[int, ...]) -> Any:
    from neurodeploy.models import ModelConfig, import_state_dict, load_checkpoint

    if args.arch:
        cfg = ModelConfig(args.arch, _shape(args.input_shape) or data_shape,
                          num_steps=args.num_steps, readout=args.readout, encoding=args.encoding)
        return import_state_dict(args.model, cfg)
    model, _ = load_checkpoint(args.model)
    return model


def format_table(summary: dict[str, Any]) -> str:
    rows = [f"certified  eps={summary['eps']}  T'={summary['cert_steps']}  n={summary['n']}  "
            f"draws={summary['draws']}",
            f"{'method':<12} {'verified err':>14} {'spread':>16} {'clean acc':>10} {'sec':>8}"]
    for m, r in summary["methods"].items():
        lo, hi = min(r["verified_error_per_draw"]), max(r["verified_error_per_draw"])
        rows.append(f"{m:<12} {r['verified_error']:>14.4f} {f'[{lo:.4f}, {hi:.4f}]':>16} "
                    f"{r['clean_accuracy']:>10.4f} {r['seconds']:>8.1f}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "plan", None):  # the deployed integer model (plan S-IBP)
        from neurodeploy.cli.certify_plan import run_plan

        return run_plan(args)
    if not args.model:
        from neurodeploy.errors import ConfigError

        raise ConfigError("certify needs --model (a float checkpoint) or --plan (a deployment "
                          "plan)")
    import torch
    from tqdm.auto import tqdm

    from neurodeploy.bounds.certify import METHODS, certify_many
    from neurodeploy.data.core import load_dataset
    from neurodeploy.encoding import make_generator
    from neurodeploy.errors import ConfigError
    from neurodeploy.models import library_versions
    from neurodeploy.training.metrics import write_json_atomic

    methods = tuple(m.strip().lower() for m in args.method.split(",") if m.strip())
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"--method: unknown {m!r}; choose from {sorted(METHODS)}")
    if not methods:
        raise ConfigError("--method: no method given")
    if args.eps < 0:
        raise ConfigError(f"--eps must be >= 0, got {args.eps}")
    if args.draws < 1 or (args.samples is not None and args.samples < 1):
        raise ConfigError("--draws and --samples must be >= 1")
    device = resolve_device(args.device)
    split = load_dataset(args.data)
    parts = {"test": [split.test], "train": [split.train], "all": [split.train, split.test]}
    xs = torch.cat([d.x for d in parts[args.split]])
    ys = torch.cat([d.y for d in parts[args.split]])
    if args.samples is not None:
        xs, ys = xs[: args.samples], ys[: args.samples]
    model = load_model(args, tuple(xs.shape[1:])).to(device).eval()
    data_shape = tuple(xs.shape[2:] if model.config.encoding == "spikes" else xs.shape[1:])
    if tuple(model.config.input_shape) != data_shape:
        raise ConfigError(f"shape mismatch: the model expects inputs "
                          f"{tuple(model.config.input_shape)}, data {args.data!r} has {data_shape}")
    if model.config.encoding == "spikes" and xs.dim() == len(model.config.input_shape) + 2:
        xs = xs.movedim(1, 0).contiguous()
    x, y = xs.to(device), ys.to(device)
    n = int(y.shape[0])
    opts = {"alpha-crown": {"iterations": args.alpha_iterations}}
    per: dict[str, dict[str, list[float]]] = {
        m: {"verified_error": [], "clean_accuracy": [], "seconds": []} for m in methods}
    scale = scale_options(args)
    bar = tqdm(total=n * args.draws * (1 if scale else len(methods)), desc="certify",
               disable=progress_disabled(args.quiet))
    if scale is not None:  # sharded: the same tasks serially or on Ray (neurodeploy.scale)
        from neurodeploy.scale.certify import certify_sharded

        t_wall = time.perf_counter()
        per = certify_sharded(
            model, x, y, args.eps, args.cert_steps, methods, seed=args.seed, draws=args.draws,
            batch_size=args.batch_size, method_options=opts, shard_size=scale.shard_size,
            workers=scale.workers, address=scale.address, state_dir=shard_dir_for(args.out),
            device=str(device), progress=bar.update).per_method
        t_wall = time.perf_counter() - t_wall
    for d in range(args.draws if scale is None else 0):
        for m in methods:  # one method at a time so that each gets its own timing
            t0 = time.perf_counter()
            gen = make_generator(args.seed + d, device)  # same draw for every method
            res = certify_many(model, x, y, args.eps, args.cert_steps, (m,), gen,
                               batch_size=args.batch_size, method_options=opts,
                               progress=bar.update)[m]
            per[m]["verified_error"].append(res.verified_error)
            per[m]["clean_accuracy"].append(res.clean_accuracy)
            per[m]["seconds"].append(time.perf_counter() - t0)
    bar.close()
    summary: dict[str, Any] = {
        "model": str(args.model), "data": str(args.data), "split": args.split, "n": n,
        "eps": args.eps, "cert_steps": int(args.cert_steps or model.config.num_steps),
        "draws": args.draws, "seed": args.seed,
        "convention": "verified iff every margin lower bound r_y - r_j > 0 (0 = tie = not "
                      "verified); Bernoulli l_inf set with one shared uniform map per draw",
        "methods": {},
        "versions": library_versions(),
    }
    if scale is not None:
        summary["sharding"] = {**scale.to_dict(), "wall_seconds": t_wall,
                               "seed_rule": "per task: sha256([seed, 'shard', draw, n, "
                                            "sha256(indices)]), shared by every method"}
    for m in methods:
        ve = per[m]["verified_error"]
        summary["methods"][m] = {
            "verified_error": sum(ve) / len(ve),
            "verified_error_per_draw": ve,
            "clean_accuracy": sum(per[m]["clean_accuracy"]) / len(ve),
            "seconds": sum(per[m]["seconds"]) / len(ve),
        }
    print(format_table(summary))
    if args.exact:
        from neurodeploy.verify.sandwich import exact_line

        best = min(r["verified_error"] for r in summary["methods"].values())
        print(exact_line(args.exact, "certify", 1.0 - best, args.eps, str(args.model), len(ys)))
    if args.out:
        write_json_atomic(Path(args.out), summary)
        print(f"wrote {args.out}")
        if scale is not None:  # the result is written: the shard checkpoints are done with
            import shutil

            shutil.rmtree(shard_dir_for(args.out), ignore_errors=True)
    return 0
