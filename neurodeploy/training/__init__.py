"""Training: one BPTT loop (:mod:`.trainer`) that asks a defense (:mod:`.defense`) for the loss.

Importing this package does not import torch; import :mod:`neurodeploy.training.trainer`
explicitly (``TrainConfig``, ``train``, ``TrainResult``).
"""
