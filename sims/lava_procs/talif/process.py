"""TA-LIF Lava process: Lava's LIF with a per-neuron adaptive threshold and a reset schedule.

Fixed-point semantics (all integers; ``v`` units = weight units · 2⁶ as in Lava's LIF)::

    u      = wrap24( (u·(4096 − du − 1)) >>₀ 12 + (a << 6) )          Lava LIF, unchanged
    v      = sat24( (v·(4096 − dv)) >>₀ 12 + u + (bias_mant << bias_exp) )
    θ      = sat_b( θ + (θ_v · (v − NDS[τ])) >>₀ θ_v_shift )          before firing
    s      = v > θ ;  v[s] = 0

with ``τ`` the step inside the current sample (the reset schedule of ``LIFReset``: when
``time_step % reset_interval == reset_offset``, u, v are zeroed and θ is set back to
``vth << threshold_shift`` before that step's input is integrated; ``threshold_shift`` is the
plan's, which the runner checks equals the ``vth_shift`` of Lava's LIF models). ``NDS`` is ``[num_steps, *shape]`` in
v units; beyond ``num_steps`` the last row is used. ``θ_v`` is a per-neuron unsigned mantissa
(float θ_v ≈ θ_v_mant / 2^θ_v_shift); ``sat_b`` saturates to the signed ``theta_bits``-bit range
(``theta_bits = 24`` by default, the width of u and v; the plan's ``neuron_params``).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LIFReset


class TALIF(LIFReset):
    """Threshold-adaptive LIF with staggered per-sample resets (see module docstring)."""

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        du: int,
        dv: int,
        vth: int,
        bias_mant: np.ndarray,
        bias_exp: int,
        theta_v: np.ndarray,
        nds: np.ndarray,
        theta_v_shift: int,
        theta_bits: int,
        threshold_shift: int,
        reset_interval: int = 1,
        reset_offset: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(
            shape=shape, du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp,
            reset_interval=reset_interval, reset_offset=reset_offset, name=name,
        )
        nds = np.asarray(nds, dtype=np.int32)
        self.theta = Var(shape=shape, init=np.full(shape, int(vth) << int(threshold_shift),
                                                   dtype=np.int32))
        self.theta_v = Var(shape=shape, init=np.asarray(theta_v, dtype=np.int32).reshape(shape))
        self.nds = Var(shape=nds.shape, init=nds)
        self.proc_params["theta_v_shift"] = int(theta_v_shift)
        self.proc_params["theta_bits"] = int(theta_bits)
