"""Model → NIR graph → fixed-point deployment plan for a hardware profile.

- :mod:`neurodeploy.exporters.nir_export` — SpikingNet ⇄ standard NIR (``to_nir``,
  ``write_nir``, ``from_nir``, ``parse_graph``); documents the dt/τ mapping and the snntorch
  ``import_from_nir`` findings;
- :mod:`neurodeploy.exporters.nir_chain` — the compiler's reader (``parse_graph``: NIR → a chain
  of synapse → neuron layers; the per-node readers in
  :mod:`neurodeploy.exporters.nir_chain_nodes`);
- :mod:`neurodeploy.exporters.profiles` — hardware profiles (TOML + schema.json →
  frozen :class:`HardwareProfile`; ``load_profile``, ``list_profiles``);
- :mod:`neurodeploy.exporters.compiler` — ``compile_graph`` / ``compile_model``: Lava
  fixed-point quantization (:mod:`neurodeploy.exporters.quantize`), resource map and fit
  checks (:mod:`neurodeploy.exporters.resources`);
- :mod:`neurodeploy.exporters.plan` — the plan file (numpy only);
- :mod:`neurodeploy.exporters.spikingjelly` — a SpikingJelly network → discrete graph / NIR /
  plan (``convert``, ``compile_module``), SpikingJelly's own discretisation;
- :mod:`neurodeploy.exporters.netx` — plan ⇄ lava-dl's netx HDF5 (``write_netx``,
  ``read_netx``, ``check_expressible``).

Importing this package imports nothing heavy (no torch, no nir): the Lava environment
imports :mod:`neurodeploy.exporters.plan` through it.
"""
