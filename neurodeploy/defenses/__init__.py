"""Training-time defenses: HoSNN (TA-LIF + NDS), TGO (membrane constraint + noisy LIF),
adversarial training (FGSM-AT, PGD-AT, RAT) and their compositions (``tgo+at`` …).

Modules (imported lazily by :func:`neurodeploy.training.defense.make_defense` and, for the
neuron kinds ``talif`` / ``noisy``, by :mod:`neurodeploy.models`):

- :mod:`neurodeploy.defenses.hosnn` — ``TALIF`` neuron, ``collect_nds``, ``hosnn_from_lif``,
  defense ``hosnn``;
- :mod:`neurodeploy.defenses.tgo` — ``NoisyLIF`` neuron, ``membrane_constraint``,
  ``proximal_share``, defense ``tgo``;
- :mod:`neurodeploy.defenses.adversarial` — ``fgsm-at``, ``pgd-at``, ``at`` (= ``fgsm-at``),
  ``rat``;
- :mod:`neurodeploy.defenses.compose` — ``a+b`` composition rules;
- :mod:`neurodeploy.defenses.certified` — certified training (S-IBP / S-CROWN).

Defense options are one flat dict shared by all parts of a composition; each defense reads the
keys ``<prefix>_<field>`` of its frozen config (``tgo_delta``, ``at_eps``, ``hosnn_theta_v_init``,
…) with :func:`options_to_config`. This package's ``__init__`` imports no torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from neurodeploy.errors import ConfigError

__all__ = ["options_to_config"]


def options_to_config(cls: type, prefix: str, options: dict[str, Any]) -> Any:
    """Build the frozen dataclass ``cls`` from the ``<prefix>_<field>`` keys of ``options``.

    Keys with that prefix that name no field are refused (no silently ignored misspellings);
    string values (from the command line) are converted to the field's type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if not key.startswith(prefix + "_"):
            continue
        name = key[len(prefix) + 1 :]
        if name not in fields:
            known = [f"{prefix}_{n}" for n in fields]
            raise ConfigError(f"unknown defense option {key!r}; known for {prefix}: {known}")
        kwargs[name] = _convert(key, value, fields[name].type)
    return cls(**kwargs)


def _convert(key: str, value: Any, typ: Any) -> Any:
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if typ == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if typ == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"defense option {key!r}: cannot read {value!r} as {typ}") from exc
