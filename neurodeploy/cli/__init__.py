"""``neurodeploy`` command line: one sub-command per module in this package.

Each module ``neurodeploy/cli/<name>.py`` defines ``register(subparsers) -> None`` which adds
its sub-parser and sets ``func=<callable(args) -> int>`` as default. Errors derived from
:class:`~neurodeploy.errors.NeurodeployError` become a one-line ``error: …`` on stderr and the
error's exit code (:data:`neurodeploy.errors.EXIT_CODES`); argparse's own errors (:class:`Parser`)
one line and exit 2; other exceptions give exit 1. ``--debug`` adds the traceback and keeps
the exit code.

Around every command :func:`main` also

- checks ``--out`` (a folder for train/export/audit/pipeline, a file for
  evaluate/simulate/attack/certify) before any work: the wrong kind of path, or a place where
  nothing can be written (``/proc``), is exit 2;
- holds the output's lock (:class:`neurodeploy.atomicio.OutputLock`), so two processes given
  the same ``--out`` do not write into each other: the second one stops with exit 2;
- removes temporary files that killed runs left in the output (it holds the lock, so no live
  writer owns them), and on failure the folders it created that stayed empty;
- turns SIGINT into exit 130 and SIGTERM into exit 143 with one line saying what was kept.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from neurodeploy import __version__

# Order = order in --help. A module that is absent is simply not offered.
COMMAND_MODULES = (
    "train",
    "evaluate",
    "export",
    "simulate",
    "attack",
    "certify",
    "verify",
    "audit",
    "pipeline",
    "compare",
)

#: What ``--out`` names for each command: a folder the command fills, or one result file.
OUT_KIND = {
    "compare": "dir",
    "train": "dir", "export": "dir", "audit": "dir", "pipeline": "dir",
    "evaluate": "file", "simulate": "file", "attack": "file", "certify": "file", "verify": "file",
}
#: Commands that continue an interrupted run with ``--resume``.
RESUMABLE = ("train", "attack", "pipeline")

_REST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_REST_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """reST markup of docstrings → plain text for ``--help`` (``x`` and :func:`x` → x)."""
    text = _REST_ROLE.sub(lambda m: m.group(1).split(".")[-1] if m.group(0).count("~") else
                          m.group(1), text)
    text = re.sub(r"::$", ":", _REST_LITERAL.sub(r"\1", text), flags=re.M)
    return text.replace("\\\\", "\\")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown once (not when the help already states one); reST markup removed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or "%(default)" in text:
            return text
        if action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain_text(text), width, indent)


class RawHelpFormatter(HelpFormatter):
    """Like :class:`HelpFormatter`, keeping the description's line breaks (examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in plain_text(text).splitlines(keepends=True))


class UsageError(Exception):
    """An argument argparse refused (unknown option, bad value): one ``error:`` line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one ``error: …`` line instead of its usage block (:func:`main` prints it;
    ``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _polish(parser: argparse.ArgumentParser) -> None:
    raw = issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
    parser.formatter_class = RawHelpFormatter if raw else HelpFormatter
    for action in parser._actions:
        if action.help:
            action.help = plain_text(action.help)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="neurodeploy",
        description="Train robust SNNs, deploy them to Loihi-style fixed point through NIR and "
        "Lava, and re-attack the deployed model. Exit codes: 0 ok, 2 bad input, 3 does not "
        "fit the chip, 4 Lava environment missing, 5 Lava failure or timeout, 130 interrupted.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"neurodeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", dest="global_quiet", action="store_true",
                        help="no progress bars, for every command (as the command's own -q)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="what to do (neurodeploy COMMAND --help for its options)")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"neurodeploy.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"neurodeploy.cli.{name}":
                continue
            raise
        mod.register(sub)
    for p in sub.choices.values():
        _polish(p)
    return parser


# ----------------------------------------------------------------------------- --out


def check_out(command: str, out: str | None) -> None:
    """Refuse an ``--out`` of the wrong kind before any work (raises ConfigError, exit 2)."""
    from neurodeploy.errors import ConfigError

    kind = OUT_KIND.get(command)
    if out is None or kind is None:
        return
    if str(out).strip() == "":
        raise ConfigError("--out is empty")
    path = Path(out)
    for parent in [path, *path.parents]:
        if parent != path and parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {out!r}: {str(parent)!r} is a file, not a folder")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out!r} is an existing file; {command} writes a folder there "
                          f"(give a folder path)")
    if kind == "file" and path.is_dir():
        raise ConfigError(f"--out {out!r} is a folder; {command} writes one result file "
                          f"(give a file path such as {str(path / (command + '.json'))!r})")
    _probe_writable(path if kind == "dir" else path.parent, out)


def _probe_writable(folder: Path, out: str) -> None:
    """Create and remove an empty hidden folder in the deepest existing folder on the way to
    ``folder``: a place nothing can be written to (``/proc``, ``/sys``, a read-only mount)
    is refused before any work (exit 2), and nothing is left."""
    import tempfile

    from neurodeploy.errors import ConfigError

    base = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ndprobe-", dir=base))
    except OSError as exc:
        raise ConfigError(f"--out {out!r}: nothing can be written in {str(base)!r} "
                          f"({exc.strerror or type(exc).__name__})") from exc


def _missing_dirs(path: Path) -> list[Path]:
    """The folders on ``path``'s way that do not exist yet (deepest last)."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    return missing[::-1]


