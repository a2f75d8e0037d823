"""Issue 11 point 11: the audit of 200 MNIST images with the full ``auto`` preset, timed.

certify_snn's plain ``mnist_FC`` (the findings' "plain"), first 200 images of the MNIST test
split, ε = 0.1, known draw, full ``auto`` on the float and the deployed (Loihi 2) side, masking
checks (64 samples) with escalation, Lava replay of 20 samples. Prints wall and CPU seconds per
stage and the verdicts; the report goes to ``runs/audit200/plain/audit``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit_200.py
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_defenses import SHARED, model_for  # noqa: E402

from neurodeploy.audit.run import AuditConfig, run_audit  # noqa: E402
from neurodeploy.data.idx import load_idx_split  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    split = load_idx_split(SHARED / "data" / "mnist")
    model = model_for("plain", split, Path("runs/audit200"), True)
    cfg = AuditConfig(eps=(0.1,), attacks=("auto",), threat_models=("known",), samples=200,
                      lava_samples=20, seed=0, cert_eps=0.06)
    t = time.perf_counter()
    rep = run_audit(model, split.test.x, split.test.y, "loihi2", cfg,
                    "runs/audit200/plain/audit", quiet=True)
    print(json.dumps({"wall_s": time.perf_counter() - t,
                      "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime,
                      "stage_seconds": rep.meta.get("stage_seconds"),
                      "stage_cpu_seconds": rep.meta.get("stage_cpu_seconds")}))
    print("\n".join(rep.verdicts))


if __name__ == "__main__":
    main()
