"""The table of backward passes, their cost models, and the rule of ``backward='auto'``.

Every backward pass is a class with the same small interface (see
:mod:`~torch_gq_adjoint._impl.record`): ``name``; ``records(settings)``, what the forward
pass must record for it (``'steps'``, ``'stages'``); ``problem(record)``, why it cannot
serve a solve (None if it can), without evaluating ``f``; optionally ``confirm(record)``,
a check that costs an evaluation and is made only for the pass about to run, and
``notify_under_auto(record)``, whether ``'auto'`` warns when that check fails; a
constructor taking the :class:`~torch_gq_adjoint._impl.record.ForwardRecord`; and a call
taking the output cotangents. :data:`REGISTRY` lists them with their cost models: a new
pass is one module and one line there.

The rule of ``'auto'`` (the cheapest pass that serves the solve, priced in evaluations,
never seconds; the checkpoint only at tight tolerances, though the measured plan of
:mod:`.planner` also times it at coarse ones, under a check) and the reasons for each cost
model have one home, docs/backward.md ("'auto': the default"); the constants it quotes
are defined here, and ``tests/research/test_docs.py`` checks that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .checkpoint import CheckpointBackward, checkpoint_problem, step_evaluations
from .checks import tight_enough
from .interpolated import InterpolatedBackward
from .notices import warn_once
from .paper_rule import PAPER, PaperBackward, check_problem, paper_record
from .propagator import PropagatorBackward, SampleLayout
from .record import BackwardPass, ForwardRecord
from .restart import RestartBackward

if TYPE_CHECKING:
    from .gq_adjoint import Settings

#: Restart evaluations per checkpoint evaluation: a recomputation with a graph plus a
#: product that also reaches the parameters, against an evaluation plus a product with
#: respect to the state alone. Small functions cost their overhead either way (about 1);
#: wide networks pay about 1.5 for the parameters' share of the product.
CHECKPOINT_COST = 1.2

#: Restart evaluations per evaluation of the interpolating pass's solve when the
#: parameter integral rides along (measured on the CNFs of ``benchmarks.clients``).
RIDING_COST = 1.5

#: The checkpoint is taken only when it is expected to cost less than 1/MARGIN of the
#: cheapest quadrature pass: where the two cost about the same, the quadrature passes'
#: accuracy (that of torchdiffeq's adjoint) is worth keeping.
MARGIN = 2.0

#: Evaluations of one backward solver step at least (one dopri5 step and its first
#: evaluation): what an output interval costs a pass that stops there.
STEP_EVALUATIONS = 7


def _intervals(record: ForwardRecord) -> int:
    return len(record.times) - 1


def _controlled(record: ForwardRecord) -> bool:
    return record.settings.gtol is None


def node_cost(record: ForwardRecord, vectorised: bool) -> float:
    """The quadrature nodes' cost: none to speak of when ``vmap`` batches them; else one
    evaluation with a full product each. The error-controlled rules start at 0.1 · NFE
    nodes and double up to four times (about 1.5 · NFE nodes in all when the checks are
    hard to pass); the paper's rule takes 0.1 · NFE with gtol = 0.1."""
    if vectorised:
        return 0.0
    return CHECKPOINT_COST * record.forward_nfe * (1.5 if _controlled(record) else 0.1)


def checkpoint_cost(record: ForwardRecord, vectorised: bool) -> float:
    """The accepted steps' evaluations again, each with a full product. (Where the forward
    kept its graph nothing is evaluated again; the price stays the same, so that the
    choice between the discretisation's gradient and the adjoint's does not move.)"""
    return CHECKPOINT_COST * step_evaluations(record)


def interpolated_cost(record: ForwardRecord, vectorised: bool) -> float:
    """One solve of ``a``: the forward's evaluations, at least a step per interval. Where
    ``vmap`` cannot batch ``func`` under the error-controlled rule, the parameter integral
    rides along with the solve instead (no nodes): the solve starts cold, like the
    restart method's, and takes more steps than the forward (1.1–1.6 times on the CNFs),
    each product reaches the parameters and, through a ``func`` that differentiates
    itself, costs about :data:`RIDING_COST` restart evaluations. The refined dense
    output's three evaluations per forward step (about NFE / 2 of them, without a graph:
    half an evaluation each) are then made one at a time."""
    solve = max(record.forward_nfe, STEP_EVALUATIONS * _intervals(record))
    if vectorised:
        return solve + node_cost(record, vectorised)
    refinement = 0.25 * record.forward_nfe
    if _controlled(record):
        cold = max(1.5 * record.forward_nfe, 2 * STEP_EVALUATIONS * _intervals(record))
        return RIDING_COST * cold + refinement
    return solve + refinement + node_cost(record, vectorised)


