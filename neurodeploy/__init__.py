"""neurodeploy: robust spiking neural networks from training to Loihi-style fixed point.

Importing this package is cheap and never imports torch: the Lava environment (Python 3.10,
no torch) imports ``neurodeploy.exporters.plan`` and ``neurodeploy.sims.lava_runner``.
Torch-side modules (``neurodeploy.models``, ``neurodeploy.training`` …) are imported explicitly.

Python API: ``neurodeploy.audit(model, out_dir=..., config=...)`` runs the hardware robustness
audit and returns its :class:`~neurodeploy.audit.report.AuditReport` (README, "Python API").
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "audit"]


def __getattr__(name: str) -> Any:
    """``neurodeploy.audit`` on first use (the audit package, callable as the audit)."""
    if name == "audit":  # the audit package, loaded on first use (it is upward of this one)
        from neurodeploy.registry import load_module

        return load_module("neurodeploy.audit")
    raise AttributeError(f"module 'neurodeploy' has no attribute {name!r}")
