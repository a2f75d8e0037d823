"""Dataset records and the dispatcher that turns a dataset name or folder into train/test.

Names understood by :func:`load_dataset`:

- ``digits`` — scikit-learn's 8×8 digits (ships in the wheel; the embedded default). Pixel values
  0..16 are scaled to [0, 1]. Split: a permutation with seed 0, the first 1437 images train,
  the last 360 test (80/20).
- a folder with MNIST/Fashion-MNIST IDX files (gz or raw). With official ``train-*`` and
  ``t10k-*`` files the official split is used. With only the ``t10k-*`` test set (as in
  ``../shared/data/mnist``), the documented split is: the first 8,000 images train, the last
  2,000 test (:data:`MNIST_TEST_ONLY_SPLIT`). No shuffling: the official test file is in a fixed
  order, so the split is the same on every machine.
- a folder in N-MNIST's layout ``<root>/{Train,Test}/<label>/<file>.bin`` (binary events),
  binned into ``num_steps`` frames (:mod:`neurodeploy.data.nmnist`). These datasets are
  *time-first*: ``x`` is ``[T, N, 2, 34, 34]`` in {0, 1} and :attr:`Dataset.time_first` is True.

Image datasets hold ``x`` ``[N, C, H, W]``; use :meth:`Dataset.take` to index samples whatever
the layout.
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
    """Samples ``x`` and labels ``y`` (int64, ``[N]``).

    Images: ``x`` float32 in [0, 1], ``[N, C, H, W]`` (``time_first=False``).
    Spikes/events: ``x`` float32 in {0, 1}, ``[T, N, *shape]`` (``time_first=True``).
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str
    num_classes: int = 10
    time_first: bool = False

    def __post_init__(self) -> None:
        n = self.x.shape[1] if self.time_first else self.x.shape[0]
        if n != self.y.shape[0]:
            raise DataError(f"{self.name}: {n} samples but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample without batch (and without time for spike data)."""
        return tuple(self.x.shape[2:] if self.time_first else self.x.shape[1:])

    @property
    def num_steps(self) -> int | None:
        """Number of time steps of spike data (None for images)."""
        return int(self.x.shape[0]) if self.time_first else None

    def take(self, index: torch.Tensor | slice) -> torch.Tensor:
        """The samples at ``index`` (``x[index]`` or ``x[:, index]`` for time-first data)."""
        return self.x[:, index] if self.time_first else self.x[index]

    def subset(self, n: int | None) -> Dataset:
        if n is None or n >= len(self):
            return self
        return Dataset(
            self.take(slice(0, n)), self.y[:n], f"{self.name}[:{n}]", self.num_classes,
            self.time_first,
        )


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


def _is_nmnist_folder(path: Path) -> bool:
    from neurodeploy.data.nmnist import find_split_dir

    return find_split_dir(path, "train") is not None or find_split_dir(path, "test") is not None


def _load_idx(path: Path, num_steps: int) -> DatasetSplit:
    from neurodeploy.data.idx import load_idx_split

    return load_idx_split(path)


def _load_nmnist(path: Path, num_steps: int) -> DatasetSplit:
    from neurodeploy.data.nmnist import load_nmnist_split

    return load_nmnist_split(path, num_steps)


# Folder formats, tried in order: (name, detector, loader(path, num_steps)).
FOLDER_FORMATS = (
    ("nmnist", _is_nmnist_folder, _load_nmnist),
    ("idx", lambda p: True, _load_idx),
)


def load_dataset(source: str | os.PathLike, num_steps: int = 10) -> DatasetSplit:
    """Load ``digits``, an IDX folder or an N-MNIST folder (see module docstring).

    ``num_steps`` is the number of frames event data are binned into (ignored for images).
    """
    if str(source) == "digits":
        return load_digits_split()
    path = Path(source)
    if path.is_dir():
        for _name, detect, loader in FOLDER_FORMATS:
            if detect(path):
                return loader(path, num_steps)
    if not path.exists():
        raise DataError(f"dataset {str(source)!r}: no such folder (and not 'digits')")
    raise DataError(
        f"dataset {str(source)!r} is neither 'digits' nor a folder with IDX or N-MNIST files"
    )
