"""Subtract-reset LIF Lava process: Lava's ``LIFReset`` whose spike subtracts the threshold.

Fixed-point semantics (all integers; ``v`` in weight units · 2^threshold_shift as in Lava's LIF;
``>>₀`` rounds toward zero)::

    u  = wrap24( (u·(4096 − du − 1)) >>₀ 12 + (a << 6) )          Lava LIF, unchanged
    v  = sat24( (v·(4096 − dv)) >>₀ 12 + u + (bias_mant << bias_exp) )
    s  = v > (vth << 6) ;   v[s] = v[s] − (vth << 6)               the only change: subtract

This is the reset of sinabs' ``IAF``/``LIF`` (``MembraneSubtract``), rockpool's ``LIFTorch`` and
snntorch's ``Leaky(reset_mechanism="subtract", reset_delay=False)``; Loihi 2 runs it as a
microcode neuron. With ``delayed=True`` (snntorch's default ``reset_delay=True``) nothing is
reset at the spike; the next step subtracts it after the decay::

    p = v > (vth << 6)        (the stored v: the last step's spike)
    v = sat24( (v·(4096 − dv)) >>₀ 12 + u + bias ) − p·(vth << 6);   s = v > (vth << 6)

The per-sample reset schedule (``reset_interval``/``reset_offset``) is ``LIFReset``'s: u and v
are zeroed before that step's input is integrated.
"""

from __future__ import annotations

from lava.proc.lif.process import LIFReset


class SubLIF(LIFReset):
    """LIF with reset by subtraction (see the module docstring): LIFReset's parameters plus
    ``delayed`` (subtract one step late, snntorch's ``reset_delay=True``)."""

    def __init__(self, *, delayed: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proc_params["delayed"] = bool(delayed)
