"""``neurodeploy train``: train an SNN (optionally with a defense) and write checkpoints.

The options build the same config dict as a pipeline TOML file and go through
:func:`neurodeploy.pipeline.train_from_config`, so ``train`` and the pipeline's train stage
are one code path.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from neurodeploy.cli.argtypes import (
    nonneg_float,
    positive_float,
    positive_int,
    unit_float,
)
from neurodeploy.cli.common import add_common
from neurodeploy.errors import ConfigError


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)``; the value is read as JSON when it parses (numbers,
    booleans, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"option {text!r} is not key=value")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    except RecursionError:  # nested deeper than the parser goes
        raise ConfigError(f"option {key.strip()!r}: value nested too deep") from None
    return key.strip(), parsed


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (shared by train, evaluate and pipeline)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an SNN with BPTT (and a defense)",
        description="Train an SNN with BPTT and a surrogate gradient. Writes OUT/model.pt "
        "(final), OUT/best.pt, OUT/last.pt (for --resume) and OUT/metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="digits",
        help="'digits' (embedded), an MNIST/Fashion-MNIST IDX folder or an N-MNIST folder",
    )
    p.add_argument(
        "--train-limit", type=positive_int, default=None, help="use only the first N train samples"
    )
    p.add_argument("--test-limit", type=positive_int, default=None, help="use only the first N test samples")
    p.add_argument(
        "--arch", default="FC256-FC10", help="architecture string, e.g. C32K3S2-FC128-FC10"
    )
    p.add_argument("--steps", type=positive_int, default=10, help="time steps T")
    p.add_argument("--alpha", type=unit_float, default=0.25, help="membrane decay α")
    p.add_argument("--theta", type=positive_float, default=0.25, help="firing threshold θ")
    p.add_argument(
        "--surrogate",
        default="rect",
        help="rect[:w], atan[:a], fast_sigmoid[:k], sigmoid[:k], triangle[:g]",
    )
    p.add_argument(
        "--readout",
        default="rate",
        choices=("count", "rate", "membrane"),
        help="rate = output spike count / T (CE on rates, certify_snn's choice; trains "
        "better than raw counts), count, or membrane (non-spiking output layer)",
    )
    p.add_argument(
        "--encoding",
        default=None,
        choices=("bernoulli", "direct", "spikes"),
        help="input coding (default: bernoulli for images, spikes for event data)",
    )
    p.add_argument("--neuron", default="lif", help="hidden neuron kind (lif, talif, noisy)")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=64, help="samples per optimizer step")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="optimizer (sgd uses --momentum)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    p.add_argument("--momentum", type=nonneg_float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.0, help="L2 weight decay of the optimizer")
    p.add_argument("--schedule", default="none", choices=("none", "step", "cosine"),
                   help="learning-rate schedule: constant, ×--gamma every --step-size epochs, or cosine")
    p.add_argument("--step-size", type=positive_int, default=30, help="epochs per step of --schedule step")
    p.add_argument("--gamma", type=unit_float, default=0.1, help="lr factor per step of --schedule step")
    p.add_argument(
        "--grad-clip", type=positive_float, default=None, help="max gradient norm (off by default)"
    )
    p.add_argument(
        "--defense",
        default="none",
        help="defense name, or a+b to combine (none, certified, hosnn, tgo, at, …)",
    )
    p.add_argument(
        "--defense-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="defense option (repeatable); values are read as JSON when possible",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="start from this trained checkpoint (its architecture and neuron settings; "
        "e.g. the clean LIF model that --defense hosnn converts to TA-LIF)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often fastest for "
        "small models on a shared machine)",
    )
    add_common(p, out_help="output folder: checkpoints and metrics.json (default "
               "runs/train)")
    p.set_defaults(func=run, out="runs/train")


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline config dict equivalent to the command line."""
    model: dict[str, Any] = {
        "arch": args.arch,
        "num_steps": args.steps,
        "alpha": args.alpha,
        "theta": args.theta,
        "surrogate": args.surrogate,
        "readout": args.readout,
        "neuron": args.neuron,
    }
    if args.encoding is not None:
        model["encoding"] = args.encoding
    if args.init_from is not None:
        model["init_from"] = args.init_from
    data: dict[str, Any] = {"source": args.data}
    if args.train_limit is not None:
        data["train_limit"] = args.train_limit
    if args.test_limit is not None:
        data["test_limit"] = args.test_limit
    return {
        "seed": args.seed,
        "device": args.device,
        "data": data,
        "model": model,
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "momentum": args.momentum,
            "weight_decay": args.weight_decay,
            "schedule": args.schedule,
            "step_size": args.step_size,
            "gamma": args.gamma,
            "grad_clip": args.grad_clip,
        },
        "defense": {"name": args.defense, "options": dict(map(parse_option, args.defense_opt))},
    }


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from neurodeploy.pipeline import train_from_config, validate_config

    config = validate_config(config_from_args(args), "command line")
    res = train_from_config(config, args.out, resume=args.resume, quiet=args.quiet)
    final = "n/a" if res.final_test_acc is None else f"{100 * res.final_test_acc:.2f} %"
    best = "n/a" if res.best_test_acc is None else f"{100 * res.best_test_acc:.2f} %"
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 prints the result
        return 0
    print(
        f"test accuracy {final} after {len(res.history)} epochs (best {best} at epoch "
        f"{res.best_epoch}); {res.seconds:.1f} s; model: {res.files.get('model')}"
    )
    _print_defense_eps(res.files.get("model"))
    return 0


def _print_defense_eps(model_path: Any) -> None:
    """Say the defense's training ε (e.g. fgsm-at's default 2/255), which is not the audit's
    default ε (0.05 and 0.1): a model trained at 2/255 is audited far outside its budget."""
    if not model_path:
        return
    from neurodeploy.audit.provenance import checkpoint_provenance, eps_words
    from neurodeploy.models import load_checkpoint

    prov = checkpoint_provenance(load_checkpoint(model_path)[1])
    if "defense_eps" in prov:
        print(f"defense {prov['defense']}: training ε {eps_words(prov['defense_eps'])} "
              f"(ℓ∞, images in [0, 1]); the audit's default ε are 0.05 and 0.1 — audit at the "
              f"training ε too (--eps) to see the budget the defense was trained for")
