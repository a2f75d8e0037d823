"""N-MNIST binary event files: reader, writer and binning into time-first spike frames.

File format (Orchard et al. 2015, the original N-MNIST release). A file is a sequence of
events of 40 bits = 5 bytes each, big-endian::

    byte 0      x            (8 bits, 0 … 33)
    byte 1      y            (8 bits, 0 … 33)
    byte 2      p | t[22:16]  (bit 7 = polarity, 1 = ON / 0 = OFF; bits 6…0 = timestamp bits 22…16)
    byte 3      t[15:8]
    byte 4      t[7:0]       (timestamp in µs, 23 bits)

Folder layout: ``<root>/<split>/<label>/<file>.bin`` with ``<split>`` ``Train``/``Test``
(case-insensitive) and ``<label>`` a class number ``0 … 9``.

Binning (:func:`events_to_frames`). With ``T`` frames over a window of ``D`` µs (``D`` =
``duration_us`` or, when None, the sample's last timestamp + 1), an event at time ``t`` falls
in frame ``k = floor(t · T / D)`` (events with ``t ≥ D`` are dropped), and::

    frames[k, p, y, x] = 1   if at least one event (x, y, p) fell in frame k, else 0

Channel 0 holds OFF events (p = 0), channel 1 ON events (p = 1). Loaded datasets are
time-first ``[T, N, 2, 34, 34]`` float32 in {0, 1}.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from neurodeploy.data.core import Dataset, DatasetSplit
from neurodeploy.errors import DataError

SENSOR_SIZE = 34  # N-MNIST's ATIS crop: 34 × 34 pixels
EVENT_BYTES = 5
MAX_TIMESTAMP = (1 << 23) - 1
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("p", np.int64), ("t", np.int64)])
SPLIT_NAMES = {"train": ("Train", "train", "TRAIN"), "test": ("Test", "test", "TEST")}


def decode_events(raw: bytes, source: str = "<bytes>", size: int = SENSOR_SIZE) -> np.ndarray:
    """Decode N-MNIST bytes into a structured array with fields ``x, y, p, t``.

    Raises
    ------
    DataError
        When the length is not a multiple of 5 or a coordinate is outside ``0 … size-1``;
        the message names ``source`` and the first bad event.
    """
    if len(raw) % EVENT_BYTES:
        raise DataError(
            f"{source}: {len(raw)} bytes is not a multiple of {EVENT_BYTES} (40-bit events); "
            f"truncated or not an N-MNIST file"
        )
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, EVENT_BYTES).astype(np.int64)
    ev = np.empty(b.shape[0], dtype=EVENT_DTYPE)
    ev["x"] = b[:, 0]
    ev["y"] = b[:, 1]
    ev["p"] = b[:, 2] >> 7
    ev["t"] = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    for axis in ("x", "y"):
        bad = np.flatnonzero(ev[axis] >= size)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{source}: event {i} has {axis} = {int(ev[axis][i])}, outside 0..{size - 1} "
                f"({bad.size} such events)"
            )
    return ev


def read_events(path: str | os.PathLike, size: int = SENSOR_SIZE) -> np.ndarray:
    """Read one ``.bin`` file (see the module docstring for the format)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    return decode_events(raw, str(path), size)


def encode_events(x, y, p, t) -> bytes:
    """Inverse of :func:`decode_events` (used by tests and tools that write N-MNIST files)."""
    x, y, p, t = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (x, y, p, t))
    if not (len(x) == len(y) == len(p) == len(t)):
        raise DataError("x, y, p, t must have the same length")
    for name, v, hi in (("x", x, 255), ("y", y, 255), ("p", p, 1), ("t", t, MAX_TIMESTAMP)):
        if v.size and (v.min() < 0 or v.max() > hi):
            raise DataError(f"event field {name} outside 0..{hi}")
    out = np.empty((len(x), EVENT_BYTES), dtype=np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


def write_events(path: str | os.PathLike, x, y, p, t) -> None:
    """Write events to ``path`` in N-MNIST format, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_events(x, y, p, t)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def events_to_frames(
    events: np.ndarray,
    num_steps: int,
    duration_us: int | None = None,
    size: int = SENSOR_SIZE,
) -> np.ndarray:
    """Bin events into ``[T, 2, size, size]`` uint8 frames in {0, 1} (module docstring)."""
    if num_steps < 1:
        raise DataError(f"num_steps must be >= 1, got {num_steps}")
    frames = np.zeros((num_steps, 2, size, size), dtype=np.uint8)
    if events.size == 0:
        return frames
    t = events["t"]
    window = int(duration_us) if duration_us is not None else int(t.max()) + 1
    if window < 1:
        raise DataError(f"duration_us must be >= 1, got {duration_us}")
    keep = t < window
    k = (t[keep] * num_steps) // window
    frames[k, events["p"][keep], events["y"][keep], events["x"][keep]] = 1
    return frames


def find_split_dir(root: str | os.PathLike, split: str) -> Path | None:
    """``root/Train`` (or ``train``/``TRAIN``) for ``split="train"``, when it has label folders."""
    root = Path(root)
    for name in SPLIT_NAMES[split]:
        d = root / name
        if d.is_dir() and any(c.is_dir() and c.name.isdigit() for c in d.iterdir()):
            return d
    return None


def load_nmnist_folder(
    folder: str | os.PathLike,
    num_steps: int,
    duration_us: int | None = None,
    limit_per_class: int | None = None,
    name: str | None = None,
) -> Dataset:
    """Load ``folder/<label>/*.bin`` into a time-first :class:`Dataset` ``[T, N, 2, 34, 34]``.

    Files are read in sorted order (label, then file name), so the result is deterministic.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    label_dirs = sorted(
        (d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
    )
    if not label_dirs:
        raise DataError(f"{folder}: no label folders (expected {folder}/<label>/<file>.bin)")
    frames, labels = [], []
    for d in label_dirs:
        label = int(d.name)
        if label > 9:
            raise DataError(f"{d}: label folder {label} outside 0..9")
        files = sorted(d.glob("*.bin"))[:limit_per_class]
        for f in files:
            frames.append(events_to_frames(read_events(f), num_steps, duration_us))
            labels.append(label)
    if not frames:
        raise DataError(f"{folder}: no .bin files found under the label folders")
    x = torch.from_numpy(np.stack(frames, axis=1).astype(np.float32))  # [T, N, 2, 34, 34]
    y = torch.tensor(labels, dtype=torch.int64)
    return Dataset(x, y, name or folder.name, time_first=True)


def load_nmnist_split(
    root: str | os.PathLike,
    num_steps: int,
    duration_us: int | None = None,
    limit_per_class: int | None = None,
) -> DatasetSplit:
    """Load ``root/Train`` and ``root/Test`` (see :func:`load_nmnist_folder`)."""
    root = Path(root)
    dirs = {s: find_split_dir(root, s) for s in ("train", "test")}
    missing = [s for s, d in dirs.items() if d is None]
    if missing:
        raise DataError(
            f"{root}: N-MNIST layout needs Train/ and Test/ folders with label sub-folders; "
            f"missing {', '.join(missing)}"
        )
    train = load_nmnist_folder(
        dirs["train"], num_steps, duration_us, limit_per_class, f"{root.name}/train"
    )
    test = load_nmnist_folder(
        dirs["test"], num_steps, duration_us, limit_per_class, f"{root.name}/test"
    )
    window = f"{duration_us} µs" if duration_us else "each sample's own duration"
    return DatasetSplit(
        train, test, f"{root}: N-MNIST events binned into {num_steps} frames over {window}"
    )
