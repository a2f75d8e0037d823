"""Dataset records and the dispatcher that turns a dataset name or folder into train/test.

Names understood by :func:`load_dataset`:

- ``digits`` — scikit-learn's 8×8 digits (ships in the wheel; the embedded default). Pixel values
  0..16 are scaled to [0, 1]. Split: a permutation with seed 0, the first 1437 images train,
  the last 360 test (80/20).
- a folder with MNIST/Fashion-MNIST IDX files (gz or raw). With official ``train-*`` and
  ``t10k-*`` files the official split is used. With only the ``t10k-*`` test set (as in
  ``../shared/data/mnist``), the documented split is: the first 8,000 images train, the last
  2,000 test (:data:`MNIST_TEST_ONLY_SPLIT`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurodeploy.errors import DataError

DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN = 1437
MNIST_TEST_ONLY_SPLIT = 8000


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (float32, [0, 1], ``[N, C, H, W]``) and labels ``y`` (int64, ``[N]``)."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.name}: {self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, n: int | None) -> Dataset:
        if n is None or n >= len(self):
            return self
        return Dataset(self.x[:n], self.y[:n], f"{self.name}[:{n}]", self.num_classes)


@dataclass(frozen=True)
class DatasetSplit:
    train: Dataset
    test: Dataset
    description: str


def load_digits_split() -> DatasetSplit:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.from_numpy(np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y)))
    x, y = x[perm], y[perm]
    return DatasetSplit(
        Dataset(x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], "digits/train"),
        Dataset(x[DIGITS_TRAIN:], y[DIGITS_TRAIN:], "digits/test"),
        f"scikit-learn digits, permutation seed {DIGITS_SPLIT_SEED}, first {DIGITS_TRAIN} train, "
        f"last {len(y) - DIGITS_TRAIN} test",
    )


def load_dataset(source: str | os.PathLike) -> DatasetSplit:
    """Load ``digits`` or an IDX folder (see module docstring) as a train/test split."""
    if str(source) == "digits":
        return load_digits_split()
    path = Path(source)
    if path.is_dir():
        from neurodeploy.data.idx import load_idx_split

        return load_idx_split(path)
    raise DataError(
        f"dataset {str(source)!r} is neither 'digits' nor a folder with IDX files"
    )
