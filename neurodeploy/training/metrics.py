"""Atomic JSON files for metrics, results and run state (pure Python, no torch).

Every output file is written to a temporary file in the same folder and renamed over the
target, so a reader never sees a half-written file and an interrupted run leaves the previous
version intact.
"""

from __future__ import annotations

import json
import os
from typing import Any

from neurodeploy.errors import DataError
from neurodeploy.jsonable import jsonable


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder + rename; mode
    from the umask; see :mod:`neurodeploy.atomicio`)."""
    from neurodeploy.atomicio import write_text_atomic as _write

    _write(path, text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``json.dump`` (indented, NaN → null) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or corrupt file raises :class:`DataError` naming it."""
    from neurodeploy.safeload import load_json

    return load_json(path, "JSON file", DataError)  # depth-limited, data only
