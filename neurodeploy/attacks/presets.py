"""Attack presets: ``auto`` — a fixed, documented SNN attack cascade (AutoAttack's idea).

The engine (:func:`neurodeploy.attacks.engine.evaluate_robustness`) runs the specs in order,
each only on the points every earlier spec failed on, and reports the per-example worst case;
it is seeded per step and resumable. A preset is a list of ``(attack, params, label)``.

``auto`` on image inputs (ℓ∞/ℓ2 box), in this order:

1. **Surrogate / loss sweep** — APGD-CE (``sweep_iter`` iterations) with backward surrogates and
   losses independent of the ones the model was trained with. Each config is one row:

   ==========  ==========================  ===================  ===========
   label       spike backward              encoder backward     loss on
   ==========  ==========================  ===================  ===========
   fs5-sm50    fast-sigmoid, slope 5       sigmoid:50 around u  membrane
   assg-sm20   adaptive sharpness (ASSG)   sigmoid:20 around u  membrane
   fs5-ste     fast-sigmoid, slope 5       straight-through     membrane
   model       the model's own surrogate   straight-through     readout
   atan-sm20   arctan, α = 2               sigmoid:20 around u  readout
   rga         rate gradient (RGA)         straight-through     membrane
   bptr        backprop through rate       straight-through     membrane
   ==========  ==========================  ===================  ===========

   (``sigmoid:k`` around u: the smooth surrogate of the Bernoulli threshold ``1[x > u]`` —
   around the known map under the known-draw threat model, around each EoT draw's map under
   the unknown-draw one.) Sources: fast-sigmoid/arctan (snntorch), ASSG (Wang et al., arXiv
   2512.22522), RGA (Bu et al., CVPR 2023), BPTR (Ding et al., NeurIPS 2022).
2. **spike-set** (known draw only): the spike-flip search over the spike trains the ε-ball can
   produce under the known map (:mod:`neurodeploy.attacks.spikeset`), ranked by the
   fast-sigmoid-5 gradient, accepted on the exact forward with CE on the spike counts — cheap
   (it stops per example at the first success) and it breaks what the sweep's input gradients
   miss;
3. **APGD-CE** (``main_iter`` ≥ 100 iterations, ``restarts`` restarts) and **APGD-DLR** on the
   output membrane, fast-sigmoid-5 with the sigmoid:50 encoder backward;
4. **spike-flip searches with other surrogates** (known draw only; one row each; smaller k and
   longer than the first — the long small-k searches are what broke the points the k = 64,
   100-iteration searches left robust, issue 21):

   ===================  ==========================  ============  ===========  ====  ===========
   label                ranking backward            ranking loss  accepted on  k     iterations
   ===================  ==========================  ============  ===========  ====  ===========
   spike-set:fs10-mix   fast-sigmoid, slope 10      CE, membrane  CW + CE      32    2 × budget
   spike-set:fs20-cw    fast-sigmoid, slope 20      CW, membrane  CW margin    16    4 × budget
   ===================  ==========================  ============  ===========  ====  ===========

5. **APGD-T** (``main_iter`` iterations, ``targets`` target classes), same gradient as 3;
6. **Square** (``square_queries`` ≥ 1000 queries; ``late_queries`` where gated) on the exact
   forward (gradient-free);
   under the known draw in ``auto`` both only on the examples some earlier step brought within
   ``late_gate`` (1) output spike of a flip (:mod:`neurodeploy.attacks.closest`): on the four
   MNIST rows of issue 21 (rounds 4–8) they broke no example the steps before had left robust,
   gated at 9 or 3 spikes or not at all; the gate of one spike (the tie band) and Square's
   ``late_queries`` (500 in ``auto``) pay for the tie restarts of step 7 (round 8);
7. **near-flip restarts** (known draw only; ``auto``): two more spike-flip searches, every
   restart from random levels (``near_restarts`` × the table's), only on the examples still
   robust that some earlier step brought within ``near_gate`` output spikes of a flip (the
   engine's closest approach, ``SpikeSetConfig.near_gate``) — where one long random search
   breaks a point in some runs and not in others, more runs go; then ``tie`` restarts more
   (``tie_restarts``; as copies of each point in one batch), only on the examples whose closest
   approach so far is within ``tie_gate`` (1) output spike of a flip — a tie or one spike
   short, where a restart breaks a point with probability ≈ 0.05–0.2 (issue 21, round 6):

   =========================  ======================  ============  ===========  ====  ===========  ========  ===  ======
   label                      ranking backward        ranking loss  accepted on  k     iterations   restarts  tie  gate
   =========================  ======================  ============  ===========  ====  ===========  ========  ===  ======
   spike-set:near-fs10-mix    fast-sigmoid, slope 10  CE, membrane  CW + CE      32    2 × budget   4         0    3
   spike-set:near-fs25-ce     fast-sigmoid, slope 25  CE, membrane  CE           128   2 × budget   3         4    3
   spike-set:tie-fs20-cw      fast-sigmoid, slope 20  CW, membrane  CW margin    16    2 × budget   1         3    1
   =========================  ======================  ============  ===========  ====  ===========  ========  ===  ======

   (gate: the rows searched at all, in output spikes of a flip — ``near_gate``, or the tie band
   for the last row: the CW-margin search broke the plain model's tie points — 31, 34, 96, 152
   — that the CE searches did not, issue 21 round 8)

8. **spike-block** (known draw only; :mod:`neurodeploy.attacks.spikeblock`): gradient-free random
   blocks of level moves over the same spike set, scored on the exact forward (``block_restarts``
   runs of ``block_batch`` proposals per iteration), then ``steep_restarts`` rounds of a steepest
   single-pixel level ascent from random levels plus one more block run, on the examples still
   robust whose block runs came within ``steep_gate`` output spikes of a flip; all of it only
   on the examples some earlier step brought within ``abort_margin`` (9) output spikes of a
   flip (the engine's closest approach; the flip searches give up beyond that too) — it finds
   counterexamples where the surrogate gradients rank the moves the wrong way (the exact
   verifier's, on the digits plan).
9. **bound-beam** (known draw, deployed side: an integer plan; ``auto`` only;
   :mod:`neurodeploy.verify.beam_attack`): the input built step by step, an exact prefix of
   the plan's run plus the path bound's admissible suffix, per target class the bound leaves
   open (then with the refined three-step suffixes), 200 items a step; only where every step
   leaves at most 15 input bits free (small inputs: the digits, not MNIST) and within
   ``abort_margin`` output spikes of a flip. It reaches flipping sets no chain of level moves
   leads into (issue 21 round 10: four of the five digits counterexamples steps 1–8 missed).
   The float side lists it and runs nothing (no integer plan to bound).

The spike-flip searches give up, per restart, an example whose best objective has not risen in
``abort_after`` iterations while the best CW margin of the restart is more than ``abort_margin``
output spikes from a flip (the budget: on a certified model most points survive to the late searches, far from
any flip); escalation runs them without the abort.

Budgets: ``auto`` (sweep 25, main 100 × 2 restarts, 9 targets, 3 spike-flip searches: the first
k = 64, 100 iterations × 2 restarts; the late two 200 (k = 32) and 400 (k = 16) iterations × 1
restart, abort after 50 iterations more than 9 spikes from a flip; Square 1000 (500 under the known draw); APGD-T and
Square within 1 spike of a flip; the near-flip
restarts (4 and 3) within 3 spikes of a flip, 4 + 4 tie restarts within 1 (copies in one batch); spike-block
2 runs of 16 proposals and 20 steepest rounds of 10 kicks within 3 spikes of a flip — 20 on
a 64-pixel input, ⌊20·64/P⌋ but at least 1 on P pixels: 1 on MNIST; the bound-guided beam
200 wide on a deployed plan),
``auto-demo`` (sweep 15, main 50 × 1, 3 targets, the first 2 spike-flip searches at 40 × 1 and
80 × 1, Square 300, no near-flip restarts, spike-block 2 runs of 32 proposals and 2 steepest
rounds with the same block runs) for the embedded digits demo.
Spike inputs (binary ℓ0 domain): spike-g2s, spike-topk and Square.

:func:`escalation` gives the stronger specs the audit adds when a gradient-masking check fails:
level 1 doubles the iterations and adds surrogates (wider rectangle, triangle, steeper
fast-sigmoid, sharper encoder surrogate); level 2 doubles again with more restarts; under the
known draw (``known_draw=True``) every spike-flip search of the preset runs again with
``2^level`` × its iterations and one more restart, and the block search with ``2^level`` × its
runs and no gate; where an integer plan is, the bound-guided beam ``2^level`` × as wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurodeploy.errors import ConfigError

Spec = tuple[str, dict[str, Any], str]

PRESETS = ("auto", "auto-demo")


@dataclass(frozen=True)
class Budget:
    sweep_iter: int
    main_iter: int
    restarts: int
    targets: int
    spikeset_iter: int
    spikeset_restarts: int
    square_queries: int
    flips: int = 3
    block_restarts: int = 2
    block_batch: int = 16
    #: steepest-ascent rounds of spike-block (each + one block run), kicks per round
    steep_restarts: int = 20
    steep_kicks: int = 10
    #: spike-block's steepest rounds only within this many output spikes of a flip
    steep_gate: float = 3.0
    #: ... counted for a 64-pixel input (fewer rounds on larger inputs, at least 1)
    steep_pixels: int = 64
    #: the rounds' block runs: proposals per iteration, iterations, patience
    round_block: tuple[int, int, int] = (64, 200, 20)
    #: spike-set early abort: no rise in this many iterations, margin below −abort_margin spikes
    abort_after: int = 50
    abort_margin: float = 9.0
    #: near-flip restarts: × the NEAR table's restarts (0: none), within near_gate spikes
    near_restarts: int = 1
    near_gate: float = 3.0
    #: known draw: APGD-T and Square only within this many output spikes of a flip (0: all)
    late_gate: float = 0.0
    #: known draw, gated: Square's queries (0: square_queries)
    late_queries: int = 0
    #: tie restarts of the near-flip searches: × the NEAR table's, within tie_gate spikes
    tie_restarts: int = 1
    tie_gate: float = 1.0
    #: bound-guided beam on the deployed plan (items per step; 0: none), within abort_margin
    beam_width: int = 0


#: the escalation's beam width before doubling where the budget has no beam (``auto-demo``)
WIDTH_FLOOR = 200

BUDGETS = {
    "auto": Budget(25, 100, 2, 9, 100, 2, 1000, flips=3, late_gate=1.0, late_queries=500,
                   beam_width=200),
    "auto-demo": Budget(15, 50, 1, 3, 40, 1, 300, flips=2, block_batch=32, steep_restarts=2,
                        round_block=(32, 60, 8), near_restarts=0),
}

# (label, grad_mode, input_grad, loss_on) of the sweep; see the module docstring's table
SWEEP: tuple[tuple[str, str, str, str], ...] = (
    ("fs5-sm50", "bptt:fast_sigmoid:5", "sigmoid:50", "membrane"),
    ("assg-sm20", "bptt:assg", "sigmoid:20", "membrane"),
    ("fs5-ste", "bptt:fast_sigmoid:5", "ste", "membrane"),
    ("model", "bptt", "ste", "readout"),
    ("atan-sm20", "bptt:atan:2", "sigmoid:20", "readout"),
    ("rga", "rga", "ste", "membrane"),
    ("bptr", "bptr", "ste", "membrane"),
)
MAIN = {"grad_mode": "bptt:fast_sigmoid:5", "input_grad": "sigmoid:50", "loss_on": "membrane"}

# (label, grad_mode, ranking loss, exact objective, after the main APGD runs, k, iterations as a
# multiple of the budget's spikeset_iter) of the spike-flip searches; see the module docstring's
# second table
FLIPS: tuple[tuple[str, str, str, str, bool, int, int], ...] = (
    ("spike-set", "bptt:fast_sigmoid:5", "ce", "ce", False, 64, 1),
    ("spike-set:fs10-mix", "bptt:fast_sigmoid:10", "ce", "mix", True, 32, 2),
    ("spike-set:fs20-cw", "bptt:fast_sigmoid:20", "margin", "cw", True, 16, 4),
)

# (label, grad_mode, ranking loss, exact objective, k, iterations as a multiple of the budget's
# spikeset_iter, restarts, tie restarts, tie band only) of the near-flip restarts; see the
# module docstring's third table
NEAR: tuple[tuple[str, str, str, str, int, int, int, int, bool], ...] = (
    ("spike-set:near-fs10-mix", "bptt:fast_sigmoid:10", "ce", "mix", 32, 2, 4, 0, False),
    ("spike-set:near-fs25-ce", "bptt:fast_sigmoid:25", "ce", "ce", 128, 2, 3, 4, False),
    ("spike-set:tie-fs20-cw", "bptt:fast_sigmoid:20", "margin", "cw", 16, 2, 1, 3, True),
)

ESCALATION_SWEEP: tuple[tuple[str, str, str, str], ...] = (
    ("rect1-sm100", "bptt:rect:1.0", "sigmoid:100", "membrane"),
    ("tri-sm20", "bptt:triangle:0.5", "sigmoid:20", "membrane"),
    ("fs10-sm50", "bptt:fast_sigmoid:10", "sigmoid:50", "readout"),
    ("assg2-sm50", "bptt:assg:2", "sigmoid:50", "readout"),
    ("fs2-sm10", "bptt:fast_sigmoid:2", "sigmoid:10", "membrane"),
)


def _views(grad: str, input_grad: str, loss_on: str, bernoulli: bool, spiking: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"grad_mode": grad if spiking else "bptt", "loss_on": loss_on}
    if bernoulli:
        out["input_grad"] = input_grad
    return out


def preset(
    name: str,
    *,
    eps_kind: str = "box",
    stochastic: bool = False,
    known_draw: bool | None = None,
    bernoulli: bool = True,
    spiking: bool = True,
    membrane: bool = True,
    plan: bool = False,
    seed: int = 0,
) -> list[Spec]:
    """The cascade ``name`` (``auto`` or ``auto-demo``) as ``(attack, params, label)`` specs.

    ``eps_kind``: ``box`` (images) or ``binary`` (spike inputs, ℓ0); ``stochastic``: the model
    is evaluated with fresh draws (EoT is set by the engine's ``eot_iter``); ``known_draw``: the
    classifier holds the host's maps (default: ``not stochastic``), enabling the spike-set
    search; ``bernoulli``: Bernoulli-coded input (encoder surrogates apply); ``spiking``: the
    classifier has spiking neurons (surrogate modes apply); ``membrane``: it exposes the output
    membrane (loss on the membrane)."""
    key = str(name).strip().lower()
    if key not in BUDGETS:
        raise ConfigError(f"unknown attack preset {name!r}; choose one of {PRESETS}")
    if known_draw is None:
        known_draw = not stochastic
    b = BUDGETS[key]
    s = {"seed": int(seed)}
    if eps_kind == "binary":
        return [
            ("spike-g2s", {**s, "n_iter": b.main_iter}, "spike-g2s"),
            ("spike-topk", {**s, "n_iter": b.main_iter}, "spike-topk"),
            ("square", {**s, "n_queries": b.square_queries}, "square"),
        ]
    if eps_kind != "box":
        raise ConfigError(f"eps_kind must be 'box' or 'binary', got {eps_kind!r}")
    specs: list[Spec] = []
    seen: set[tuple[str, str, str]] = set()
    for label, grad, ig, lo in SWEEP:
        if not spiking and grad in ("rga", "bptr"):
            continue
        v = _views(grad, ig, lo if membrane else "readout", bernoulli, spiking)
        k = (v["grad_mode"], v.get("input_grad", "ste"), v["loss_on"])
        if k in seen:  # e.g. without a membrane view several rows coincide
            continue
        seen.add(k)
        specs.append(("apgd-ce", {**s, **v, "n_iter": b.sweep_iter}, f"sweep:{label}"))
    flips = _flip_specs(b, s) if (known_draw and bernoulli and spiking) else []
    specs += [sp for sp, late in flips if not late]
    main = _views(MAIN["grad_mode"], MAIN["input_grad"], MAIN["loss_on"] if membrane else "readout",
                  bernoulli, spiking)
    specs.append(("apgd-ce", {**s, **main, "n_iter": b.main_iter, "n_restarts": b.restarts},
                  "apgd-ce"))
    specs.append(("apgd-dlr", {**s, **main, "n_iter": b.main_iter}, "apgd-dlr"))
    specs += [sp for sp, late in flips if late]
    gate = {"near_gate": b.late_gate} if known_draw and b.late_gate > 0 else {}
    specs.append(("apgd-t", {**s, **main, "n_iter": b.main_iter, "n_target_classes": b.targets,
                             **gate}, "apgd-t"))
    queries = b.late_queries if gate and b.late_queries else b.square_queries
    specs.append(("square", {**s, "n_queries": queries, **gate}, "square"))
    if known_draw and bernoulli and spiking:
        specs += _near_specs(b, s)
    if known_draw and bernoulli:
        specs.append(("spike-block", {**s, **_block_params(b)}, "spike-block"))
    if known_draw and bernoulli and plan and b.beam_width:
        specs.append(("bound-beam", {**s, "width": b.beam_width, "near_gate": b.abort_margin},
                      "bound-beam"))
    return specs


def _block_params(b: Budget) -> dict[str, Any]:
    """spike-block's parameters under budget ``b``: block runs, then steepest rounds near a
    flip."""
    return {"n_restarts": b.block_restarts, "batch": b.block_batch,
            "steep_restarts": b.steep_restarts, "steep_kicks": b.steep_kicks,
            "steep_gate": b.steep_gate, "steep_pixels": b.steep_pixels,
            "round_batch": b.round_block[0],
            "round_iter": b.round_block[1], "round_patience": b.round_block[2],
            "near_gate": b.abort_margin}


def _flip_specs(b: Budget, s: dict[str, Any]) -> list[tuple[Spec, bool]]:
    """The spike-flip searches of budget ``b`` (``FLIPS``), each with its place flag: ``k`` and
    ``mult × spikeset_iter`` iterations of its ``FLIPS`` row; the late ones (after the main
    APGD runs) with one restart fewer (at least one)."""
    out = []
    for label, grad, loss, objective, late, k, mult in FLIPS[: b.flips]:
        restarts = max(1, b.spikeset_restarts - 1) if late else b.spikeset_restarts
        out.append((("spike-set", {**s, "grad_mode": grad, "loss": loss, "objective": objective,
                                   "n_iter": b.spikeset_iter * mult, "n_restarts": restarts,
                                   "k": k, "abort_after": b.abort_after,
                                   "abort_margin": b.abort_margin}, label), late))
    return out


def _near_specs(b: Budget, s: dict[str, Any]) -> list[Spec]:
    """The near-flip restarts of budget ``b`` (``NEAR``; none when ``near_restarts`` is 0)."""
    if b.near_restarts < 1:
        return []
    return [("spike-set", {**s, "grad_mode": grad, "loss": loss, "objective": objective,
                           "n_iter": b.spikeset_iter * mult,
                           "n_restarts": b.near_restarts * restarts,
                           "tie_restarts": b.near_restarts * b.tie_restarts * tie,
                           "tie_gate": b.tie_gate,
                           "k": k, "near_gate": b.tie_gate if band else b.near_gate,
                           "abort_after": b.abort_after, "abort_margin": b.abort_margin}, label)
            for label, grad, loss, objective, k, mult, restarts, tie, band in NEAR]


def escalation(
    level: int,
    *,
    base: str = "auto",
    bernoulli: bool = True,
    spiking: bool = True,
    membrane: bool = True,
    seed: int = 0,
    known_draw: bool = False,
    plan: bool = False,
) -> list[Spec]:
    """Stronger specs for escalation round ``level`` ≥ 1 (module docstring): more surrogates,
    ``2^level`` × the iterations, more restarts; with ``known_draw`` (a classifier holding the
    host's maps) also every spike-flip search of the preset with ``2^level`` × the iterations
    and one more restart, and where an integer plan is (``plan``) the bound-guided beam
    ``2^level`` × as wide. Labels carry the level (``esc1:…``)."""
    if not isinstance(level, int) or level < 1:
        raise ConfigError(f"escalation level must be an integer >= 1, got {level!r}")
    b = BUDGETS[str(base).strip().lower()] if base in BUDGETS else BUDGETS["auto"]
    mult = 2 ** level
    s = {"seed": int(seed) + 7919 * level}
    specs: list[Spec] = []
    for label, grad, ig, lo in ESCALATION_SWEEP + SWEEP[:2]:
        v = _views(grad, ig, lo if membrane else "readout", bernoulli, spiking)
        specs.append(("apgd-ce", {**s, **v, "n_iter": b.sweep_iter * mult},
                      f"esc{level}:{label}"))
    main = _views(MAIN["grad_mode"], MAIN["input_grad"], MAIN["loss_on"] if membrane else "readout",
                  bernoulli, spiking)
    specs.append(("apgd-ce", {**s, **main, "n_iter": b.main_iter * mult,
                              "n_restarts": b.restarts + level}, f"esc{level}:apgd-ce"))
    if known_draw and bernoulli and spiking:
        flips = [sp for sp, _ in _flip_specs(b, s)] + _near_specs(b, s)
        for name, p, label in flips:
            specs.append((name, {**p, "n_iter": p["n_iter"] * mult, "abort_after": 0,
                                 "n_restarts": p["n_restarts"] + 1}, f"esc{level}:{label}"))
        bp = _block_params(b)
        specs.append(("spike-block", {**s, **bp, "n_restarts": b.block_restarts * mult,
                                      "steep_restarts": b.steep_restarts * mult, "near_gate": 0},
                      f"esc{level}:spike-block"))
    if known_draw and bernoulli and plan:
        specs.append(("bound-beam", {**s, "width": max(b.beam_width, WIDTH_FLOOR) * mult},
                      f"esc{level}:bound-beam"))
    specs.append(("square", {**s, "n_queries": b.square_queries * mult}, f"esc{level}:square"))
    return specs


def describe(specs: list[Spec]) -> list[str]:
    """One line per spec, for reports: ``label: attack k=v …``."""
    out = []
    for name, params, label in specs:
        kv = " ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "seed")
        out.append(f"{label}: {name} {kv}")
    return out


def classifier_traits(classifier: Any) -> dict[str, Any]:
    """What a preset needs to know of a classifier: its domain, randomness, whether it holds
    known maps, is Bernoulli-coded, spiking, and exposes the output membrane."""
    from neurodeploy.attacks.base import input_domain, is_stochastic
    from neurodeploy.classifier import SNNClassifier

    enc = getattr(classifier, "encoder", None)
    enc_name = str(getattr(enc, "name", ""))
    return {
        "eps_kind": input_domain(classifier),
        "stochastic": is_stochastic(classifier),
        "known_draw": enc is not None and hasattr(enc, "uniform") and not enc.stochastic,
        "bernoulli": enc_name.startswith("bernoulli"),
        "spiking": bool(getattr(getattr(classifier, "model", None), "neurons", None)),
        "membrane": isinstance(classifier, SNNClassifier),
        "plan": getattr(getattr(classifier, "emulator", None), "plan", None) is not None,
    }


def expand(attacks: list[Any], classifier: Any, seed: int = 0) -> list[Any]:
    """Replace preset names in an attack list by their specs for ``classifier``."""
    out: list[Any] = []
    traits = None
    for a in attacks:
        if isinstance(a, str) and a.strip().lower() in PRESETS:
            traits = traits or classifier_traits(classifier)
            out.extend(preset(a, seed=seed, **traits))
        else:
            out.append(a)
    return out


def main_gradient(classifier: Any) -> dict[str, Any]:
    """The gradient of the preset's main APGD runs for ``classifier`` (what the masking checks
    should test): fast-sigmoid-5 spikes, sigmoid:50 encoder, loss on the membrane — each where
    the classifier supports it."""
    t = classifier_traits(classifier)
    return _views(MAIN["grad_mode"], MAIN["input_grad"],
                  MAIN["loss_on"] if t["membrane"] else "readout", t["bernoulli"], t["spiking"])
