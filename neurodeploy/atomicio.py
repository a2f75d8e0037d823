"""Crash-safe output files: atomic writes, bundles published together, a lock per output.

Standard library only (both Python environments import it). The rules every writer follows:

- A file is written to a hidden temporary name in its own folder
  (``.<name>.ndtmp-<pid>-<random><suffix>``), flushed, given the mode the umask allows
  (``0o666 & ~umask``, like ``open()`` would; :func:`tempfile.mkstemp` alone gives 0600), and
  renamed over the target: a reader sees the old file or the new one, never half of one.
- Files that belong together (``model.nir`` + ``plan.npz``; a pipeline stage's report files)
  are written into a hidden folder that is renamed into place once (:func:`publish_dir`,
  :func:`publish_folder`); an existing folder is swapped with ``renameat2(RENAME_EXCHANGE)``
  where the kernel has it.
- One process at a time writes into an output (:class:`OutputLock`, ``flock`` on a hidden
  sibling ``.<name>.lock``; the kernel drops it when the process dies, so a killed run never
  leaves a stale lock). Holding it, leftover temporary files of killed runs are removed
  (:func:`remove_stale_temps`).
- :func:`verify_zip` checks every member's CRC-32 of a zip container (PyTorch checkpoints), so
  a flipped bit is an error instead of a different model.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_MARK = ".ndtmp-"
LOCK_SUFFIX = ".lock"
#: Hidden work folders (``.<name>.partial``, e.g. the pipeline audit's) persist across kills
#: (they hold resumable state) and are published by one rename when whole.
WORK_SUFFIX = ".partial"
# Temporary names: ours (.x.ndtmp-<pid>-<hex>…) and those of the older mkstemp writers, which
# only ever wrapped these output kinds (.model.pt.<8 chars>, .plan.npz.<8 chars>.npz, …).
_TMP_RE = re.compile(r"^\..+\.ndtmp-\d+-[0-9a-f]+.*$"
                     r"|^\..+\.(pt|json|npz|nir|md|html)\.[a-z0-9_]{8}(\.npz|\.nir)?$")
#: How deep :func:`remove_stale_temps` looks below an output folder (our outputs nest 2 deep).
_MAX_DEPTH = 3


class OutputLockedError(OSError):
    """Another process holds the lock of this output (mapped to exit 2 by the CLI)."""


def file_mode() -> int:
    """``0o666 & ~umask``: the mode a plain ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def dir_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def temp_name(path: str | os.PathLike, suffix: str = "") -> Path:
    """A fresh hidden temporary name beside ``path`` (same folder, so rename is atomic)."""
    path = Path(path)
    return path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (umask mode, fsync).

    On any exception (KeyboardInterrupt included) the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, suffix)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, file_mode())
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """``writer(tmp)`` writes the file; it is then published atomically at ``path``."""
    with atomic_path(path, suffix) as tmp:
        writer(tmp)


