"""Error types. Every user-facing failure raises a subclass of :class:`NeurodeployError`.

The CLI turns these into a one-line message and a non-zero exit code (2 for bad input,
3 for a model that does not fit the hardware, 4 for a missing optional environment).
"""

from __future__ import annotations


class NeurodeployError(ValueError):
    """Base class: a problem the user can fix (bad input, bad config, missing file…)."""

    exit_code = 2


class ConfigError(NeurodeployError):
    """An invalid configuration value, architecture string, profile or option."""


class DataError(NeurodeployError):
    """A missing, corrupt, truncated or ill-shaped data file."""


class CheckpointError(NeurodeployError):
    """A checkpoint that cannot be read, does not match its architecture, or holds NaN/inf."""


class HardwareFitError(NeurodeployError):
    """A model that does not fit the chosen hardware profile (names the layer and the limit)."""

    exit_code = 3


class EnvironmentMissingError(NeurodeployError):
    """An optional environment (e.g. the Lava Python 3.10 environment) is not available."""

    exit_code = 4
