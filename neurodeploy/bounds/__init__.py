"""Certified robustness of canonical-LIF SNNs: S-IBP, S-CROWN (Liang et al., NeurIPS 2022) and
α-S-CROWN, for Bernoulli-coded digital inputs (ℓ∞, shared uniform map), spike inputs with
flippable positions, and direct (analog) inputs.

Modules (import them explicitly; this ``__init__`` imports nothing, so no torch):

- :mod:`.ops`          bounded operations: ``BoundLinear``, ``BoundConv2d``, ``BoundPool``
                       (spatial), ``BoundMemUpdate`` (temporal, eq. 9/10), ``BoundFire`` (eq. 7/8),
                       each with ``forward`` / ``interval`` / ``linear``;
- :mod:`.network`      the bounded view of a ``SpikingNet`` (refuses non-LIF neurons);
- :mod:`.perturbation` ``BernoulliLinfSet``, ``SpikeFlipSet``, ``AnalogLinfSet`` → input boxes;
- :mod:`.ibp`          S-IBP through the unrolled network;
- :mod:`.crown`        S-CROWN backward pass with S-IBP intermediate bounds (CROWN-IBP);
- :mod:`.alpha`        α-S-CROWN: optimised fire slopes and temporal planes (beyond the paper);
- :mod:`.certify`      ``certify`` / ``certify_many`` / ``verified_error`` → ``CertResult``;
- :mod:`.soundness`    sampling-based soundness check (used by the tests and the audit).
- :mod:`.plan_ibp`     integer S-IBP on a deployment plan (the chip's exact step) and
                       ``certify_plan`` (deployed vs float certificate on the host's maps);
- :mod:`.plan_soundness` the same sampling check against the emulator / Lava transcription.
"""
