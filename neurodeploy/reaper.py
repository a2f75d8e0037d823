"""Reaper: the processes a caller starts (a local Ray instance) end with it, even after kill -9.

``ray.init()`` starts the GCS server, the raylet, a log monitor and, under the raylet, the
dashboard and runtime-env agents and the workers. When the caller is killed with SIGKILL, Ray
itself stops some of them but the agents outlive it (orphans under init). :func:`start_reaper`
starts this module as a small stdlib-only process, the way the Lava runner is managed
(:mod:`neurodeploy.sims.lava_env`):

- it leads its own session (a Ctrl-C to the terminal reaches the caller, which shuts Ray down
  and then lets the reaper go), holds the read end of a pipe whose only write end is in the
  caller, and has ``PR_SET_PDEATHSIG`` set on Linux;
- every :data:`POLL_S` seconds it records the caller's descendants (pid and start time, so a
  reused pid is never touched) that appeared after it started;
- when the pipe reads EOF (the caller closed it, or died in any way) or the caller is gone, it
  stops every recorded process that is still the same process (SIGSTOP: a stopped process
  cannot start new ones), adds the children of stopped ones until the set is closed, kills
  them all (SIGKILL) and exits.

Usage (the caller side)::

    lifeline = start_reaper()      # before ray.init()
    ...
    lifeline.close()               # after ray.shutdown(): kills whatever is left
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

#: Seconds between two records of the caller's descendants.
POLL_S = 0.25


def _stat(pid: int) -> tuple[int, bytes, bytes] | None:
    """(parent pid, state, start time) of ``pid`` from ``/proc``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def _table() -> dict[int, tuple[int, bytes, bytes]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def _closure(roots: set[int], table: dict[int, tuple[int, bytes, bytes]]) -> set[int]:
    """``roots`` and all their descendants in ``table``."""
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {p for p, (pp, _, _) in table.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def _record(caller: int, me: int, before: set[int], seen: dict[int, bytes]) -> None:
    """Add the caller's descendants that were not there at the start to ``seen``."""
    table = _table()
    alive = {p for p, t in seen.items() if p in table and table[p][2] == t}
    for pid in _closure({caller} | alive, table) - {caller, me} - before:
        if pid in table:
            seen.setdefault(pid, table[pid][2])


def _same(pid: int, started: bytes) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == started and st[1] != b"Z"


def reap(seen: dict[int, bytes], me: int) -> None:
    """Stop the recorded processes that are still themselves and their children (until the
    set no longer grows), then kill them all."""
    stopped: set[int] = set()
    for _ in range(100):
        table = _table()
        live = {p for p, t in seen.items() if _same(p, t)}
        group = _closure(live | stopped, table) - {me}
        new = group - stopped
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped |= new
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main(caller: int) -> None:
    """Watch ``caller`` (stdin: the lifeline pipe) and reap its new descendants at the end."""
    me = os.getpid()
    before = set(_table())
    seen: dict[int, bytes] = {}

    def finish(*_: object) -> None:
        _record(caller, me, before, seen)
        reap(seen, me)
        os._exit(0)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, finish)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the pipe alone
        pass
    while True:
        if os.getppid() != caller:
            finish()
        _record(caller, me, before, seen)
        ready, _, _ = select.select([0], [], [], POLL_S)
        if ready and os.read(0, 1) == b"":
            finish()


class Lifeline:
    """The caller's end of a reaper: :meth:`close` lets it reap and waits for it."""

    def __init__(self, proc: subprocess.Popen, fd: int):
        self.proc, self.fd = proc, fd

    def close(self, timeout_s: float = 10.0) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_reaper() -> Lifeline | None:
    """Start the reaper of this process's future descendants; None where ``/proc`` is missing
    (not Linux: Ray's own clean-up only)."""
    if not os.path.isdir("/proc"):
        return None
    r, w = os.pipe()  # both non-inheritable; r is handed to the reaper as its stdin only
    try:
        proc = subprocess.Popen([sys.executable, "-m", "neurodeploy.reaper", str(os.getpid())],
                                stdin=r, start_new_session=True)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    return Lifeline(proc, w)


if __name__ == "__main__":  # pragma: no cover - the reaper process
    main(int(sys.argv[1]))
