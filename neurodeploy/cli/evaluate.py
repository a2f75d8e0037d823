"""``neurodeploy evaluate``: clean accuracy of a checkpoint on a dataset's test split.

A neurodeploy checkpoint carries its config (and the data source it was trained on, used when
``--data`` is not given). A plain state dict (certify_snn's ``.pth.tar``) needs ``--arch``;
its weighted layers are matched in order (:func:`neurodeploy.models.import_state_dict`).
"""

from __future__ import annotations

import argparse

from neurodeploy.cli.argtypes import positive_float, positive_int, unit_float
from neurodeploy.cli.common import add_common
from neurodeploy.cli.train import set_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="clean accuracy of a checkpoint",
        description="Evaluate a checkpoint's clean accuracy on the test split of a dataset "
        "and print it (optionally write a JSON result with --out).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="neurodeploy checkpoint or plain state dict")
    p.add_argument(
        "--data",
        default=None,
        help="'digits', an IDX or N-MNIST folder (default: the checkpoint's data)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "train", "all"),
        help="which part of the data; 'all' = train then test (for a t10k-only MNIST "
        "folder: the whole official test set)",
    )
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N samples")
    p.add_argument(
        "--arch", default=None, help="architecture for a plain state dict, e.g. FC512-FC256-FC10"
    )
    p.add_argument("--steps", type=positive_int, default=10, help="T for a plain state dict")
    p.add_argument("--alpha", type=unit_float, default=0.25, help="α for a plain state dict")
    p.add_argument("--theta", type=positive_float, default=0.25, help="θ for a plain state dict")
    p.add_argument(
        "--readout",
        default="rate",
        choices=("count", "rate", "membrane"),
        help="readout for a plain state dict",
    )
    p.add_argument(
        "--encoding",
        default=None,
        choices=("bernoulli", "direct", "spikes"),
        help="input coding for a plain state dict (default bernoulli, spikes for events)",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="number of random draws (seeds SEED, SEED+1, …); accuracy is their mean",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="samples per forward pass")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often fastest for "
        "small models on a shared machine)",
    )
    add_common(p, out_help="result file (JSON; without it the result is only printed)")
    p.set_defaults(func=run)


def concat(split):
    """Train followed by test, as one dataset."""
    import torch

    from neurodeploy.data.core import Dataset

    dim = 1 if split.train.time_first else 0
    return Dataset(
        torch.cat([split.train.x, split.test.x], dim),
        torch.cat([split.train.y, split.test.y]),
        f"{split.train.name}+test",
        split.train.num_classes,
        split.train.time_first,
    )


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.cli.common import resolve_device
    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import CheckpointError, ConfigError
    from neurodeploy.evaluation import evaluate
    from neurodeploy.models import (
        CHECKPOINT_FORMAT,
        ModelConfig,
        _read,
        import_state_dict,
        load_checkpoint,
    )
    from neurodeploy.training.metrics import write_json_atomic

    rec = _read(args.model)
    is_ours = isinstance(rec, dict) and rec.get("format") == CHECKPOINT_FORMAT
    if not is_ours and args.arch is None:
        raise CheckpointError(
            f"{args.model}: not a neurodeploy checkpoint; give --arch (e.g. FC512-FC256-FC10) "
            f"to import it as a plain state dict"
        )
    extra = rec.get("extra", {}) if is_ours else {}
    source = args.data or extra.get("data_source") or "digits"
    steps = rec["config"]["num_steps"] if is_ours else args.steps
    split = load_dataset(source, num_steps=steps)
    data = {"test": split.test, "train": split.train}.get(args.split) or concat(split)
    data = data.subset(args.limit)
    if is_ours:
        model, _ = load_checkpoint(args.model)
    else:
        encoding = args.encoding or ("spikes" if data.time_first else "bernoulli")
        config = ModelConfig(
            args.arch,
            data.input_shape,
            num_steps=steps,
            alpha=args.alpha,
            theta=args.theta,
            readout=args.readout,
            encoding=encoding,
        )
        model = import_state_dict(args.model, config)
    if tuple(model.config.input_shape) != tuple(data.input_shape):
        raise ConfigError(
            f"shape mismatch: the model expects inputs {tuple(model.config.input_shape)}, "
            f"data {data.name} has {tuple(data.input_shape)}"
        )
    if data.time_first and model.config.encoding != "spikes":
        raise ConfigError(
            f"data {data.name} are spikes but the model uses {model.config.encoding!r} encoding"
        )
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    clf = SNNClassifier(model, seed=args.seed).to(resolve_device(args.device))
    res = evaluate(
        clf, data, args.batch_size, range(args.seed, args.seed + args.seeds), quiet=args.quiet
    )
    print(
        f"accuracy {100 * res.accuracy:.2f} % on {res.total} samples of {data.name} "
        f"(seeds {list(res.seeds)}; per seed "
        f"{', '.join(f'{100 * a:.2f}' for a in res.per_seed_accuracy)})"
    )
    if args.out:
        write_json_atomic(
            args.out,
            {
                "model": str(args.model),
                "data": source,
                "model_config": model.config.to_dict(),
                **res.to_dict(),
            },
        )
    return 0
