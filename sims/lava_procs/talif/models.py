"""Bit-accurate (``fixed_pt``) process model of :class:`TALIF` (equations in process.py).

The current/voltage update and the bias scaling are Lava's own ``AbstractPyLifModelFixed``
code, so the integration is bit-identical to Lava's LIF; this model adds the integer threshold
adaptation and the per-sample reset of θ.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed

from neurodeploy.sims.lava_procs.talif.process import TALIF


def _rshift0(x: np.ndarray, n: int) -> np.ndarray:
    """Arithmetic right shift rounding toward zero (Loihi's decay rounding)."""
    return np.sign(x) * np.right_shift(np.abs(x), n)


@implements(proc=TALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyTALIFModelFixed(AbstractPyLifModelFixed):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    theta: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    theta_v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    nds: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval
        self.theta_v_shift = proc_params["theta_v_shift"]
        # θ saturates to the signed theta_bits range (24 = the width of u and v by default)
        self.theta_sat = 2 ** (int(proc_params["theta_bits"]) - 1) - 1

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        local_t = (self.time_step - self.reset_offset) % self.reset_interval
        if local_t == 0:
            self.u *= 0
            self.v *= 0
            self.theta[:] = int(self.vth) << self.vth_shift
        self.scale_bias()
        self.subthr_dynamics(activation_in=a_in_data)
        row = min(local_t, self.nds.shape[0] - 1)
        err = self.v.astype(np.int64) - self.nds[row].astype(np.int64)
        step = _rshift0(self.theta_v.astype(np.int64) * err, self.theta_v_shift)
        self.theta[:] = np.clip(self.theta.astype(np.int64) + step, -self.theta_sat,
                                 self.theta_sat).astype(np.int32)
        s_out = self.v > self.theta
        self.v[s_out] = 0
        self.s_out.send(s_out)
