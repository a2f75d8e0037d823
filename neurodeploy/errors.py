"""Error types. Every user-facing failure raises a subclass of :class:`NeurodeployError`.

The CLI turns these into a one-line message and one exit code per cause (:data:`EXIT_CODES`):
2 bad input, 3 a model that does not fit the hardware, 4 the Lava environment missing, 5 a Lava
runtime failure or timeout, 130 interrupted (SIGINT; 143 for SIGTERM), 1 an unexpected bug.
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


class LavaRuntimeError(NeurodeployError):
    """The Lava runner failed, died or timed out (its processes are gone when this is raised)."""

    exit_code = 5


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C (exit 143)."""


#: Every exit code the command line uses, and its cause (README "Command line" lists them).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with --debug's traceback)",
    2: "bad input: arguments, config, data, checkpoint, plan or output path",
    3: "the model does not fit the hardware profile",
    4: "the Lava environment is missing",
    5: "the Lava runner failed or timed out",
    130: "interrupted (Ctrl-C / SIGINT); state saved, rerun with --resume",
    143: "terminated (SIGTERM); state saved, rerun with --resume",
}
