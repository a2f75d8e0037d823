"""Upper bounds on sizes and seeds, checked before anything is allocated or run.

A config or command line may ask for more than the machine holds (``num_steps = 10**9``) or
for a seed no generator takes (``seed = 10**20``); these checks refuse it up front with a
:class:`~neurodeploy.errors.ConfigError` (exit 2) instead of a failed allocation or an
``OverflowError`` deep inside a stage.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from neurodeploy.errors import ConfigError

#: Seeds are ``0 ≤ seed ≤ 2**63 − 1`` (torch.manual_seed takes int64/uint64, numpy ≥ 0).
MAX_SEED = 2**63 - 1
#: Most time steps T of one run (the papers use T ≤ 100; a chip run of 10⁵ steps is minutes).
MAX_NUM_STEPS = 100_000
#: Bytes of one float32 element.
FLOAT_BYTES = 4


def check_seed(value: object, where: str) -> int:
    """``value`` as a seed in ``[0, MAX_SEED]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{where} = {value!r}: a seed is an integer in [0, 2**63 - 1]")
    return value


def check_num_steps(value: object, where: str) -> int:
    """``value`` as a number of time steps in ``[1, MAX_NUM_STEPS]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NUM_STEPS:
        raise ConfigError(f"{where} = {value!r}: time steps must be an integer in "
                          f"[1, {MAX_NUM_STEPS}]")
    return value


def memory_bytes() -> int:
    """Physical memory of this machine (``sysconf``); 16 GiB where it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def check_tensor_size(shape: Sequence[int], where: str, fraction: float = 0.5) -> int:
    """Refuse a float32 tensor of ``shape`` larger than ``fraction`` of physical memory;
    returns its size in bytes, ``FLOAT_BYTES · Π shape``."""
    size = FLOAT_BYTES * math.prod(int(s) for s in shape)
    budget = int(fraction * memory_bytes())
    if size > budget:
        raise ConfigError(f"{where}: a [{' × '.join(str(int(s)) for s in shape)}] tensor needs "
                          f"{size / 2**30:.3g} GiB, more than {budget / 2**30:.3g} GiB "
                          f"({fraction:.0%} of this machine's memory); lower it")
    return size
