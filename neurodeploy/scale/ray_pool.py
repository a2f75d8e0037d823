"""Ray, optional: start/stop a local instance or attach to a cluster.

Ray is an optional dependency (``pip install 'neurodeploy[scale]'``, or ``pip install ray``).
Without it, the serial path works unchanged and asking for workers raises a
:class:`~neurodeploy.errors.ConfigError` (exit code 2) that says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from neurodeploy.errors import ConfigError

INSTALL_HINT = ("Ray is not installed; install the scale extra: pip install 'neurodeploy[scale]' "
                "(or pip install ray) in this environment")


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray() -> Any:
    """Import Ray or raise a ConfigError with the install command."""
    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    import ray

    return ray


@contextlib.contextmanager
def ray_session(workers: int | None = None, address: str | None = None,
                threads_per_task: int = 1) -> Iterator[Any]:
    """Yield the ``ray`` module with a running instance.

    ``address``: attach to that cluster (``auto``, ``host:port``, ``ray://host:10001``); else a
    local instance with ``workers × threads_per_task`` CPUs, no dashboard, started here and
    shut down on exit. An instance that was already running (a caller's own ``ray.init``) is
    reused and left running.
    """
    ray = require_ray()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "configure_logging": False}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=int(workers or 1) * int(threads_per_task), **kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"--ray-address {address!r}: cannot connect ({exc})") from exc
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
