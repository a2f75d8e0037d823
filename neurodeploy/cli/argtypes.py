"""Argument types and checks shared by the sub-commands (bad values → exit 2 before any work).

``type=`` callables for argparse raise :class:`argparse.ArgumentTypeError`, so argparse prints
its usage line and ``error: argument --x: …`` and exits 2; the list parsers raise
:class:`~neurodeploy.errors.ConfigError` (exit 2) naming the option and the bad item.
"""

from __future__ import annotations

import argparse
import math

from neurodeploy.errors import ConfigError


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, limits, sizes)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    return _float(text)


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def unit_float(text: str) -> float:
    """A number in [0, 1] (an ℓ∞ radius on images in [0, 1], a probability, a decay)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{value:g} is outside [0, 1] (inputs are images in [0, 1] or spike probabilities)")
    return value


def parse_float_list(text: str, option: str, lo: float | None = None,
                     hi: float | None = None) -> list[float]:
    """``"0.05,0.1"`` → ``[0.05, 0.1]``; an empty item (``0.1,,0.2``), a non-number, NaN/inf
    or a value outside ``[lo, hi]`` is a :class:`ConfigError` naming ``option``."""
    items = [t.strip() for t in str(text).split(",")]
    if len(items) > 1 and items[-1] == "":
        items = items[:-1]  # a trailing comma is harmless
    if not items or items == [""]:
        raise ConfigError(f"{option}: no values given")
    out: list[float] = []
    for i, tok in enumerate(items):
        if tok == "":
            raise ConfigError(f"{option} {text!r}: item {i + 1} is empty")
        try:
            value = float(tok)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: {tok!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{option} {text!r}: {tok!r} is not finite")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{option} {text!r}: {tok} is outside [{lo}, {hi}]")
        out.append(value)
    return out


def parse_name_list(text: str, option: str) -> list[str]:
    """``"pgd,apgd-ce"`` → names; empty items are an error (``pgd,,apgd-ce``)."""
    items = [t.strip() for t in str(text).split(",")]
    if len(items) > 1 and items[-1] == "":
        items = items[:-1]
    if not items or items == [""]:
        raise ConfigError(f"{option}: no names given")
    if "" in items:
        raise ConfigError(f"{option} {text!r}: item {items.index('') + 1} is empty")
    return items


def seed_int(text: str) -> int:
    """A seed in ``[0, 2**63 - 1]`` (:data:`neurodeploy.limits.MAX_SEED`)."""
    from neurodeploy.limits import MAX_SEED

    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer in [0, 2**63 - 1], got {value}")
    return value


def steps_int(text: str) -> int:
    """Time steps T in ``[1, MAX_NUM_STEPS]`` (:data:`neurodeploy.limits.MAX_NUM_STEPS`)."""
    from neurodeploy.limits import MAX_NUM_STEPS

    value = _int(text)
    if not 1 <= value <= MAX_NUM_STEPS:
        raise argparse.ArgumentTypeError(f"time steps must be in [1, {MAX_NUM_STEPS}], got {value}")
    return value


def count_or_all(text: str) -> int:
    """A count >= 0, or -1 for "all"."""
    value = _int(text)
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (or -1 for all), got {value}")
    return value
