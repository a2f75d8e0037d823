"""neurodeploy: robust spiking neural networks from training to Loihi-style fixed point.

Importing this package is cheap and never imports torch: the Lava environment (Python 3.10,
no torch) imports ``neurodeploy.exporters.plan`` and ``neurodeploy.sims.lava_runner``.
Torch-side modules (``neurodeploy.models``, ``neurodeploy.training`` …) are imported explicitly.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
