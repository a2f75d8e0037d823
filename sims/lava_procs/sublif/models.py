"""Bit-accurate (``fixed_pt``) model of :class:`SubLIF` (equations in process.py).

Lava's own ``AbstractPyLifModelFixed`` integration (bit-identical to its LIF), ``LIFReset``'s
schedule, the chosen reset, and the recurrent input ``W_rec · s[t−1]`` added to ``a_in``.
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
    w_rec: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    a_bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    w_rec_lo: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    a_bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    # per-neuron decays (the process declares them with the population's shape)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval
        self.reset = proc_params.get("reset", "subtract")
        self.recurrent = bool(proc_params.get("recurrent", False))
        self.w_rec_exp = int(proc_params.get("w_rec_exp", 0))
        self.fine_bias = bool(proc_params.get("fine_current_bias", False))
        self.a_bias_exp = int(proc_params.get("a_bias_exp", 0))
        self.v_min = proc_params.get("v_min")
        bits = proc_params.get("graded_bits")
        self.n_max = None if bits is None else (1 << int(bits)) - 1
        self.s_prev = None

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        if self.s_prev is None:
            self.s_prev = np.zeros(self.v.shape, dtype=bool)
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
            self.s_prev[:] = False
        if self.recurrent:
            s_prev = self.s_prev.reshape(-1).astype(np.int64)
            # two recurrent synapse groups: W_rec under exponent k, W_rec_lo under 0
            rec = ((self.w_rec.astype(np.int64) @ s_prev) << self.w_rec_exp) \
                + self.w_rec_lo.astype(np.int64) @ s_prev + self.a_bias.astype(np.int64)
            # the sum a Dense would send: an int32 word
            rec = ((rec + 2**31) % 2**32 - 2**31).reshape(self.v.shape)
            a_in_data = ((a_in_data.astype(np.int64) + rec + 2**31) % 2**32
                         - 2**31).astype(np.int32)
        theta = int(self.vth) << self.vth_shift
        pending = self.v > theta  # subtract_delayed: the stored v is unreset: last spike
        self.scale_bias()
        if self.fine_bias:  # a bias into u below one weight unit: add it after the shift
            act = (a_in_data.astype(np.int64) << self.act_shift) \
                + (self.a_bias_mant.astype(np.int64) << self.a_bias_exp).reshape(self.v.shape)
            shift, self.act_shift = self.act_shift, 0  # the shift is applied above
            self.subthr_dynamics(activation_in=((act + 2**31) % 2**32 - 2**31).astype(np.int32))
            self.act_shift = shift
        else:
            self.subthr_dynamics(activation_in=a_in_data)
        if self.reset == "none":  # non-spiking read-out: the membrane is the output
            self.s_out.send(self.v.copy())
            return
        if self.reset == "subtract_delayed":
            self.v[pending] -= theta
        elif self.reset == "zero_delayed":
            self.v[pending] = 0
        if self.n_max is not None:  # graded: a count of whole thresholds, sent as payload
            n = np.clip(self.v.astype(np.int64) // theta, 0, self.n_max)
            self.v -= (n * theta).astype(self.v.dtype)
            if self.v_min is not None:
                np.maximum(self.v, self.v_min, out=self.v)
            self.s_prev = n > 0
            self.s_out.send(n.astype(np.int32))
            return
        s_out = self.v > theta
        if self.reset == "subtract":
            self.v[s_out] -= theta
            if self.v_min is not None:  # the v floor, after the reset
                np.maximum(self.v, self.v_min, out=self.v)
        elif self.reset == "zero":
            self.v[s_out] = 0
        self.s_prev = s_out.copy()
        self.s_out.send(s_out)
