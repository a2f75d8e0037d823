"""Reading files without running code: the one module every loader of the project goes through.

A file in an output folder (a checkpoint, a resumable state, a plan, a report) may have been
written by someone else; reading it must never execute anything it holds. The rules:

- PyTorch files (checkpoints, training/attack/audit/shard state) are read with
  ``torch.load(weights_only=True)``: PyTorch's restricted unpickler builds tensors, dicts,
  lists, tuples, strings, numbers, ``None`` and ``bool`` and refuses every other global (a
  ``__reduce__`` payload is an error, not a call). No extra globals are allowed
  (``torch.serialization.add_safe_globals`` is not used): every state of the project is plain
  data. The environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override an
  explicit ``weights_only=True``.
- ``.npz`` files (plans, Lava runner inputs/outputs) are read with ``allow_pickle=False``:
  object arrays are refused.
- JSON is data by construction; a document nested deeper than :data:`MAX_JSON_DEPTH`
  (a report is < 10 deep) is refused before the parser recurses, so a 100 000-deep file is a
  one-line error, not a ``RecursionError``.
- Arrays read from a file (NIR, plans) must hold real numbers (:func:`check_real_array`):
  bytes, strings, objects and complex numbers are refused instead of silently truncated.

Standard library and numpy at import (the Lava environment imports this module through
``neurodeploy.exporters.plan``); torch is imported only by :func:`load_torch`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.errors import DataError

#: Deepest nesting of ``[``/``{`` accepted in a JSON document.
MAX_JSON_DEPTH = 64
#: Numpy dtype kinds of a real numeric array: bool, signed, unsigned, float.
REAL_KINDS = frozenset("biuf")

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
_UNSUPPORTED = re.compile(r"Unsupported (?:global: GLOBAL|operand|class) (\S+)")


def load_torch(path: str | os.PathLike, what: str, error: type[Exception] = DataError) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure (including a refused
    global of a pickle payload) raises ``error`` naming ``what`` and the file.

    Parameters
    ----------
    path : the file.
    what : words for the message, e.g. ``"attack state"``.
    error : the exception type to raise (a :class:`~neurodeploy.errors.NeurodeployError`).
    """
    import pickle

    import torch

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # a global outside tensors and plain data
        found = _UNSUPPORTED.search(str(exc))
        raise error(f"{what} {str(path)!r} holds Python objects other than tensors and plain "
                    f"data ({'global ' + found.group(1) if found else 'a refused pickle item'}); refused: "
                    f"loading it could run code") from exc
    except Exception as exc:  # zip/EOF errors, OSError
        raise error(f"{what} {str(path)!r} cannot be read: {_first_line(exc)}") from exc


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in JSON ``text`` (strings skipped), without recursion.

    ``depth = max_k (#opening − #closing brackets among the first k brackets)``.
    """
    depth = best = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        best = max(best, depth)
    return best


def loads_json(text: str, what: str, error: type[Exception] = DataError,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON ``text`` (from ``what``); bad syntax or nesting deeper than ``max_depth``
    raises ``error``."""
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{what}: JSON nested {depth} deep (at most {max_depth} accepted)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: not valid JSON ({_first_line(exc)})") from exc


def load_json(path: str | os.PathLike, what: str = "JSON file",
              error: type[Exception] = DataError, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read and parse a JSON file (:func:`loads_json`); a missing or unreadable file raises
    ``error`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{what} {str(path)!r}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(path)!r}: cannot be read ({_first_line(exc)})") from exc
    return loads_json(text, f"{what} {str(path)!r}", error, max_depth)


def load_npz(path: str | os.PathLike, what: str, error: type[Exception] = DataError) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read with ``allow_pickle=False`` (object arrays are
    refused); any failure raises ``error``."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise error(f"{what} {str(path)!r} cannot be read safely "
                    f"({type(exc).__name__}: {_first_line(exc)})") from exc


def check_real_array(value: Any, where: str, error: type[Exception] = DataError) -> np.ndarray:
    """``value`` as a numpy array of real numbers (bool/int/uint/float); bytes, strings,
    objects and complex numbers raise ``error`` naming ``where``."""
    if isinstance(value, bytes | str):
        raise error(f"{where}: holds {type(value).__name__}, not numbers")
    try:
        a = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise error(f"{where}: not a numeric array ({_first_line(exc)})") from exc
    if a.dtype.kind not in REAL_KINDS:
        raise error(f"{where}: array of dtype {a.dtype} ({_KIND_WORDS.get(a.dtype.kind, 'other')}); "
                    f"real numbers (bool, int, float) expected")
    return a


_KIND_WORDS = {"c": "complex numbers", "S": "bytes", "U": "strings", "O": "Python objects",
               "V": "raw records", "M": "dates", "m": "time spans"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_records(path: str | os.PathLike, cls: type, what: str,
                 error: type[Exception] = DataError) -> list[Any]:
    """A JSON list of objects read back as instances of the dataclass ``cls``; an entry that
    is not an object, or whose keys are not ``cls``'s fields (missing required ones or
    unknown ones), raises ``error``."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    data = load_json(path, what, error)
    if not isinstance(data, list) or not all(isinstance(d, dict) and required <= set(d) <= set(fields)
                                             for d in data):
        raise error(f"{what} {str(path)!r}: not a list of {cls.__name__} records")
    return [cls(**d) for d in data]


def check_state_files(folder: str | os.PathLike, what: str = "resumable state") -> int:
    """Read every ``*.pt`` under ``folder`` as data only (:func:`load_torch`) before a job
    resumes from any of them, so a planted file stops the job before it does any work;
    returns how many were checked."""
    files = sorted(Path(folder).rglob("*.pt"))
    for p in files:
        load_torch(p, what, DataError)
    return len(files)


def data_depth(obj: Any) -> int:
    """Deepest nesting of lists/tuples/dicts in parsed data, without recursion."""
    best, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            best = max(best, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return best


def loads_toml(text: str, what: str, error: type[Exception] = DataError,
               max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse TOML ``text`` (from ``what``); bad syntax, or tables/arrays nested deeper than
    ``max_depth`` (the parser's own recursion limit included), raise ``error``."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what}: invalid TOML ({exc})") from exc
    except RecursionError as exc:
        raise error(f"{what}: TOML nested too deep (at most {max_depth} accepted)") from exc
    if data_depth(data) > max_depth:
        raise error(f"{what}: TOML nested {data_depth(data)} deep (at most {max_depth} accepted)")
    return data
