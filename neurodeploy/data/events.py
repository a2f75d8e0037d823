"""Saccade-style event data made from images (deterministic; for tests and small experiments).

N-MNIST was recorded by moving a DVS camera in three saccades along a triangle in front of a
still MNIST digit. :func:`saccade_events` imitates this without a camera:

1. The image is translated along the closed triangle path through the vertices
   ``v0 = (0, 0)``, ``v1 = (0, a)``, ``v2 = (a·√3/2, a/2)`` (``(dy, dx)`` in pixels,
   ``a = amplitude``), one saccade per edge, sampled at ``P = T · substeps`` equally spaced path
   positions ``s_k = k / P`` (k = 1 … P) plus the start ``s_0 = 0``. Sub-pixel shifts use
   bilinear interpolation with zero padding.
2. Every pixel keeps a reference intensity ``r`` (the start image). At sample k an ON event
   fires where ``I_k − r > c`` and an OFF event where ``I_k − r < −c`` (``c = threshold``);
   the reference of a pixel that fired becomes ``I_k`` (a DVS pixel's reset).
3. Sample k belongs to frame ``t = (k − 1) // substeps``; ``frames[t, 0]`` = any OFF event,
   ``frames[t, 1]`` = any ON event (channel order as in :mod:`neurodeploy.data.nmnist`).

Result: ``[T, N, 2, H + 2·pad, W + 2·pad]`` float32 in {0, 1}. No randomness is involved.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neurodeploy.data.core import Dataset
from neurodeploy.errors import DataError


def triangle_offsets(num_samples: int, amplitude: float) -> torch.Tensor:
    """``(dy, dx)`` offsets at path positions ``s_k = k / num_samples``, k = 0 … num_samples."""
    a = float(amplitude)
    verts = torch.tensor(
        [[0.0, 0.0], [0.0, a], [a * math.sqrt(3) / 2, a / 2], [0.0, 0.0]], dtype=torch.float64
    )
    s = torch.arange(num_samples + 1, dtype=torch.float64) / num_samples * 3.0  # edge units
    edge = s.floor().clamp(max=2).long()
    frac = (s - edge).unsqueeze(1)
    return verts[edge] + frac * (verts[edge + 1] - verts[edge])


def shift_images(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Translate ``x`` ``[N, C, H, W]`` by ``(dy, dx)`` pixels (bilinear, zeros outside)."""
    n, _, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float64) - dy
    xs = torch.arange(w, dtype=torch.float64) - dx
    # grid_sample with align_corners=True maps -1 → pixel 0 and +1 → pixel size-1.
    gy = (2 * ys / max(h - 1, 1) - 1).view(h, 1).expand(h, w)
    gx = (2 * xs / max(w - 1, 1) - 1).view(1, w).expand(h, w)
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype).unsqueeze(0).expand(n, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def saccade_events(
    images: torch.Tensor,
    num_steps: int,
    threshold: float = 0.1,
    amplitude: float = 2.0,
    substeps: int = 4,
    pad: int = 0,
) -> torch.Tensor:
    """Events from images ``[N, 1, H, W]`` (or ``[N, H, W]``) in [0, 1]; see module docstring.

    Returns ``[T, N, 2, H + 2·pad, W + 2·pad]`` float32 in {0, 1}.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise DataError(f"saccade_events needs [N, 1, H, W] images, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise DataError("saccade_events: images contain NaN or inf")
    if num_steps < 1 or substeps < 1 or pad < 0 or not threshold > 0:
        raise DataError(
            "saccade_events: need num_steps >= 1, substeps >= 1, pad >= 0 and threshold > 0"
        )
    x = images.detach().to(torch.float32).cpu()
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    num_samples = num_steps * substeps
    offsets = triangle_offsets(num_samples, amplitude)
    ref = shift_images(x, *offsets[0].tolist())
    n, _, h, w = x.shape
    frames = torch.zeros(num_steps, n, 2, h, w, dtype=torch.float32)
    for k in range(1, num_samples + 1):
        cur = shift_images(x, *offsets[k].tolist())
        diff = (cur - ref)[:, 0]
        on, off = diff > threshold, diff < -threshold
        t = (k - 1) // substeps
        frames[t, :, 0] = torch.maximum(frames[t, :, 0], off.float())
        frames[t, :, 1] = torch.maximum(frames[t, :, 1], on.float())
        fired = (on | off).unsqueeze(1)
        ref = torch.where(fired, cur, ref)
    return frames


def saccade_dataset(dataset: Dataset, num_steps: int, **kwargs) -> Dataset:
    """A time-first event :class:`Dataset` made from an image dataset (same labels)."""
    if dataset.time_first:
        raise DataError(f"{dataset.name}: already event data")
    x = saccade_events(dataset.x, num_steps, **kwargs)
    return Dataset(x, dataset.y.clone(), f"{dataset.name}/saccades", dataset.num_classes, True)
