"""Reader for MNIST / Fashion-MNIST IDX files (gzip-compressed or raw).

The IDX format: a 4-byte magic number ``0x00 0x00 <type> <ndim>`` (type ``0x08`` = uint8),
then ``ndim`` big-endian uint32 sizes, then the data. Images have ndim 3, labels ndim 1.
Every check names the offending file: wrong magic, wrong ndim, truncated data, trailing
bytes, image/label count mismatch, labels outside 0..9.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from neurodeploy.data.core import MNIST_TEST_ONLY_SPLIT, Dataset, DatasetSplit
from neurodeploy.errors import DataError

_IMAGE_NAMES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_LABEL_NAMES = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


def read_idx(path: str | Path, expected_ndim: int) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a uint8 array, validating the header."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype != 0x08:
        raise DataError(
            f"{path}: bad magic number 0x{raw[:4].hex()} (expected 0x000008{expected_ndim:02x}, "
            f"uint8 IDX)"
        )
    if ndim != expected_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    n = int(np.prod(dims, dtype=np.int64))
    body = len(raw) - header
    if body < n:
        raise DataError(f"{path}: truncated: header says {dims} ({n} bytes), file has {body}")
    if body > n:
        raise DataError(f"{path}: {body - n} unexpected trailing bytes after {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    return None


def load_idx_pair(images: Path, labels: Path, name: str) -> Dataset:
    x = read_idx(images, 3)
    y = read_idx(labels, 1)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    if y.size and y.max() > 9:
        raise DataError(f"{labels}: label {int(y.max())} outside 0..9")
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return Dataset(xt, torch.from_numpy(y.astype(np.int64)), name)


def load_idx_split(folder: str | Path) -> DatasetSplit:
    """Official split when train files exist; else the t10k set split 8000/2000 (first/last)."""
    folder = Path(folder)
    test_img, test_lab = _find(folder, _IMAGE_NAMES["test"]), _find(folder, _LABEL_NAMES["test"])
    if test_img is None or test_lab is None:
        missing = [
            f"{stem}[.gz]"
            for stem, found in ((_IMAGE_NAMES["test"], test_img), (_LABEL_NAMES["test"], test_lab))
            if found is None
        ]
        raise DataError(f"{folder}: no {' / '.join(missing)} found")
    test = load_idx_pair(test_img, test_lab, f"{folder.name}/t10k")
    tr_img, tr_lab = _find(folder, _IMAGE_NAMES["train"]), _find(folder, _LABEL_NAMES["train"])
    if (tr_img is None) != (tr_lab is None):
        have, need = (
            (tr_img, _LABEL_NAMES["train"]) if tr_lab is None else (tr_lab, _IMAGE_NAMES["train"])
        )
        raise DataError(f"{folder}: {have.name} is present but {need}[.gz] is missing")
    if tr_img is not None and tr_lab is not None:
        train = load_idx_pair(tr_img, tr_lab, f"{folder.name}/train")
        return DatasetSplit(train, test, f"{folder}: official train/test files")
    if len(test) <= MNIST_TEST_ONLY_SPLIT:
        raise DataError(f"{folder}: only {len(test)} test images, need > {MNIST_TEST_ONLY_SPLIT}")
    k = MNIST_TEST_ONLY_SPLIT
    return DatasetSplit(
        Dataset(test.x[:k], test.y[:k], f"{folder.name}/t10k[:{k}]"),
        Dataset(test.x[k:], test.y[k:], f"{folder.name}/t10k[{k}:]"),
        f"{folder}: t10k only; first {k} images train, last {len(test) - k} test",
    )
