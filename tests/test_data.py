"""Loaders on small files the tests write themselves: IDX (raw/gz, corrupt), N-MNIST events,
saccade-style events, the digits default and the dataset dispatcher."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.data.core import load_dataset, load_digits_split
from neurodeploy.data.events import saccade_dataset, saccade_events
from neurodeploy.data.idx import load_idx_split, read_idx
from neurodeploy.data.nmnist import (
    decode_events,
    encode_events,
    events_to_frames,
    load_nmnist_split,
    read_events,
    write_events,
)
from neurodeploy.errors import DataError

# ----------------------------------------------------------------------------- IDX helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return (
        bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    )


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_idx_folder(folder: Path, n_test: int, n_train: int = 0, gz: bool = False, hw: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sets = {"t10k": n_test, "train": n_train}
    out = {}
    for prefix, n in sets.items():
        if n == 0:
            continue
        img = rng.integers(0, 256, size=(n, hw, hw), dtype=np.uint8)
        lab = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", img, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", lab, gz)
        out[prefix] = (img, lab)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_official_split(tmp_path, gz):
    arrays = make_idx_folder(tmp_path, n_test=7, n_train=12, gz=gz)
    split = load_idx_split(tmp_path)
    img, lab = arrays["train"]
    assert split.train.x.shape == (12, 1, 4, 4) and split.test.x.shape == (7, 1, 4, 4)
    assert split.train.x.dtype == torch.float32
    assert torch.equal(split.train.x[:, 0], torch.from_numpy(img.astype(np.float32) / 255.0))
    assert split.train.y.tolist() == lab.tolist()
    assert split.train.x.min() >= 0 and split.train.x.max() <= 1
    assert "official" in split.description


def test_t10k_only_split_is_first_8000_last_rest(tmp_path):
    arrays = make_idx_folder(tmp_path, n_test=8012, hw=2, gz=True)
    split = load_dataset(tmp_path)
    img, lab = arrays["t10k"]
    assert len(split.train) == 8000 and len(split.test) == 12
    assert torch.equal(split.test.x[:, 0] * 255, torch.from_numpy(img[8000:].astype(np.float32)))
    assert split.test.y.tolist() == lab[8000:].tolist()
    assert torch.equal(load_dataset(tmp_path).train.x, split.train.x)  # deterministic
    assert "first 8000" in split.description


CORRUPTIONS = {
    "bad magic": (lambda b: b"\x00\x00\x09" + b[3:], "magic"),
    "wrong ndim": (lambda b: b[:3] + b"\x02" + b[4:], "dimensions"),
    "truncated": (lambda b: b[:-5], "truncated"),
    "trailing": (lambda b: b + b"\x00\x00", "trailing"),
    "tiny": (lambda b: b[:2], "too short"),
    "bad gzip header": (lambda b: b"\x1f\x8b" + b"garbage-garbage", "gzip"),
    "truncated gzip": (lambda b: gzip.compress(b)[:-12], "gzip"),
    "corrupt deflate": (lambda b: _flip(gzip.compress(b), 20), "gzip"),
}


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0xFF, b[i + 1] ^ 0xFF]) + b[i + 2 :]


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_idx_files_name_the_file(tmp_path, kind):
    make_idx_folder(tmp_path, n_test=5, n_train=6)
    victim = tmp_path / "train-images-idx3-ubyte"
    corrupt, fragment = CORRUPTIONS[kind]
    victim.write_bytes(corrupt(victim.read_bytes()))
    with pytest.raises(DataError) as err:
        load_idx_split(tmp_path)
    assert str(victim) in str(err.value)
    assert fragment in str(err.value)


def test_count_mismatch_and_bad_labels_and_missing_files(tmp_path):
    make_idx_folder(tmp_path, n_test=5, n_train=6)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="6 images but .*4 labels"):
        load_idx_split(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(6, 12, dtype=np.uint8))
    with pytest.raises(DataError, match="label 12"):
        load_idx_split(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_idx_split(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        load_idx_split(tmp_path)
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope", 1)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="t10k-images"):
        load_dataset(tmp_path / "empty")


def test_digits_default_split():
    split = load_digits_split()
    assert (len(split.train), len(split.test)) == (1437, 360)
    assert split.train.input_shape == (1, 8, 8)
    assert split.train.x.min() == 0 and split.train.x.max() == 1
    assert sorted(split.test.y.unique().tolist()) == list(range(10))
    again = load_dataset("digits")
    assert torch.equal(again.test.x, split.test.x) and torch.equal(again.test.y, split.test.y)


# ----------------------------------------------------------------------------- N-MNIST


def test_nmnist_event_bit_layout():
    """x=3, y=5, ON, t=0x012345 → 03 05 81 23 45 (polarity in bit 7 of byte 2, t 23-bit BE)."""
    raw = encode_events([3, 33], [5, 0], [1, 0], [0x012345, 0x7FFFFF])
    assert raw == bytes([0x03, 0x05, 0x81, 0x23, 0x45, 0x21, 0x00, 0x7F, 0xFF, 0xFF])
    ev = decode_events(raw)
    assert ev["x"].tolist() == [3, 33] and ev["y"].tolist() == [5, 0]
    assert ev["p"].tolist() == [1, 0] and ev["t"].tolist() == [0x012345, 0x7FFFFF]


def test_events_to_frames_binning():
    # window = last t + 1 = 1000 µs, T = 4 → frames of 250 µs: t=0→0, 249→0, 250→1, 999→3
    ev = decode_events(encode_events([1, 2, 3, 4], [0, 0, 7, 33], [1, 0, 1, 0], [0, 249, 250, 999]))
    f = events_to_frames(ev, 4)
    assert f.shape == (4, 2, 34, 34) and f.sum() == 4
    assert f[0, 1, 0, 1] == 1 and f[0, 0, 0, 2] == 1 and f[1, 1, 7, 3] == 1 and f[3, 0, 33, 4] == 1
    # a fixed window drops later events: 500 µs, T = 2 → the event at 999 is dropped
    g = events_to_frames(ev, 2, duration_us=500)
    assert g.sum() == 3 and g[1, 1, 7, 3] == 1
    # duplicate events stay binary
    dup = decode_events(encode_events([5, 5], [5, 5], [1, 1], [10, 11]))
    assert events_to_frames(dup, 1).max() == 1


def _write_nmnist_tree(root: Path, per_class: int = 2, classes=(0, 1, 2)) -> None:
    rng = np.random.default_rng(1)
    for split in ("Train", "Test"):
        for c in classes:
            for i in range(per_class):
                n = 30
                write_events(
                    root / split / str(c) / f"{i:05d}.bin",
                    rng.integers(0, 34, n),
                    rng.integers(0, 34, n),
                    rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 300_000, n)),
                )


def test_nmnist_folder_loads_time_first(tmp_path):
    _write_nmnist_tree(tmp_path)
    split = load_dataset(tmp_path, num_steps=5)
    assert split.train.time_first and split.train.x.shape == (5, 6, 2, 34, 34)
    assert split.train.input_shape == (2, 34, 34) and split.train.num_steps == 5
    assert split.train.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert set(split.train.x.unique().tolist()) <= {0.0, 1.0}
    f = tmp_path / "Train" / "1" / "00000.bin"
    expect = events_to_frames(read_events(f), 5)
    assert torch.equal(split.train.x[:, 2], torch.from_numpy(expect).float())
    assert split.train.take(torch.tensor([1, 4])).shape == (5, 2, 2, 34, 34)
    assert len(split.test.subset(2)) == 2 and split.test.subset(2).x.shape[1] == 2


def test_nmnist_corrupt_files_name_the_file(tmp_path):
    _write_nmnist_tree(tmp_path, per_class=1, classes=(0,))
    bad = tmp_path / "Test" / "0" / "00000.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DataError) as err:
        load_nmnist_split(tmp_path, 4)
    assert str(bad) in str(err.value) and "multiple of 5" in str(err.value)
    bad.write_bytes(encode_events([34], [0], [1], [5]))
    with pytest.raises(DataError) as err:
        load_nmnist_split(tmp_path, 4)
    assert str(bad) in str(err.value) and "x = 34" in str(err.value)
    (tmp_path / "Test" / "0" / "00000.bin").unlink()
    with pytest.raises(DataError, match="no .bin files"):
        load_nmnist_split(tmp_path, 4)


# ----------------------------------------------------------------------------- saccades


def test_saccade_single_pixel_moves_exactly():
    """One bright pixel, T = 3 frames, one sample per frame, amplitude 3: frame 0 is the first
    saccade v0 → v1 = (0, +3): ON where the pixel arrives, OFF where it left, nothing else."""
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 2, 2] = 1.0
    ev = saccade_events(img, num_steps=3, threshold=0.5, amplitude=3.0, substeps=1)
    assert ev.shape == (3, 1, 2, 9, 9)
    on, off = ev[0, 0, 1], ev[0, 0, 0]
    assert on.nonzero().tolist() == [[2, 5]]
    assert off.nonzero().tolist() == [[2, 2]]
    # the path is closed: the last frame brings the pixel back to (2, 2)
    assert ev[2, 0, 1, 2, 2] == 1


def test_saccade_events_deterministic_binary_and_blank():
    split = load_digits_split()
    a = saccade_dataset(split.test.subset(6), 8, pad=3)
    b = saccade_dataset(split.test.subset(6), 8, pad=3)
    assert a.time_first and a.x.shape == (8, 6, 2, 14, 14)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, split.test.y[:6])
    assert set(a.x.unique().tolist()) == {0.0, 1.0}
    assert a.x[:, :, 0].sum() > 0 and a.x[:, :, 1].sum() > 0  # both polarities occur
    assert saccade_events(torch.zeros(2, 1, 5, 5), 4).sum() == 0
    with pytest.raises(DataError, match="NaN"):
        saccade_events(torch.full((1, 1, 3, 3), float("nan")), 2)
