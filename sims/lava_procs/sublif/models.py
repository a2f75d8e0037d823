"""Bit-accurate (``fixed_pt``) model of :class:`SubLIF` (equations in process.py).

Lava's own ``AbstractPyLifModelFixed`` integration (bit-identical to its LIF), ``LIFReset``'s
schedule, and a reset that subtracts ``vth << vth_shift`` from the neurons that fired.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed

from neurodeploy.sims.lava_procs.sublif.process import SubLIF


@implements(proc=SubLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySubLIFModelFixed(AbstractPyLifModelFixed):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval
        self.delayed = bool(proc_params.get("delayed", False))

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
        theta = int(self.vth) << self.vth_shift
        pending = self.v > theta  # delayed: the stored v is unreset, so this is last spike
        self.scale_bias()
        self.subthr_dynamics(activation_in=a_in_data)
        if self.delayed:
            self.v[pending] -= theta
        s_out = self.v > theta
        if not self.delayed:
            self.v[s_out] -= theta
        self.s_out.send(s_out)
