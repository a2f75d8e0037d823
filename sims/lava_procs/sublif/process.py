"""Subtract-reset (and recurrent) LIF Lava process: Lava's ``LIFReset`` with other resets.

Fixed-point semantics (all integers; ``v`` in weight units · 2^threshold_shift as in Lava's LIF;
``>>₀`` rounds toward zero; θ = vth << 6)::

    a  = a_in + W_rec · s[t−1] + a_bias                   (only with w_rec / a_bias)
         (+ (W_rec · s[t−1]) · (2^k − 1) + W_rec_lo · s[t−1] with a second recurrent
          synapse group ``w_rec_lo``, exponent ``w_rec_exp`` = k on W_rec)
    u  = wrap24( (u·(4096 − du − 1)) >>₀ 12 + (a << 6) )          Lava LIF, unchanged
         (+ (a_bias_mant << a_bias_exp) next to a << 6: a fine current bias in u units)
    v  = sat24( (v·(4096 − dv)) >>₀ 12 + u + (bias_mant << bias_exp) )
    reset "subtract":          s = v > θ;  v[s] = v[s] − θ
    reset "subtract_delayed":  v = v − p·θ with p = (stored v > θ), the last step's spike
                               (nothing reset at the spike: snntorch ``reset_delay=True``);
                               s = v > θ
    reset "zero":              s = v > θ;  v[s] = 0              (with w_rec: a recurrent LIF)
    reset "zero_delayed":      v = 0 where p (last step's spike, as above); s = v > θ
                               (snntorch Synaptic/RLeaky/RSynaptic zero reset)
    graded (``graded_bits`` b, optional, reset "subtract" only): n = clip(v // θ, 0, 2^b − 1);
                               v ← v − n·θ; ``s_out`` sends n (a graded spike payload)
    v floor (``v_min``, optional, reset "subtract" only): v ← max(v, v_min) after the reset
                               (sinabs ``min_v_mem``; the plan's ``neuron_params["v_min"]``)
    reset "none":              no spike, no reset: ``s_out`` sends v itself each step (a
                               non-spiking read-out, NIR LI/CubaLI/I; on Loihi 2 a graded
                               spike whose 24-bit payload is the membrane)

``subtract`` is the reset of sinabs' ``IAF``/``LIF`` (``MembraneSubtract``), rockpool's
``LIFTorch`` and snntorch's ``Leaky(reset_mechanism="subtract", reset_delay=False)``; Loihi 2
runs these as microcode neurons. ``W_rec`` (effective Dense weights, ``[N, N]``, Lava's flat
neuron order) is applied inside the process so that the per-sample reset schedule
(``reset_interval``/``reset_offset``, ``LIFReset``'s: u and v zeroed before that step's input
is integrated) also clears ``s[t−1]`` — a recurrent ``Dense`` would carry the previous sample's
last spikes into the next one.

Per-neuron decays (``du``/``dv`` arrays of the population's shape): Lava's ``LIF`` declares
``du``/``dv`` as one value per population (``Var(shape=(1,))``); this process declares them
per neuron when given as arrays, and Lava's own fixed-point integration
(``AbstractPyLifModelFixed.subthr_dynamics``) is elementwise in them, so each neuron decays
by its own ``(u·(4096 − du_i − 1)) >>₀ 12`` and ``(v·(4096 − dv_i)) >>₀ 12``.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LIFReset

RESETS = ("zero", "subtract", "subtract_delayed", "zero_delayed", "none")


class SubLIF(LIFReset):
    """LIF with another reset and an optional recurrent matrix (module docstring):
    LIFReset's parameters plus ``reset`` and ``w_rec``; ``delayed=True`` is
    ``reset="subtract_delayed"``."""

    def __init__(self, *, delayed: bool = False, reset: str | None = None,
                 w_rec: np.ndarray | None = None, a_bias: np.ndarray | None = None,
                 v_min: int | None = None, graded_bits: int | None = None,
                 w_rec_lo: np.ndarray | None = None, w_rec_exp: int = 0,
                 a_bias_mant: np.ndarray | None = None, a_bias_exp: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        reset = reset or ("subtract_delayed" if delayed else "subtract")
        if reset not in RESETS:
            raise ValueError(f"SubLIF reset {reset!r} is not one of {RESETS}")
        self.proc_params["reset"] = reset
        if v_min is not None and reset != "subtract":
            raise ValueError(f"SubLIF v_min needs reset 'subtract', got {reset!r}")
        self.proc_params["v_min"] = None if v_min is None else int(v_min)
        if graded_bits is not None and reset != "subtract":
            raise ValueError(f"SubLIF graded_bits needs reset 'subtract', got {reset!r}")
        self.proc_params["graded_bits"] = None if graded_bits is None else int(graded_bits)
        n = int(np.prod(kwargs["shape"]))
        w = np.zeros((n, n), dtype=np.int32) if w_rec is None else np.asarray(w_rec, np.int32)
        self.w_rec = Var(shape=(n, n), init=w)
        self.a_bias = Var(shape=(n,), init=np.zeros(n, np.int32) if a_bias is None
                          else np.asarray(a_bias, np.int32).reshape(n))
        self.w_rec_lo = Var(shape=(n, n), init=np.zeros((n, n), np.int32) if w_rec_lo is None
                            else np.asarray(w_rec_lo, np.int32))
        self.proc_params["w_rec_exp"] = int(w_rec_exp)
        self.a_bias_mant = Var(shape=(n,), init=np.zeros(n, np.int32) if a_bias_mant is None
                               else np.asarray(a_bias_mant, np.int32).reshape(n))
        self.proc_params["a_bias_exp"] = int(a_bias_exp)
        self.proc_params["fine_current_bias"] = a_bias_mant is not None
        self.proc_params["recurrent"] = w_rec is not None or a_bias is not None \
            or w_rec_lo is not None
        shape = tuple(kwargs["shape"])
        for name in ("du", "dv"):  # per-neuron decays (module docstring)
            d = np.asarray(kwargs.get(name, 0))
            init = (np.broadcast_to(d, shape) if d.size == 1 else d.reshape(shape))
            setattr(self, name, Var(shape=shape, init=np.ascontiguousarray(init, np.int32)))
