"""On-chip TA-LIF (HoSNN's threshold-adaptive LIF) as a custom Lava process.

Kept in its own folder because Lava's compiler executes every module in the folder of a
process's defining file when it looks for process models: only ``process.py`` and
``models.py`` live here, both free of side effects. Imported only in the Lava environment.
"""
