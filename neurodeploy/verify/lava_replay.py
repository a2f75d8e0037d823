"""Counterexamples of the exact verifier replayed on the real Lava runner.

A ``non_robust`` verdict carries a counterexample image ``x'`` (checked inside the ε-ball in
exact arithmetic and replayed on the bit-exact emulator by
:mod:`neurodeploy.verify.plan_verify`). Here the same image is encoded as the host encodes it
(float32, ``s[t, p] = 1[x'_p > u[t, p]]`` with the example's known map ``u``) and run through
the plan's Lava processes (:func:`neurodeploy.sims.lava_env.run_lava`, ``fixed_pt``), all
counterexamples of one call in one Lava run. Per example the Lava decision
``argmax_j Σ_t s_out[t, j]`` (ties to the lowest class, the emulator's rule) must equal the
emulator's on the same spikes; a disagreement is an error (:class:`LavaReplayError`, exit 1),
never a verdict. The output spike trains are compared too and their mismatches counted.

Each replayed record gets ``lava_replayed: true`` and ``lava_predicted``; every other record
(no counterexample, or Lava not run) ``lava_replayed: false``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.plan import DeploymentPlan


class LavaReplayError(NeurodeployError):
    """Lava and the emulator decide a counterexample differently."""

    exit_code = 1


def counterexample_spikes(records: list[dict[str, Any]], u: np.ndarray, positions: list[int]
                          ) -> np.ndarray:
    """Host spikes ``[T, B, P]`` (uint8) of the records' counterexample images;
    ``positions[b]`` is record b's column in the maps ``u`` ``[T, N, P]``."""
    imgs = np.stack([np.asarray(r["counterexample"], dtype=np.float32) for r in records])
    return (imgs[None, :, :] > u[:, positions, :]).astype(np.uint8)


def replay_on_lava(plan: DeploymentPlan, records: list[dict[str, Any]], u: np.ndarray,
                   positions: list[int] | None = None, timeout_s: float = 600.0
                   ) -> dict[str, Any]:
    """Run every record's counterexample through Lava and the emulator (module docstring).

    Parameters
    ----------
    records : :meth:`~neurodeploy.verify.plan_verify.ExampleResult.record` dicts; those with a
        ``counterexample`` are replayed; every record gets ``lava_replayed`` (in place).
    u : host maps ``[T, N, P]`` (float32) of the examples.
    positions : each record's column in ``u`` (default: its ``index``).
    timeout_s : bound on the Lava subprocess.

    Returns
    -------
    ``{"replayed", "agree", "disagree": [indices], "output_spike_mismatches", "wall_s"}``;
    raises nothing on a disagreement (see :func:`check_replay`).
    """
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.lava_env import run_lava

    for r in records:
        r["lava_replayed"] = False
    todo = [i for i, r in enumerate(records) if r.get("counterexample") is not None]
    out: dict[str, Any] = {"replayed": len(todo), "agree": 0, "disagree": [],
                           "output_spike_mismatches": 0, "wall_s": 0.0}
    if not todo:
        return out
    pos = [int(records[i]["index"]) if positions is None else int(positions[i]) for i in todo]
    spikes = counterexample_spikes([records[i] for i in todo], np.asarray(u, np.float32), pos)
    shaped = spikes.reshape(spikes.shape[0], spikes.shape[1], *plan.input_shape)
    lava = run_lava(plan, shaped, timeout_s=timeout_s)
    emu = Emulator(plan).run(shaped, record=False).out_spikes.numpy().astype(np.uint8)
    lava_out = np.asarray(lava.out_spikes, dtype=np.uint8)
    pred_l = lava_out.sum(0, dtype=np.int64).argmax(1)
    pred_e = emu.sum(0, dtype=np.int64).argmax(1)
    for b, i in enumerate(todo):
        rec = records[i]
        rec["lava_replayed"] = True
        rec["lava_predicted"] = int(pred_l[b])
        if pred_l[b] != pred_e[b]:
            out["disagree"].append(int(rec["index"]))
    out["agree"] = len(todo) - len(out["disagree"])
    out["output_spike_mismatches"] = int((lava_out != emu).sum())
    out["wall_s"] = round(float(lava.wall_s), 3)
    return out


def check_replay(summary: dict[str, Any]) -> None:
    """Raise :class:`LavaReplayError` when Lava decided some counterexample differently."""
    if summary["disagree"]:
        raise LavaReplayError(
            f"Lava and the emulator decide {len(summary['disagree'])} of "
            f"{summary['replayed']} counterexamples differently (examples "
            f"{summary['disagree'][:10]}): the emulator is not bit-exact with Lava here")
