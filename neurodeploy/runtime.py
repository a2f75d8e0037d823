"""Run-time choices the library needs and the command line sets: device, quiet mode, progress.

This module sits below every other one (it imports only the standard library, torch, tqdm and
:mod:`neurodeploy.errors`), so training, evaluation, attacks and the pipeline take these
choices from here rather than from :mod:`neurodeploy.cli`.

Quiet mode: progress bars are off when a caller passes ``quiet=True`` or when the environment
variable ``NEURODEPLOY_QUIET=1`` is set (the CLI's global ``-q`` sets it; :func:`set_quiet`
does the same from Python).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

QUIET_ENV = "NEURODEPLOY_QUIET"


def progress_disabled(quiet: bool = False) -> bool:
    """Progress bars are off with ``quiet`` or ``NEURODEPLOY_QUIET=1``."""
    return bool(quiet) or os.environ.get(QUIET_ENV, "") == "1"


def set_quiet(quiet: bool = True) -> None:
    """Turn progress bars off (or back on) for this process and its children."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def progress(iterable: Iterable[Any] | None = None, *, desc: str = "", total: int | None = None,
             quiet: bool = False, **kwargs: Any) -> Any:
    """A tqdm progress bar, disabled in quiet mode (see :func:`progress_disabled`)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=progress_disabled(quiet), **kwargs)


def resolve_device(name: str | Any = "auto") -> Any:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` → a ``torch.device``;
    :class:`~neurodeploy.errors.ConfigError` for an unknown or unavailable device."""
    import torch

    from neurodeploy.errors import ConfigError

    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


#: Test hook: ``NEURODEPLOY_TEST_CRASH_AT=<point>[@<n>]`` makes :func:`crash_point` SIGKILL
#: this process at the named point (the ``n``-th epoch/stage when given), so that tests can
#: reproduce a kill at an exact moment instead of after a guessed delay.
CRASH_ENV = "NEURODEPLOY_TEST_CRASH_AT"


def crash_point(name: str, n: int | None = None) -> None:
    """SIGKILL this process here when :data:`CRASH_ENV` names ``name`` (and ``n``, if it has
    ``@n``); a no-op otherwise. Only crash-safety tests set the variable."""
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    point, _, at = want.partition("@")
    if point == name and (not at or (n is not None and at == str(n))):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
