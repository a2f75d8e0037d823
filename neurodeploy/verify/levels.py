"""The exact input set of one example under the known draw: per pixel, its reachable levels.

Pixel p of an image ``x'`` is encoded by the host as ``s[t, p] = 1[x'_p > u[t, p]]``
(:func:`neurodeploy.encoding.bernoulli_spikes`, strict ``>``). As ``x'_p`` runs over the real
interval ``[lo_p, hi_p] = [x_p − ε, x_p + ε] ∩ [0, 1]``, the train is determined by its *level*
``c(x'_p) = #{t : u[t, p] < x'_p}`` (spikes at the c smallest u's), so the set the chip can be
made to see is the product over pixels of the reachable level sets

    R_p = {c(lo_p)} ∪ {#{t : u[t, p] ≤ u_r} : u_r ∈ {u[·, p]}, lo_p ≤ u_r < hi_p}

(the second set: ``x'_p`` just above a map value inside the interval). Equal map values of one
pixel make a level unreachable, which the set above respects. Everything here is exact rational
arithmetic: ``u`` and ``x`` are the stored float32 values (exactly representable), ε is the
decimal the user typed (``Fraction(str(eps))``), so a witness image is checked in the ε-ball
without any rounding (a float32 re-rounding once put a prototype's images 2.4·10⁻⁸ outside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


def exact_eps(eps: float | str) -> Fraction:
    """ε as an exact rational: the shortest decimal that round-trips the given float."""
    e = Fraction(str(eps))
    if e < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return e


@dataclass(frozen=True)
class PixelLevels:
    """Level geometry of one example (flat pixel order, ``P`` pixels, ``T`` steps).

    rank : ``[T, P]`` position of step t in pixel p's ascending u order (ties by step);
        level c makes pixel p spike at step t iff ``rank[t, p] < c``.
    levels : per pixel the sorted reachable levels ``R_p``.
    clean : ``[P]`` the clean image's level ``c(x_p)``.
    """

    x: np.ndarray
    u: np.ndarray
    eps: Fraction
    rank: np.ndarray
    levels: tuple[tuple[int, ...], ...]
    clean: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.u.shape[0])

    @property
    def combinations(self) -> int:
        """``∏_p |R_p|``: the number of distinct inputs the ball can produce."""
        return math.prod(len(r) for r in self.levels)

    @property
    def free_pixels(self) -> int:
        return sum(len(r) > 1 for r in self.levels)

    def spikes(self, level: np.ndarray) -> np.ndarray:
        """Spike trains ``[T, P]`` (uint8) of per-pixel levels ``[P]``."""
        return (self.rank < np.asarray(level)[None, :]).astype(np.uint8)

    def bounds(self, p: int) -> tuple[Fraction, Fraction]:
        """``[lo_p, hi_p]``: the ε-ball of pixel p clipped to [0, 1], exactly."""
        xp = Fraction(float(self.x[p]))
        return max(Fraction(0), xp - self.eps), min(Fraction(1), xp + self.eps)


def pixel_levels(x: np.ndarray, u: np.ndarray, eps: float | str) -> PixelLevels:
    """Level geometry of image ``x`` (any shape, flattened) under map ``u`` ``[T, *shape]``."""
    xf = np.asarray(x, dtype=np.float32).reshape(-1)
    uf = np.asarray(u, dtype=np.float32).reshape(u.shape[0], -1)
    if uf.shape[1] != xf.size:
        raise ValueError(f"map {tuple(u.shape)} does not match image of {xf.size} pixels")
    e = exact_eps(eps)
    order = np.argsort(uf, axis=0, kind="stable")
    rank = np.argsort(order, axis=0, kind="stable")
    levels = []
    for p in range(xf.size):
        xp = Fraction(float(xf[p]))
        lo, hi = max(Fraction(0), xp - e), min(Fraction(1), xp + e)
        col = [Fraction(float(v)) for v in uf[:, p]]
        reach = {sum(c < lo for c in col)}
        reach.update(sum(c <= ur for c in col) for ur in col if lo <= ur < hi)
        levels.append(tuple(sorted(reach)))
    clean = (uf < xf[None, :]).sum(0)
    return PixelLevels(xf, uf, e, rank, tuple(levels), clean)


def witness_image(lv: PixelLevels, level: np.ndarray) -> np.ndarray:
    """An image (float32 where possible, else float64) in the ε-ball ∩ [0, 1] whose spikes
    under ``u`` are exactly the levels ``level``; raises ValueError when a level is not
    reachable (a bug upstream). Unchanged pixels keep their clean value."""
    out = lv.x.astype(np.float64).copy()
    for p, c in enumerate(np.asarray(level).tolist()):
        if c == int(lv.clean[p]):
            continue
        out[p] = _pixel_value(lv, p, int(c))
    check_witness(lv, out, level)
    return out


def _pixel_value(lv: PixelLevels, p: int, c: int) -> float:
    """A value of pixel p in ``[lo, hi]`` with exactly c map values below it."""
    lo, hi = lv.bounds(p)
    us = sorted(Fraction(float(v)) for v in lv.u[:, p])
    below = us[c - 1] if c > 0 else None   # must be > below (strict: spikes where x' > u)
    above = us[c] if c < len(us) else None  # must be ≤ above
    cands = []
    if above is not None and lo <= above <= hi:
        cands.append(above)
    top = hi if above is None else min(hi, above)
    f32 = np.float32(float(top))
    if Fraction(float(f32)) > top:
        f32 = np.nextafter(f32, np.float32(-1))
    cands += [Fraction(float(f32)), Fraction(float(np.float64(float(top))))]
    if below is None:
        cands.append(lo)
    for v in cands:
        if lo <= v <= hi and (below is None or v > below) and (above is None or v <= above):
            return float(v)
    raise ValueError(f"pixel {p}: level {c} is not reachable in [{float(lo)}, {float(hi)}]")


def check_witness(lv: PixelLevels, image: np.ndarray, level: np.ndarray) -> None:
    """Exact checks: ``image`` in ``[x − ε, x + ε] ∩ [0, 1]`` and ``1[image > u]`` equal to
    the spikes of ``level`` (ValueError naming the first failing pixel)."""
    for p, v in enumerate(np.asarray(image, dtype=np.float64).tolist()):
        lo, hi = lv.bounds(p)
        fv = Fraction(v)
        if not lo <= fv <= hi:
            raise ValueError(f"witness pixel {p} = {v!r} outside [{float(lo)}, {float(hi)}]")
    spk = (np.asarray(image, dtype=np.float64)[None, :] > lv.u.astype(np.float64)).astype(np.uint8)
    if not np.array_equal(spk, lv.spikes(level)):
        raise ValueError("witness image does not produce the counterexample's spikes")
