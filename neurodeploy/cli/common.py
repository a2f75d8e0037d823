"""Options shared by several sub-commands (so every command spells them the same way)."""

from __future__ import annotations

import argparse

from neurodeploy.cli.argtypes import seed_int, steps_int

# device choice and quiet mode live in the library's runtime module (re-exported for commands)
from neurodeploy.runtime import progress_disabled, resolve_device  # noqa: F401


def add_common(p: argparse.ArgumentParser, out: bool = True, out_help: str | None = None,
               out_required: bool = False) -> None:
    """``--seed``, ``--device``, ``--quiet`` and (optionally) ``--out``, with the command's
    own words for what ``--out`` names (``out_help``) and whether it must be given."""
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    if out:
        p.add_argument("--out", default=None, required=out_required,
                       help=out_help or "output folder or file (see the command)")


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--model`` plus the options that describe a plain state dict (certify_snn's files)."""
    p.add_argument("--model", required=required, default=None,
                   help="neurodeploy checkpoint, or a plain state dict with --arch")
    g = p.add_argument_group("plain state dicts (e.g. the certify_snn checkpoints)")
    g.add_argument("--arch", default=None,
                   help="architecture of a plain state dict, e.g. FC512-FC256-FC10")
    g.add_argument("--input-shape", default=None,
                   help="input shape C,H,W (or N) of a plain state dict (default: the data's)")
    g.add_argument("--steps", type=steps_int, default=10, help="T of a plain state dict")
    g.add_argument("--alpha", type=float, default=0.25, help="α of a plain state dict")
    g.add_argument("--theta", type=float, default=0.25, help="θ of a plain state dict")
    g.add_argument("--readout", default="rate", choices=("count", "rate"),
                   help="readout of a plain state dict")


def parse_shape(text: str) -> tuple[int, ...]:
    from neurodeploy.errors import ConfigError

    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"--input-shape {text!r} is not a comma-separated list of "
                          f"integers") from exc
    if not shape or any(v <= 0 for v in shape):
        raise ConfigError(f"--input-shape {text!r} must be positive integers, e.g. 1,28,28")
    return shape


def load_model(args: argparse.Namespace, data_shape: tuple[int, ...] | None = None):
    """The model of ``--model``: a neurodeploy checkpoint, or a plain state dict described by
    ``--arch`` (input shape from ``--input-shape``, else ``data_shape``)."""
    from neurodeploy.errors import CheckpointError, ConfigError
    from neurodeploy.models import (
        CHECKPOINT_FORMAT,
        ModelConfig,
        _read,
        import_state_dict,
        load_checkpoint,
    )

    rec = _read(args.model)
    if isinstance(rec, dict) and rec.get("format") == CHECKPOINT_FORMAT:
        model, _ = load_checkpoint(args.model)
        return model
    if args.arch is None:
        raise CheckpointError(
            f"{args.model}: not a neurodeploy checkpoint; give --arch (e.g. FC512-FC256-FC10) "
            f"and --input-shape to import it as a plain state dict")
    if args.input_shape is not None:
        shape = parse_shape(args.input_shape)
    elif data_shape is not None:
        shape = tuple(data_shape)
    else:
        raise ConfigError("a plain state dict needs --input-shape (e.g. 1,28,28)")
    config = ModelConfig(args.arch, shape, num_steps=args.steps, alpha=args.alpha,
                         theta=args.theta, readout=args.readout)
    return import_state_dict(args.model, config)
