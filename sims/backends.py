"""The four backends behind the one contract of :mod:`neurodeploy.trace`.

``run(spikes [T, B, *input_shape], record) -> Trace``:

========  ===============================================  =================================
name      class                                            needs
========  ===============================================  =================================
float     :class:`~neurodeploy.models.SpikingNet`          the model
emulator  :class:`~neurodeploy.sims.emulator.Emulator`     the plan
twin      :class:`~neurodeploy.sims.twin.HardwareTwin`     the plan (differentiable)
lava      :class:`LavaBackend` (wraps ``run_lava``)        the plan + the Lava environment
========  ===============================================  =================================

:func:`make_backend` builds one by name from this explicit table. The Lava runner itself
(``sims/lava_runner``) runs in the Python 3.10 Lava environment without torch and returns
numpy arrays; :class:`LavaBackend` turns them into a :class:`~neurodeploy.trace.Trace`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.trace import Backend, Trace


class LavaBackend:
    """Lava (``Loihi2SimCfg(select_tag="fixed_pt")``) in its own environment, as a backend.

    Every call compiles the plan once and runs all B samples back to back in one subprocess
    (:func:`neurodeploy.sims.lava_env.run_lava`); ``timeout_s`` bounds the subprocess.
    """

    name = "lava"

    def __init__(self, plan: DeploymentPlan, timeout_s: float = 600.0) -> None:
        self.plan = plan
        self.timeout_s = float(timeout_s)

    def run(self, spikes: torch.Tensor | np.ndarray, record: bool = False) -> Trace:
        """Spikes ``[T, B, *input_shape]`` → Trace (uint8 spikes; ``record`` keeps every
        layer; ``meta`` holds the runner's timings and ``wall_s``)."""
        from neurodeploy.sims.lava_env import run_lava

        x = torch.as_tensor(spikes).detach().cpu().numpy().astype(np.uint8)
        res = run_lava(self.plan, x, timeout_s=self.timeout_s, record_layers=record)
        out = torch.from_numpy(np.ascontiguousarray(res.out_spikes))
        layers = tuple(torch.from_numpy(np.ascontiguousarray(s)) for s in res.layer_spikes)
        logits = out.sum(0, dtype=torch.int64)
        meta = {**res.meta, "wall_s": res.wall_s}
        if res.out_v is not None:  # membrane read-out: Σ_t v, as the emulator
            v = torch.from_numpy(np.ascontiguousarray(res.out_v)).to(torch.int64)
            logits, meta["out_v"] = v.sum(0), v
        return Trace(out_spikes=out, logits=logits, spikes=layers,
                     theta=tuple(None for _ in layers), backend=self.name, meta=meta)


def _float(model: Any = None, plan: Any = None, **_: Any) -> Backend:
    if model is None:
        raise ConfigError("the float backend needs the model")
    return model


def _emulator(model: Any = None, plan: Any = None, device: str = "cpu", **_: Any) -> Backend:
    from neurodeploy.sims.emulator import Emulator

    return Emulator(_need_plan(plan, "emulator"), device=device)


def _twin(model: Any = None, plan: Any = None, surrogate: str = "rect", **_: Any) -> Backend:
    from neurodeploy.sims.twin import HardwareTwin

    return HardwareTwin(_need_plan(plan, "twin"), encoding="spikes", surrogate=surrogate)


def _lava(model: Any = None, plan: Any = None, timeout_s: float = 600.0, **_: Any) -> Backend:
    return LavaBackend(_need_plan(plan, "lava"), timeout_s=timeout_s)


def _need_plan(plan: Any, name: str) -> DeploymentPlan:
    if plan is None:
        raise ConfigError(f"the {name} backend needs the deployment plan")
    return plan


#: Backend name → factory ``(model=…, plan=…, device=…, surrogate=…, timeout_s=…)``.
BACKENDS: dict[str, Callable[..., Backend]] = {
    "float": _float, "emulator": _emulator, "twin": _twin, "lava": _lava,
}


def make_backend(name: str, *, model: Any = None, plan: DeploymentPlan | None = None,
                 device: str = "cpu", surrogate: str = "rect", timeout_s: float = 600.0
                 ) -> Backend:
    """Build backend ``name`` (one of :data:`BACKENDS`) for ``model`` / ``plan``."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[name](model=model, plan=plan, device=device, surrogate=surrogate,
                          timeout_s=timeout_s)
