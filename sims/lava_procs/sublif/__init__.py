"""Subtract-reset LIF: a Lava process (``process.py``) and its bit-accurate model (``models.py``).

Imported only in the Lava environment (needs ``lava``)."""
