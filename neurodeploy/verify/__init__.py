"""Exact (complete) robustness verification of a deployment plan under the known draw.

:func:`verify_plan` decides, per example, whether any image in the ε-ball ∩ [0, 1] changes the
plan's decision as the bit-exact emulator computes it: ``robust`` (a proof), ``non_robust``
(a replayed counterexample image) or ``unknown`` (solver timeout; never counted robust).
Modules: :mod:`.levels` (the exact input set), :mod:`.support` (what is encoded),
:mod:`.cpsat_ops` + :mod:`.intmodel` (the CP-SAT encoding of the integer step),
:mod:`.search` (fast counterexample search), :mod:`.plan_verify` (the pipeline),
:mod:`.exhaustive` (brute-force ground truth for tests).
"""

from neurodeploy.verify.plan_verify import (
    ExampleResult,
    VerifyError,
    VerifyResult,
    verify_example,
    verify_plan,
)
from neurodeploy.verify.support import UnsupportedPlan

__all__ = ["ExampleResult", "UnsupportedPlan", "VerifyError", "VerifyResult",
           "verify_example", "verify_plan"]
