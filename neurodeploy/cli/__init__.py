"""``neurodeploy`` command line: one sub-command per module in this package.

Each module ``neurodeploy/cli/<name>.py`` defines ``register(subparsers) -> None`` which adds
its sub-parser and sets ``func=<callable(args) -> int>`` as default. Errors derived from
:class:`~neurodeploy.errors.NeurodeployError` become a one-line ``error: …`` on stderr and the
error's exit code; other exceptions give exit 1. ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from neurodeploy import __version__

# Order = order in --help. A module that is absent is simply not offered.
COMMAND_MODULES = (
    "train",
    "evaluate",
    "export",
    "simulate",
    "attack",
    "certify",
    "audit",
    "pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurodeploy",
        description="Train robust SNNs, deploy them to Loihi-style fixed point through NIR and "
        "Lava, and re-attack the deployed model.",
    )
    parser.add_argument("--version", action="version", version=f"neurodeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"neurodeploy.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"neurodeploy.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from neurodeploy.errors import NeurodeployError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NeurodeployError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last-resort one-liner; --debug shows the traceback
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
