"""Options shared by several sub-commands (so every command spells them the same way)."""

from __future__ import annotations

import argparse
import os


def add_common(p: argparse.ArgumentParser, out: bool = True) -> None:
    """``--seed``, ``--device``, ``--quiet`` and (optionally) ``--out``."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    if out:
        p.add_argument("--out", default=None, help="output folder or file (see the command)")


def resolve_device(name: str):
    import torch

    from neurodeploy.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def progress_disabled(quiet: bool) -> bool:
    """Progress bars are off with --quiet or NEURODEPLOY_QUIET=1."""
    return quiet or os.environ.get("NEURODEPLOY_QUIET", "") == "1"