def propagator_cost(record: ForwardRecord, vectorised: bool) -> float:
    """``(1 + d) / 2`` restart evaluations per evaluation, twice the evaluations with
    ``gtol=None`` (the tightened solve)."""
    dim = SampleLayout(record.settings.layout).dim
    solve = (1 + dim) / 2 * record.forward_nfe * (2 if _controlled(record) else 1)
    return solve + node_cost(record, vectorised)


def restart_cost(record: ForwardRecord, vectorised: bool) -> float:
    """The forward's evaluations, at least a step per interval (two when each starts
    cold, with ``gtol=None``)."""
    per_interval = STEP_EVALUATIONS * (2 if _controlled(record) else 1)
    solve = max(record.forward_nfe, per_interval * _intervals(record))
    return solve + node_cost(record, vectorised)


@dataclass(frozen=True)
class Entry:
    """One backward pass of the table: its class and its cost model."""

    backward: type[BackwardPass]
    cost: Callable[[ForwardRecord, bool], float]  # -> restart evaluations


#: Every backward pass, in the order ``'auto'`` prefers them at equal cost.
REGISTRY = (
    Entry(CheckpointBackward, checkpoint_cost),
    Entry(InterpolatedBackward, interpolated_cost),
    Entry(PropagatorBackward, propagator_cost),
    Entry(RestartBackward, restart_cost),
)

_BY_NAME = {entry.backward.name: entry for entry in REGISTRY}

#: The values of ``backward``.
BACKWARDS = ('auto',) + tuple(reversed(tuple(_BY_NAME)))


def _automatic_candidate(entry: Entry, settings: Settings) -> bool:
    """Whether ``'auto'`` may take this pass at these settings (accuracy, not cost)."""
    return entry.backward is not CheckpointBackward or tight_enough(settings.rtol)


#: The passes, by name (the values of ``backward`` other than ``'auto'``).
PASSES = tuple(_BY_NAME)

#: The paper's rule (:mod:`.paper_rule`): a candidate of the measured plan only, priced
#: as the restart method with its ``gtol``; never the estimate's choice.
_MEASURED_ONLY = {
    PAPER: Entry(
        PaperBackward, lambda record, vectorised: restart_cost(paper_record(record), vectorised)
    )
}

#: What a plan may take and be pinned to.
PLANNED = PASSES + tuple(_MEASURED_ONLY)


def _entry(name: str) -> Entry:
    return _BY_NAME.get(name) or _MEASURED_ONLY[name]


def records(settings: Settings, name: Optional[str] = None) -> set[str]:
    """What the forward pass records (a set of ``'steps'``, ``'stages'``, ``'graph'``):
    for the pass ``name`` if given, else for the pass asked for or every pass ``'auto'``
    may take."""
    if name is not None:
        entries = [_entry(name)]
    elif settings.backward == 'auto':
        entries = [entry for entry in REGISTRY if _automatic_candidate(entry, settings)]
    else:
        entries = [_BY_NAME[settings.backward]]
    return {need for entry in entries for need in entry.backward.records(settings)}


@dataclass(frozen=True)
class Offer:
    """A pass the measured plan may take: its estimated cost (restart evaluations), why
    it may not serve (None if it may), and whether its accuracy must be checked first
    (:mod:`.paper_rule`)."""

    cost: float
    problem: Optional[str] = None
    checked: bool = False


