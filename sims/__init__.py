"""Backends that run a deployment plan (:mod:`neurodeploy.exporters.plan`).

- :mod:`neurodeploy.sims.emulator` — batched bit-exact integer emulator (torch, CPU/CUDA);
- :mod:`neurodeploy.sims.lava_runner` — the plan as real Lava processes (Lava environment);
- :mod:`neurodeploy.sims.lava_env` — finds the Lava environment and calls the runner in a
  subprocess from the main side;
- :mod:`neurodeploy.sims.netx_runner` — a netx HDF5 file run by lava-dl's own loader in Lava
  (Lava environment with lava-dl), called the same way.

Importing this package never imports torch or lava (the Lava environment imports it).
"""
