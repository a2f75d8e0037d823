"""Exact robustness of a deployment plan under the known draw: the per-example pipeline.

Per example ``(x, y, u)`` and budget ε (the ε-ball ∩ [0, 1] in real arithmetic):

1. **clean check** — the emulator on the clean spikes; a misclassified example is
   ``non_robust`` with the clean image as its counterexample;
2. **interval proof** — :mod:`neurodeploy.verify.intmodel` builds the exact model, folding
   every quantity its interval decides; when no target class survives the intervals the
   example is ``robust`` without a solver call;
3. **enumeration** of every level combination on the emulator when there are at most
   :data:`ENUMERATE_LIMIT`;
4. **step bound** — :mod:`neurodeploy.verify.stepbound` enumerates each step's free input
   bits jointly over the hidden layers (the intervals bound each neuron alone): when it
   rules out every target class the example is ``robust`` (``how`` = ``steps``);
5. the counterexample **search** of :mod:`neurodeploy.verify.search`;
5b. optionally (``path``) the **path bound** of :mod:`neurodeploy.verify.pathbound` (the state
   exact across each pair of steps, the pairs chained by a Viterbi pass; ``how`` = ``path``),
   then its refinement on the pairs a flip could use (:mod:`neurodeploy.verify.critical`: three
   steps of exact state per triple, then windows of more steps up to the whole input,
   :mod:`neurodeploy.verify.windows`; ``how`` = ``critical`` — a proof, or a flipping input
   the whole-input windows found, replayed as every counterexample is);
6. optionally (``branch_seconds``) **branch-and-bound** over pixel levels with the step
   bound at every node (:mod:`neurodeploy.verify.branch`; its two split rules, half the time
   each, ``branch_rule`` the one that proved): robust when every leaf is proved;
7. **solver** — CP-SAT on the exact model, ``timeout`` seconds: INFEASIBLE → ``robust``
   (a proof), a solution → ``non_robust``, no answer in time → ``unknown`` (never robust).

Every counterexample is a real image checked inside the ε-ball exactly
(:func:`~neurodeploy.verify.levels.check_witness`) and replayed on the emulator from that image
(float32 host encoding, ``1[x' > u]``); a replay that disagrees with the model raises
:class:`VerifyError` — an encoding bug, never a verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.plan import DeploymentPlan
from neurodeploy.verify.levels import PixelLevels, pixel_levels, witness_image
from neurodeploy.verify.search import SearchTrace, emulator_predict, find_counterexample

STATUSES = ("robust", "non_robust", "unknown")
#: inputs with at most this many level combinations are decided by running them all
ENUMERATE_LIMIT = 4096
#: block-search restarts per example before the solver (see :mod:`.search`)
SEARCH_RESTARTS = 10
#: seconds after which no further block-search restart starts (wall clock, like the solver's)
SEARCH_BUDGET = 10.0


class VerifyError(NeurodeployError):
    """A counterexample that does not replay: the encoding and the emulator disagree."""

    exit_code = 1


@dataclass
class ExampleResult:
    """One example's verdict. ``how``: clean / intervals / enumeration / steps / search /
    path / critical / branch / solver / timeout;
    ``image``: the counterexample (flat, exact-checked) for non_robust; ``search_score``: the
    best score the searches reached when they ran and found nothing (:class:`SearchTrace`:
    ``max_{j≠y}(c_j − c_y + ½[j < y])`` plus a membrane tie-break below 10⁻³; negative —
    how far from a flip they stayed); ``bound_score``: the step bound's (the path bound's,
    where it ran) upper bound on the same maximum over the whole ball where it did not prove
    (> 0), so an undecided
    example's true score lies in ``[search_score, bound_score]`` (a flip ⇔ > 0)."""

    index: int
    label: int
    status: str
    how: str
    seconds: float
    solver_seconds: float = 0.0
    model: dict[str, int] = field(default_factory=dict)
    image: np.ndarray | None = None
    predicted: int | None = None
    search_score: float | None = None
    bound_score: float | None = None
    branch_rule: str | None = None

    def record(self) -> dict[str, Any]:
        d = {"index": self.index, "label": self.label, "status": self.status, "how": self.how,
             "seconds": round(self.seconds, 4), "solver_seconds": round(self.solver_seconds, 4),
             "model": self.model}
        if self.image is not None:
            d["counterexample"] = [float(v) for v in self.image]
            d["predicted"] = self.predicted
        if self.search_score is not None:
            d["search_score"] = round(self.search_score, 4)
        if self.bound_score is not None:
            d["bound_score"] = self.bound_score
        if self.branch_rule is not None:
            d["branch_rule"] = self.branch_rule
        return d