def admissible_estimates(record: ForwardRecord) -> dict[str, Offer]:
    """``{name: Offer}`` of every pass the planner (:mod:`.planner`) may measure at these
    settings, from a record of everything the estimate's passes need. The costs are in
    restart evaluations, the checkpoint's without :data:`MARGIN` (a preference of the
    estimate's, not a cost). At coarse tolerances, where the estimate never takes the
    checkpoint, the checkpoint and the paper's rule are offered checked, wherever their
    accuracy can be checked."""
    settings = record.settings
    vectorised = record.vectorisable()
    found = {}
    for entry in REGISTRY:
        if not _automatic_candidate(entry, settings):
            continue
        problem = entry.backward.problem(record) or _confirm(entry.backward, record)
        cost = math.inf if problem is not None else entry.cost(record, vectorised)
        found[entry.backward.name] = Offer(cost, problem)
    checkable = check_problem(settings, record.solution.dtype) is None
    name = CheckpointBackward.name
    # The first call's record holds no steps for it: whether the method is covered (and
    # anything may be kept) is all that can be asked before it runs.
    if checkable and name not in found and settings.checkpoint_memory > 0:
        if checkpoint_problem(settings.method, settings.event_fn is not None) is None:
            found[name] = Offer(estimate(name, record), checked=True)
    if checkable:  # the paper's rule's own conditions are the check's
        found[PAPER] = Offer(estimate(PAPER, record), checked=True)
    return found


def estimate(name: str, record: ForwardRecord) -> float:
    """The estimate's price of the pass ``name`` for ``record``'s solve (restart
    evaluations), whatever the record holds: the counts alone."""
    return _entry(name).cost(record, record.vectorisable())


def take(name: str, record: ForwardRecord) -> tuple[Optional[BackwardPass], Optional[str]]:
    """The pass ``name`` built from ``record`` and None, or None and why it cannot serve
    the solve."""
    backward = _entry(name).backward
    why = backward.problem(record) or _confirm(backward, record)
    return (backward(record), None) if why is None else (None, why)


def choose(record: ForwardRecord) -> BackwardPass:
    """The backward pass to run for this solve (``settings.backward`` and the rules above).

    Args:
        record: :class:`~.record.ForwardRecord`.

    Returns:
        A backward pass of :data:`REGISTRY`, built from the record.
    """
    settings = record.settings
    if settings.backward != 'auto':
        backward = _BY_NAME[settings.backward].backward
        reason = backward.problem(record) or _confirm(backward, record)
        if reason is None:
            return backward(record)
        warn_once(
            f"odeint_adjoint_gq: backward='{backward.name}' cannot be used ({reason}); "
            "using backward='restart'. Pass backward='restart' to silence this.",
            settings.call_site,
        )
        return RestartBackward(record)
    offers = [
        entry
        for entry in REGISTRY
        if _automatic_candidate(entry, settings) and entry.backward.problem(record) is None
    ]
    reasons: dict[type[BackwardPass], Optional[str]] = {}

    def confirmed(entry: Entry) -> Optional[str]:  # each pass's check made once
        if entry.backward not in reasons:
            reasons[entry.backward] = _confirm(entry.backward, record)
        return reasons[entry.backward]

    ranked = _ranked(offers, record, vectorised=True)
    unbatched = _ranked(offers, record, vectorised=False)
    if ranked and ranked[0] is unbatched[0] and confirmed(ranked[0]) is None:
        # The cheapest whether vmap batches func or not, and it serves: no probe needed.
        return ranked[0].backward(record)
    if ranked != unbatched:
        ranked = _ranked(offers, record, record.vectorisable())
    for number, entry in enumerate(ranked):
        reason = confirmed(entry)
        if reason is None:
            return entry.backward(record)
        following = ranked[number + 1].backward.name if number + 1 < len(ranked) else 'restart'
        if getattr(entry.backward, 'notify_under_auto', lambda record: True)(record):
            warn_once(
                f"odeint_adjoint_gq: backward='auto' cannot use the {entry.backward.name} "
                f"pass it chose ({reason}); using backward='{following}'.",
                settings.call_site,
            )
    return RestartBackward(record)


def _ranked(offers: list[Entry], record: ForwardRecord, vectorised: bool) -> list[Entry]:
    """The offers from the cheapest; the checkpoint's cost counts :data:`MARGIN` times."""

    def cost(entry: Entry) -> float:
        weight = MARGIN if entry.backward is CheckpointBackward else 1.0
        return weight * entry.cost(record, vectorised)

    return sorted(offers, key=cost)  # stable: the table's order breaks ties


def _confirm(backward: type[BackwardPass], record: ForwardRecord) -> Optional[str]:
    confirm = getattr(backward, 'confirm', None)
    return None if confirm is None else confirm(record)
