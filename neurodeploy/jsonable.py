"""The one JSON sanitiser: turn results, reports, plan headers and configs into plain JSON data.

Standard library only (it runs in the Lava environment too, where plan headers are written).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of ``obj``.

    dict → dict with string keys; list / tuple / set → list (sets sorted when they can be);
    dataclass instances → dicts; numpy / torch arrays and tensors → nested lists (``tolist``);
    numpy / torch scalars → Python numbers (``item``); paths → str; NaN and ±inf → None (JSON
    has neither). Anything else is returned unchanged (``json.dumps`` then rejects what it
    cannot write).
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist") and callable(obj.tolist) and getattr(obj, "ndim", 0) > 0:
        return jsonable(obj.tolist())  # numpy arrays, torch tensors
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars (0-d included)
        return jsonable(obj.item())
    return obj