def replay(emulator: Any, plan: DeploymentPlan, lv: PixelLevels, image: np.ndarray,
           level: np.ndarray, y: int) -> int:
    """Encode ``image`` as the host does (float32, ``1[x' > u]``), check the spikes are the
    level's, run the emulator; returns its (wrong) prediction or raises VerifyError."""
    img32 = np.asarray(image, dtype=np.float32)
    spikes = (img32[None, :] > lv.u).astype(np.uint8)
    if not np.array_equal(spikes, lv.spikes(level)):
        raise VerifyError("counterexample image encodes to other spikes in float32")
    pred = int(emulator_predict(emulator, plan, spikes[:, None, :])[0])
    if pred == y:
        raise VerifyError(f"counterexample does not replay on the emulator (class {pred} = "
                          f"label): the exact encoding disagrees with the emulator")
    return pred


def solve(enc: Any, lv: PixelLevels, timeout: float, workers: int
          ) -> tuple[str, np.ndarray | None, float]:
    """Step 4 on a built model: (status, levels of a counterexample or None, seconds)."""
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(timeout)
    solver.parameters.num_workers = int(workers)
    t0 = time.perf_counter()
    st = solver.solve(enc.ops.model)
    sec = time.perf_counter() - t0
    if st == cp_model.INFEASIBLE:
        return "robust", None, sec
    if st in (cp_model.FEASIBLE, cp_model.OPTIMAL):
        return "non_robust", enc.levels_of(lv, solver.value), sec
    if st == cp_model.MODEL_INVALID:
        raise VerifyError(f"CP-SAT rejected the model: {enc.ops.model.validate()}")
    return "unknown", None, sec


def verify_example(plan: DeploymentPlan, emulator: Any, x: np.ndarray, y: int, u: np.ndarray,
                   eps: float, timeout: float, workers: int = 1, index: int = 0,
                   search: bool = True, seed: int = 0, twin: bool = True,
                   enumerate_limit: int = ENUMERATE_LIMIT,
                   search_restarts: int = SEARCH_RESTARTS,
                   search_budget: float | None = SEARCH_BUDGET,
                   branch_seconds: float = 0.0, steps: bool = True,
                   path: bool = False) -> ExampleResult:
    """The pipeline of the module docstring for one example (``x`` any shape, ``u``
    ``[T, *shape]``); ``twin`` adds the twin-gradient spike-set search to the block search;
    inputs with at most ``enumerate_limit`` level combinations are decided by enumeration;
    ``search_restarts`` block searches run before the solver, none started after
    ``search_budget`` seconds; ``branch_seconds > 0`` runs the branch-and-bound portfolio of
    :mod:`.branch` for that long before the solver (``how`` = ``branch`` when it proves);
    ``steps`` runs the step bound of :mod:`.stepbound` before the search; ``path`` the path
    bound of :mod:`.pathbound` after it (where the search found nothing) and in every
    branch-and-bound node the step bound does not prove."""
    from neurodeploy.verify.exhaustive import enumerate_levels
    from neurodeploy.verify.intmodel import encode
    from neurodeploy.verify.stepbound import step_score

    t0 = time.perf_counter()
    lv = pixel_levels(x, u, eps)

    def done(status: str, how: str, level: np.ndarray | None = None, **kw: Any) -> ExampleResult:
        res = ExampleResult(index, int(y), status, how, 0.0, **kw)
        if level is not None:
            res.image = witness_image(lv, level)
            res.predicted = replay(emulator, plan, lv, res.image, level, int(y))
        res.seconds = time.perf_counter() - t0
        return res

    clean = lv.clean.astype(np.int64)
    if emulator_predict(emulator, plan, lv.spikes(clean)[:, None, :])[0] != y:
        return done("non_robust", "clean", clean)
    enc = encode(plan, lv, int(y))
    if not enc.targets:
        return done("robust", "intervals", model=enc.stats)
    if lv.combinations <= enumerate_limit:
        robust, level = enumerate_levels(plan, emulator, lv, int(y))
        return done("robust" if robust else "non_robust", "enumeration", level, model=enc.stats)
    bound = step_score(plan, lv, int(y)) if steps else None
    if bound is not None and bound <= 0:
        return done("robust", "steps", model=enc.stats)
    trace = None
    if search:
        trace = SearchTrace()
        level = find_counterexample(plan, emulator, lv, lv.x, lv.u, int(y), eps, seed + index,
                                    twin, search_restarts, search_budget, trace)
        if level is not None:
            return done("non_robust", "search", level, model=enc.stats, bound_score=bound)
    if path and bound is not None:
        from neurodeploy.verify.critical import path_then_critical

        stage = path_then_critical(plan, lv, int(y))
        tight, refined = stage.path, stage.refined
        if tight is not None and tight <= 0:
            return done("robust", "path", model=enc.stats, bound_score=bound)
        if stage.level is not None:
            return done("non_robust", "critical", stage.level, model=enc.stats,
                        bound_score=tight)
        if refined is not None and refined <= 0:
            return done("robust", "critical", model=enc.stats, bound_score=tight)
        bound = next((b for b in (refined, tight) if b is not None), bound)
    if branch_seconds > 0:
        from neurodeploy.verify.branch import path_node_proves, portfolio, step_node_proves

        check = path_node_proves if path else step_node_proves
        # the root's check already ran above when the step bound ran (and the path bound
        # with it under ``path``): the portfolio splits the root without re-evaluating it
        proved, _, rule = portfolio(plan, lv, int(y), branch_seconds, proves=check,
                                    root_open=bound is not None)
        if proved:
            return done("robust", "branch", model=enc.stats, bound_score=bound, branch_rule=rule)
    status, level, sec = solve(enc, lv, timeout, workers)
    score = trace.best if trace is not None and np.isfinite(trace.best) else None
    return done(status, "timeout" if status == "unknown" else "solver", level,
                solver_seconds=sec, model=enc.stats, search_score=score, bound_score=bound)