# ----------------------------------------------------------------------------- bundles

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    res = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def publish_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``final``; on success it becomes ``final`` at once.

    An existing ``final`` folder is exchanged atomically with the new one and then removed,
    so a reader (or a kill at any moment) sees either the whole old bundle or the whole new
    one. On an exception the temporary folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    tmp.mkdir(mode=dir_mode())
    try:
        yield tmp
        publish_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_folder(src: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make the complete folder ``src`` (a sibling of ``final``) become ``final`` at once.

    An existing ``final`` folder is exchanged atomically with ``src`` (``renameat2``) and the
    old one removed; without ``renameat2`` the old one is first parked under a temporary name
    (removed by :func:`remove_stale_temps` if a kill comes before its removal here).
    """
    src, final = Path(src), Path(final)
    if final.is_dir() and not final.is_symlink():
        if _exchange(src, final):
            shutil.rmtree(src, ignore_errors=True)  # src now holds the old folder
        else:  # no renameat2: two renames, the old folder parked under a temp name
            old = temp_name(final)
            os.rename(final, old)
            os.rename(src, final)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, final)
    _fsync_dir(final.parent)


def is_temp_name(name: str) -> bool:
    return bool(_TMP_RE.match(name))


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = True,
                       only_prefix: str | None = None, _depth: int = 0) -> list[Path]:
    """Remove temporary files/folders left by killed writers in ``folder`` (and its
    non-hidden sub-folders and ``.<name>.partial`` work folders, a few levels deep); call it while holding the output's
    :class:`OutputLock` (no live writer then). Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if is_temp_name(name) and (only_prefix is None or name.startswith(f".{only_prefix}")):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
        elif (recursive and only_prefix is None and _depth < _MAX_DEPTH and entry.is_dir()
              and not entry.is_symlink()
              and (not name.startswith(".") or name.endswith(WORK_SUFFIX))):
            removed += remove_stale_temps(entry, True, None, _depth + 1)
    return removed


# ----------------------------------------------------------------------------- lock


def lock_path_for(out: str | os.PathLike) -> Path:
    """The lock of an output (file or folder): the hidden sibling ``.<name>.lock``."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}{LOCK_SUFFIX}"


class OutputLock:
    """Exclusive, non-blocking lock on an output path (``flock``; released when the process
    exits in any way). Raises :class:`OutputLockedError` naming the holder."""

    def __init__(self, out: str | os.PathLike, command: str = "") -> None:
        self.out = Path(out)
        self.path = lock_path_for(out)
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK) and self.out.is_dir():
            self.path = self.out / ".neurodeploy.lock"  # parent not ours: lock inside
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = ""
                with contextlib.suppress(OSError):
                    holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
                os.close(fd)
                raise OutputLockedError(
                    f"{self.out} is in use by another neurodeploy process"
                    f"{f' ({holder})' if holder else ''}; wait for it to finish or choose "
                    f"another --out") from None
            # the file may have been unlinked by the previous holder between open and flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {self.command}".strip().encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----------------------------------------------------------------------------- verification


def verify_zip(path: str | os.PathLike) -> str | None:
    """Check the CRC-32 of every member of a zip container (PyTorch's checkpoint format).

    Returns ``None`` when the file is not a zip (legacy pickles are checked by their reader),
    raises :class:`ValueError` naming the damaged member or the structural problem.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ValueError(f"damaged zip container ({exc})") from exc
    if bad is not None:
        raise ValueError(f"member {bad!r} fails its CRC-32 check")
    return "ok"


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_torch_file(path: str | os.PathLike) -> None:
    """Refuse, with a message that says what the file is, anything that is not an intact
    PyTorch checkpoint: a NIR/HDF5 graph, a plan ``.npz``, a text file, a damaged zip
    (member CRC-32). Legacy (non-zip) pickles pass here; their reader checks them."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_HDF5_MAGIC):
        raise ValueError("is an HDF5 file (a NIR graph?), not a PyTorch checkpoint; export "
                         "reads checkpoints (model.pt), not model.nir")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"damaged zip container ({exc})") from exc
        if not any(n.endswith("data.pkl") for n in names):
            kind = "a numpy .npz (a deployment plan?)" if any(
                n.endswith(".npy") for n in names) else "a zip archive"
            raise ValueError(f"is {kind}, not a PyTorch checkpoint")
        try:
            verify_zip(path)
        except ValueError as exc:
            raise ValueError(f"is corrupt: {exc}") from exc
        return
    if not head:
        raise ValueError("is empty")
    if head[:1] != b"\x80":  # every pickle protocol >= 2 starts with PROTO (0x80)
        raise ValueError("is not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def publish_files(folder: str | os.PathLike, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write files that belong together (``{"model.nir": fn, "plan.npz": fn}``, each
    ``fn(path)`` writing one file) so that they appear together.

    When ``folder`` is new or holds nothing but these files, they are written into a temporary
    folder that replaces ``folder`` in one rename (:func:`publish_dir`). When ``folder`` also
    holds other files (a shared output folder), each file is renamed into place only after
    all of them were written, so a failure leaves the old set untouched; a kill during the
    final renames (microseconds) is the only window in which old and new could mix.
    """
    folder = Path(folder)
    others = [] if not folder.is_dir() else [
        e.name for e in folder.iterdir() if e.name not in writers and not is_temp_name(e.name)]
    if not others:
        with publish_dir(folder) as tmp:
            for name, fn in writers.items():
                fn(tmp / name)
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmps = {name: temp_name(folder / name, Path(name).suffix) for name in writers}
    try:
        for name, fn in writers.items():
            fn(tmps[name])
            os.chmod(tmps[name], file_mode())
        for name in writers:
            os.replace(tmps[name], folder / name)
        _fsync_dir(folder)
    except BaseException:
        for t in tmps.values():
            with contextlib.suppress(OSError):
                os.unlink(t)
        raise
