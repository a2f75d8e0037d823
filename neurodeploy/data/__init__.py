"""Datasets: the embedded default (scikit-learn digits), MNIST-style IDX folders, spike data.

All loaders return :class:`Dataset` records with images as float32 tensors in [0, 1] of shape
``[N, C, H, W]`` (or spikes in {0, 1}, time-first ``[T, N, …]``) and int64 labels.
"""

from neurodeploy.data.core import Dataset, DatasetSplit, load_dataset

__all__ = ["Dataset", "DatasetSplit", "load_dataset"]