@dataclass
class VerifyResult:
    """Verdicts of a set of examples and the exact robust accuracy (an interval while some
    are unknown: ``[robust/n, (robust + unknown)/n]``)."""

    eps: float
    examples: list[ExampleResult]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.examples) for s in STATUSES}

    def robust_accuracy(self) -> tuple[float, float]:
        n = max(len(self.examples), 1)
        c = self.counts()
        return c["robust"] / n, (c["robust"] + c["unknown"]) / n

    def summary(self) -> dict[str, Any]:
        lo, hi = self.robust_accuracy()
        n = len(self.examples)
        return {"eps": self.eps, "n": n, "counts": self.counts(),
                "decided_fraction": (n - self.counts()["unknown"]) / max(n, 1),
                "robust_accuracy": lo if lo == hi else None,
                "robust_accuracy_interval": [lo, hi],
                "seconds": sum(r.seconds for r in self.examples),
                "solver_seconds": sum(r.solver_seconds for r in self.examples)}


def verify_plan(plan: DeploymentPlan, x: np.ndarray, y: np.ndarray, u: np.ndarray, eps: float,
                timeout: float = 60.0, workers: int = 1, search: bool = True, seed: int = 0,
                indices: list[int] | None = None, progress: Any = None,
                search_restarts: int = SEARCH_RESTARTS,
                search_budget: float | None = SEARCH_BUDGET,
                branch_seconds: float = 0.0, path: bool = False) -> VerifyResult:
    """Exact known-draw verdicts of ``plan`` on examples ``x`` ``[N, *shape]`` with labels
    ``y`` ``[N]`` and host maps ``u`` ``[T, N, *shape]`` (:func:`neurodeploy.encoding.host_uniform`)
    at budget ``eps``: the function the audit calls.

    Parameters
    ----------
    timeout : CP-SAT seconds per example (a timeout is ``unknown``, never robust).
    workers : CP-SAT search threads per example.
    search : run the fast counterexample search before the solver.
    indices : example indices recorded in the results (default 0 … N−1).
    progress : called with 1 after each example.
    search_restarts : block-search restarts before the solver (1: the single search of
        earlier versions); ``search_budget``: no restart starts after this many seconds.
    branch_seconds : seconds of interval branch-and-bound over pixel levels before the
        solver (:mod:`.branch`; 0: off).
    path : run the path bound (:mod:`.pathbound`) on what the search leaves open.
    """
    from neurodeploy.sims.emulator import Emulator

    emulator = Emulator(plan)
    x = np.asarray(x, dtype=np.float32)
    u = np.asarray(u, dtype=np.float32)
    idx = list(range(len(y))) if indices is None else list(indices)
    out = []
    for i in range(len(y)):
        out.append(verify_example(plan, emulator, x[i], int(y[i]), u[:, i], eps, timeout,
                                  workers, idx[i], search, seed,
                                  search_restarts=search_restarts,
                                  search_budget=search_budget,
                                  branch_seconds=branch_seconds, path=path))
        if progress is not None:
            progress(1)
    return VerifyResult(float(eps), out)
