"""Ray, optional: start/stop a local instance or attach to a cluster.

Ray is an optional dependency (``pip install 'neurodeploy[scale]'``, or ``pip install ray``).
Without it, the serial path works unchanged and asking for workers raises a
:class:`~neurodeploy.errors.ConfigError` (exit code 2) that says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

from neurodeploy.errors import ConfigError

INSTALL_HINT = ("Ray is not installed; install the scale extra: pip install 'neurodeploy[scale]' "
                "(or pip install ray) in this environment")


#: Seconds to wait for ``--ray-address`` to connect, and then to answer, before refusing it.
CONNECT_TIMEOUT_S = 8.0
#: Seconds ``ray.init(address=…)`` may take to attach to a cluster.
ATTACH_TIMEOUT_S = 12.0
#: An HTTP/2 client preface and an empty SETTINGS frame: Ray's GCS and client servers speak
#: gRPC (HTTP/2) and answer with their own SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_ADDRESS = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
                      r":(\d{1,5})$")


def check_ray_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """Refuse an address that does not parse or that nothing listens on (ConfigError, exit 2),
    in at most ``timeout_s`` seconds per resolved host address.

    ``auto`` (a cluster this machine already runs; Ray itself says when there is none) or
    ``[ray://]host:port``. The check connects to ``host:port`` and expects an HTTP/2 SETTINGS
    frame back (what a gRPC server sends first), so a closed port, a black hole or a server of
    another kind fails within ``2 · timeout_s`` instead of Ray retrying for minutes.
    """
    address = str(address).strip()
    if address == "auto":
        return address
    m = _ADDRESS.match(address)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise ConfigError(f"--ray-address {address!r}: not an address (give auto, host:port or "
                          f"ray://host:port with a port in 1..65535)")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(HTTP2_PREFACE)
            answer = conn.recv(9)
    except OSError as exc:
        what = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(f"--ray-address {address!r}: cannot connect to {host}:{port} "
                          f"({what}); is the cluster running?") from exc
    if len(answer) < 4 or answer[3] != 0x04:  # frame type 4 = SETTINGS
        raise ConfigError(f"--ray-address {address!r}: {host}:{port} answers, but not as a Ray "
                          f"(gRPC) server")
    return address


def _attach_within(ray: Any, address: str, timeout_s: float, kwargs: dict[str, Any]) -> None:
    """``ray.init(address)`` that gives up after ``timeout_s`` (Ray itself retries for minutes
    when something answers at the address but no cluster does): ConfigError, exit 2."""
    box: dict[str, BaseException | None] = {}

    def attach() -> None:
        try:
            ray.init(address=address, **kwargs)
            box["result"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["result"] = exc

    worker = threading.Thread(target=attach, name="ray-attach", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if "result" not in box:
        raise ConfigError(f"--ray-address {address!r}: no Ray cluster answered within "
                          f"{timeout_s:g} s")
    if box["result"] is not None:
        raise box["result"]


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
    shut down on exit; its processes end with this one even after a SIGKILL
    (:mod:`neurodeploy.reaper`). An instance that was already running (a caller's own
    ``ray.init``) is reused and left running.
    """
    ray = require_ray()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    started = False
    lifeline = None
    if address:
        address = check_ray_address(address)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "configure_logging": False}
        if not address:  # Ray's processes end with this one, even after kill -9
            from neurodeploy.reaper import start_reaper

            lifeline = start_reaper()
        try:
            if address:
                _attach_within(ray, address, ATTACH_TIMEOUT_S, kwargs)
            else:
                ray.init(num_cpus=int(workers or 1) * int(threads_per_task), **kwargs)
        except BaseException as exc:
            if lifeline is not None:
                lifeline.close()
            if isinstance(exc, ConnectionError):
                raise ConfigError(f"--ray-address {address!r}: cannot connect ({exc})") from exc
            raise
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
        if lifeline is not None:
            lifeline.close()  # kills what ray.shutdown() left (agents, workers)