def _torchrun_secondary() -> bool:
    """A torchrun process other than rank 0: rank 0 holds the output's lock for the whole
    data-parallel job (and is the only rank that writes there)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0
    except ValueError:
        return False


@contextlib.contextmanager
def guard_output(command: str, out: str | None) -> Iterator[None]:
    """Lock ``out``, clear stale temporary files, and on failure remove the folders this run
    created that stayed empty (so a refused command leaves nothing behind)."""
    from neurodeploy.atomicio import OutputLock, remove_stale_temps

    kind = OUT_KIND.get(command)
    if out is None or kind is None or _torchrun_secondary():
        yield
        return
    path = Path(out)
    created = _missing_dirs(path if kind == "dir" else path.parent)
    existing = {p for p in path.rglob("*") if p.is_dir()} if kind == "dir" and path.is_dir() \
        else set()
    lock = OutputLock(path, command)
    ok = False
    try:
        lock.acquire()
        if kind == "dir":
            remove_stale_temps(path)
            remove_stale_temps(path.parent, recursive=False, only_prefix=path.name)
        else:
            remove_stale_temps(path.parent, recursive=False, only_prefix=path.name)
        yield
        ok = True
    finally:
        lock.release()
        if not ok:
            if kind == "dir" and path.is_dir():  # folders this run made and left empty
                for d in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
                    if d not in existing:
                        with contextlib.suppress(OSError):
                            d.rmdir()  # only if empty
            for d in reversed(created + ([path] if kind == "dir" and path in created else [])):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty


# ----------------------------------------------------------------------------- main


def _close_progress_bars() -> None:
    """Finish live tqdm bars so that an error message starts on its own line."""
    tq = sys.modules.get("tqdm.std")
    if tq is None:
        return
    for bar in list(getattr(tq.tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()
    with contextlib.suppress(Exception):
        sys.stderr.flush()


def one_line(text: str) -> str:
    """A message on one line (multi-line library messages joined with '; ')."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts) if parts else str(text)


def _traceback_if(debug: bool) -> None:
    """``--debug``: the traceback of the error being handled, before its one-line message
    (the exit code stays the cause's)."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


def _on_sigterm(signum: int, frame: object) -> None:
    from neurodeploy.errors import Terminated

    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    from neurodeploy.atomicio import OutputLockedError
    from neurodeploy.errors import NeurodeployError, Terminated

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.global_quiet:
        args.quiet = True
        os.environ["NEURODEPLOY_QUIET"] = "1"
    command = args.command
    out = getattr(args, "out", None)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread (tests): keep the default
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        check_out(command, out)
        with guard_output(command, out):
            return int(args.func(args) or 0)
    except NeurodeployError as exc:
        _close_progress_bars()
        _traceback_if(args.debug)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except OutputLockedError as exc:
        _close_progress_bars()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        _close_progress_bars()
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        if command in RESUMABLE and out:
            print(f"{what}: finished work is saved in {out}; run the same command with "
                  f"--resume to continue", file=sys.stderr)
        else:
            print(f"{what}: nothing half-written was left", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        _close_progress_bars()
        _traceback_if(args.debug)
        print(f"error: {exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last-resort one-liner; --debug shows the traceback
        _close_progress_bars()
        _traceback_if(args.debug)
        print(f"error: {type(exc).__name__}: {one_line(exc)} (run with --debug for the "
              f"traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
