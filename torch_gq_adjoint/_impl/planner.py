"""The plan of ``backward='auto'`` at each call site: estimate first, then measure.

A training loop calls :func:`~torch_gq_adjoint.odeint_adjoint_gq` thousands of times from
the same line with the same shapes and settings. Which backward pass is fastest there
depends on what a count of evaluations cannot see (per-evaluation overhead that differs
by pass, the shapes of the products, the graph autograd builds), so the planner measures
it, as FFTW's planner (MEASURE against ESTIMATE) and cuDNN's benchmark mode do:

1. The first call at a call site records everything any admissible pass needs and takes
   the estimate's choice (:func:`~.choice.choose`, the count of evaluations). From that
   record it learns which passes may serve the solve (the accuracy rule and each pass's
   own conditions) and what the estimate thinks each costs.
2. The next calls run the admissible passes in turn, each recording only what it needs,
   and time each call's forward and backward (every admissible pass gives a usable
   gradient, so no training step is wasted). Passes estimated at more than
   :data:`PRUNE_ESTIMATE` times the cheapest estimate are not measured; a pass measured
   at more than :data:`PRUNE_MEASURED` times the best first measurement is not measured
   again. Each is measured :data:`ROUNDS` times; the fastest (least of its times) wins.
3. The plan holds while the solve stays within :data:`BAND` of the forward evaluations
   and accepted steps it was measured at, and the chosen pass's time within
   :data:`TIME_BAND` of the time it first ran at (medians over the last :data:`WINDOW`
   calls, so that one batch's outlier changes nothing; the time watches what the
   forward's size cannot, e.g. a backward solve that grows on its own). Beyond either
   band the passes measured before are re-priced: each one's estimate for the new solve
   times its measured-over-estimated ratio (the chosen pass's from its recent times).
   Those within :data:`PRUNE_MEASURED` of the best are measured again, cheapest first
   (a checked pass only where it is priced below the current choice: its check costs a
   tighter solve), if the exploring budget allows: after the first plan, what exploring
   costs stays within :data:`EXPLORE_SHARE` of all its calls, counted in calls of the
   current choice: a re-plan's call where its pass ran slower than the current choice
   (measuring a pass that turns out faster costs nothing) and each check of accuracy by
   its time. Where the current choice alone stays within it, the band moves and nothing
   is measured (a checked one is checked again where the solve moved); where the budget
   is spent, the calibrated estimates choose (a switch needs them to put another pass
   :data:`SWITCH_MARGIN` times cheaper, and that pass measured in the same plan as the
   current choice). A pass that cannot serve a call makes the call
   site plan again from step 1 (within the budget).

At coarse tolerances the paper's rule and the checkpoint are candidates under a check
(:mod:`.paper_rule`): the first call that runs either in a plan checks its accuracy
against a tighter solve, outside the clock, and it stays a candidate only where it is as
accurate as the error-controlled pass (within a factor of 2); where both await their
check, the checkpoint runs before the paper's rule (in the first plan, and in a re-plan
whose current choice is the paper's rule) and its check judges the paper's rule too, on the same
call and against the same tighter solve (one check for both); a re-plan that the pass's
time alone set off keeps the checks made at that solve. So exploring costs at most
``1 + ROUNDS × passes`` calls (9 with the four passes at tight tolerances, 11 with the
five at coarse ones, plus one check, two where it fails or the checkpoint cannot
serve its call) at first and 5 % of the calls' time after that
(calls on a pass slower than the current choice, and the checks). Under
``torch.use_deterministic_algorithms(True)`` or ``set_planning('estimate')``, nothing
is timed: every call takes the estimate's choice from its own record, and two runs of a
script take the same passes and give bit-identical gradients. A plan can be read
(:func:`plans`, ``str(plan)``), pinned to a pass (:meth:`CallSitePlan.pin`) and forgotten
(:func:`reset_plans`).
"""

from __future__ import annotations

import collections
import gc
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .paper_rule import ERROR_FACTOR

#: Times each admissible pass is measured before the plan is made.
ROUNDS = 2
#: A pass estimated at more than this many times the cheapest estimate is not measured
#: (the estimate is wrong by up to about 3 times; a pass off by more is not worth a step).
PRUNE_ESTIMATE = 4.0
#: A pass measured at more than this many times the best first measurement is not
#: measured again (timings on a busy machine move by 20–50 %, not by 2 times).
PRUNE_MEASURED = 2.0
#: The plan holds while the forward's evaluations and accepted steps (their median over
#: the last :data:`WINDOW` calls: one batch's outlier is not a change of the solve) stay
#: within this factor of those it was measured at.
BAND = 1.25
WINDOW = 9
#: A settled plan also watches its own pass's time: where the median of its last
#: :data:`WINDOW` timed calls leaves this factor of the median it first ran at, the passes
#: are re-priced as where the solve moves. (The backward's own solve may grow while the
#: forward's does not: the paper's rule on the nested spheres once the loss leaves its
#: plateau takes three times its first time, the checkpoint twice.)
TIME_BAND = 1.5
#: Timing a call on a GPU waits for the device: there a settled call is timed once in
#: this many (on the CPU, every one: its clock costs nothing).
SAMPLE_EVERY = 8
#: After the first plan, the share of a call site's calls that may be spent exploring,
#: counted in calls of the current choice: a re-plan's call where its pass ran slower than
#: the pass it would replace, and each check of accuracy by its time (one check, a solve
#: at tighter tolerances, costs several calls as the nested spheres leave their
#: loss plateau, more as the solve grows).
EXPLORE_SHARE = 0.05
#: Where the exploring budget is spent, a re-priced pass replaces the current choice
#: only when the calibrated estimates put it at least this many times cheaper (they are
#: estimates: a near tie is not worth a switch).
SWITCH_MARGIN = 1.1
#: The checked pass whose call's record (its steps or graph) also serves the other (the
#: paper's rule needs only the solution): its check judges the paper's rule beside it,
#: against the same tighter solve (the first plan measures it before the paper's rule; a
#: re-plan whose current choice is the paper's rule, awaiting its check, runs it first).
JUDGES_BESIDE = 'checkpoint'
#: The ways of planning: ``'measure'`` (time the admissible passes; the default) and
#: ``'estimate'`` (the count of evaluations alone; deterministic).
PLANNING_MODES = ('measure', 'estimate')

_planning: str | None = None


def set_planning(mode: str | None) -> None:
    """Choose how ``backward='auto'`` plans, for every call site of this process.

    Args:
        mode: ``'measure'`` (time the admissible passes on the first calls of each call
            site and take the fastest), ``'estimate'`` (the count of evaluations alone:
            no timing, the same choices and gradients on every run), or None (default:
            ``'estimate'`` under ``torch.use_deterministic_algorithms(True)``, else
            ``'measure'``).

    Raises:
        ValueError: ``mode`` is none of these.
    """
    global _planning
    if mode is not None and mode not in PLANNING_MODES:
        raise ValueError(f"planning mode must be 'measure', 'estimate' or None; got {mode!r}.")
    _planning = mode


def planning() -> str:
    """The way ``backward='auto'`` plans now: ``'measure'`` or ``'estimate'``."""
    if _planning is not None:
        return _planning
    return 'estimate' if torch.are_deterministic_algorithms_enabled() else 'measure'


@dataclass
class Candidate:
    """One pass a call site's plan may take.

    Attributes:
        name: the pass (a value of ``backward``).
        estimate: its cost by the count of evaluations (restart evaluations), from the
            first call's record.
        seconds: the measured seconds of each call it served (forward and backward).
        excluded: why it is not measured (None while it is).
        refused: it could not serve a call it was given (its measurements, if any, do
            not price it for a re-plan).
        checked: its accuracy is checked once in each plan before it may serve
            (:mod:`.paper_rule`: the paper's rule, and the checkpoint at coarse
            tolerances), at its first call, or the paper's rule judged beside the
            checkpoint's check.
        error_ratio: a checked pass only: its gradient's distance from a tighter
            solve's over the error-controlled pass's, from its check in this plan; None
            before that check.
    """

    name: str
    estimate: float
    seconds: list[float] = field(default_factory=list)
    excluded: str | None = None
    refused: bool = False
    checked: bool = False
    error_ratio: float | None = None

    @property
    def admitted(self) -> bool:
        """Unchecked, or checked in this plan and found accurate enough."""
        if not self.checked:
            return True
        return self.error_ratio is not None and self.error_ratio <= ERROR_FACTOR

    @property
    def best(self) -> float | None:
        """The least of its measured seconds (None before any)."""
        return min(self.seconds) if self.seconds else None


class CallSitePlan:
    """What ``backward='auto'`` has learnt at one call site (a line of the user's code,
    with its state size, dtype, device, method, tolerances and number of output times).

    Read it with ``str(plan)`` or its attributes; change it with :meth:`pin`,
    :meth:`unpin` and :meth:`reset`. Safe to use from several threads.

    Attributes:
        site: ``(filename, line)`` of the call.
        settings: a short description of the solve (state, method, tolerances, times).
        state: ``'new'`` (the next call records for every pass and estimates),
            ``'exploring'`` (calls run the candidates in turn), ``'settled'`` (calls run
            :attr:`choice`), ``'pinned'`` (calls run :attr:`choice`, never re-planned),
            or ``'estimated'`` (planning by estimate: each call chooses for itself).
        choice: the pass calls run (None before a plan).
        reason: why :attr:`choice` was taken.
        candidates: ``{name: Candidate}`` of the last plan.
        calls: backward passes completed here.
        explored: calls spent exploring (the first plan's record of every pass, and the
            calls that ran a pass to measure it).
        spent: calls charged to the exploring budget: every exploring call of the first
            plan (and of a plan made anew), of a re-plan each call whose pass ran
            slower than the pass it would replace, and each check of accuracy's time in
            calls of the current choice.
        plans_made: plans made here (the first and every re-plan).
        reference: ``((least, most) forward evaluations, (least, most) accepted steps)``
            of the calls the plan was made from.
        graph_too_large: a kept forward graph did not fit ``checkpoint_memory`` here
            (the forward no longer tries).
        last_estimate: the estimate's last choice here (under ``'estimate'`` the forward
            keeps its graph only while it is the checkpoint).
        checked: the passes offered here under the check of accuracy (none at tight
            tolerances; the paper's rule and the checkpoint at coarse ones).
    """

    def __init__(self, site: tuple[str, int], settings: str) -> None:
        self.site = site
        self.settings = settings
        self.state = 'new'
        self.choice: str | None = None
        self.reason = 'no call yet'
        self.candidates: dict[str, Candidate] = {}
        self.calls = 0
        self.explored = 0
        self.spent = 0.0
        self.plans_made = 0
        self.first_exploration = 0.0
        self.reference: tuple[tuple[int, int], tuple[int, int]] | None = None
        self.calibration: dict[str, float] = {}
        self._seen: list[tuple[int, int]] = []
        self._recent: collections.deque[tuple[int, int]] = collections.deque(maxlen=WINDOW)
        # The settled pass's recent times and their median when it first ran (the plan's
        # own clock, see TIME_BAND).
        # (call number, seconds) of the settled pass's recent timed calls.
        self._times: collections.deque[tuple[int, float]] = collections.deque(maxlen=WINDOW)
        self._time_reference: float | None = None
        # In a re-plan: the pass it would replace and its seconds a call before it
        # (what a measured call is charged against).
        self._incumbent: tuple[str, float] | None = None
        self._issued = 0  # settled tickets issued (one in SAMPLE_EVERY timed off the CPU)
        # The last check of accuracy's seconds here (what the next one is expected to cost).
        self._check_seconds: float | None = None
        # In a re-plan whose checked passes may all be refused: the unchecked pass to
        # measure then, and its estimate (measured only where they are).
        self._reserve: tuple[str, float] | None = None
        self.graph_too_large = False
        self.last_estimate: str | None = None
        #: The passes offered under the check of accuracy at this call site.
        self.checked: set[str] = set()
        # The plan (its number) each pass's calibration was last measured in.
        self._measured_in: dict[str, int] = {}
        # Their checks' ratios, good until the solve leaves the band they were made at.
        self._ratios: dict[str, float] = {}
        self._lock = threading.RLock()

    # What the user may change.

    def pin(self, name: str | None = None) -> None:
        """Run ``name`` (default: the current choice) at this call site from now on,
        without measuring or re-planning.

        Raises:
            ValueError: no name given and nothing chosen yet, or an unknown pass.
        """
        from .choice import PLANNED  # the table imports this module

        with self._lock:
            name = self.choice if name is None else name
            if name not in PLANNED:
                raise ValueError(
                    f'pin: name must be one of {", ".join(map(repr, PLANNED))}'
                    + (' (nothing is chosen yet here)' if self.choice is None else '')
                    + f'; got {name!r}.'
                )
            self.state, self.choice, self.reason = 'pinned', name, 'pinned by the user'

    def unpin(self) -> None:
        """Plan this call site again from its next call."""
        with self._lock:
            if self.state == 'pinned':
                # The pin was the user's, not a plan's choice: nothing is chosen now.
                self.choice = None
                self._restart('unpinned')  # the user's request: outside the budget

    def reset(self) -> None:
        """Forget what was learnt here (the next call plans anew)."""
        with self._lock:
            self.__init__(self.site, self.settings)  # type: ignore[misc]

    # What the Function asks.

    def ticket(self) -> Ticket:
        """What the next call at this site runs: a pass (or None: record for every pass
        and take the estimate's choice), and whether it is timed."""
        with self._lock:
            if planning() == 'estimate' and self.state != 'pinned':
                self.state, self.reason = 'estimated', 'planning by estimate'
                return Ticket(self, None, timed=False)
            if self.state in ('new', 'estimated'):
                self.state = 'new'
                return Ticket(self, None, timed=False)
            if self.state == 'exploring':
                name = self._next_candidate()
                return Ticket(
                    self, name, True, 'exploring', self.plans_made, checked=name in self.checked
                )
            # choice None (settled): the forward records for every pass, the estimate chooses.
            checked = self.choice in self.checked and self.state != 'pinned'
            watched = self.state == 'settled' and self.choice is not None
            self._issued += 1
            return Ticket(
                self,
                self.choice,
                watched and self._issued % SAMPLE_EVERY == 0,
                self.state,
                self.plans_made,
                checked=checked,
                timed_on_cpu=watched,
            )

    def check_status(self, ticket: Ticket) -> str:
        """What a call whose ticket names a pass does: ``'run'`` (a pass without a check,
        one admitted by its check in the plan the ticket was issued in, or one pinned by
        the user), ``'check'`` (a checked pass's first call in this plan: run it and
        check it, :mod:`.paper_rule`), or ``'refused'`` (a checked pass refused, or
        named by a ticket from an earlier plan: the error-controlled pass serves the
        call)."""
        with self._lock:
            if ticket.phase == 'pinned' or ticket.candidate is None or not ticket.checked:
                return 'run'
            candidate = self.candidates.get(ticket.candidate)
            if candidate is None or ticket.generation != self.plans_made:
                return 'refused'
            if candidate.error_ratio is None:
                exploring = self.state == ticket.phase == 'exploring'
                return 'check' if exploring and candidate.excluded is None else 'refused'
            return 'run' if candidate.admitted else 'refused'

    def awaiting_check(self, ticket: Ticket) -> list[str]:
        """The checked passes other than ``ticket``'s that still await their check in
        the plan the ticket was issued in (a check on its call may judge them too)."""
        with self._lock:
            if ticket.generation != self.plans_made or self.state != 'exploring':
                return []
            return [
                c.name
                for c in self._live()
                if c.checked and c.error_ratio is None and c.name != ticket.candidate
            ]

    def accuracy_checked(
        self,
        ticket: Ticket,
        ratio: float,
        admitted: bool,
        failed: str | None = None,
        seconds: float | None = None,
        name: str | None = None,
    ) -> None:
        """A checked pass's accuracy check on ``ticket``'s call: its ``ratio`` to the
        error-controlled pass's distance from a tighter solve; not ``admitted`` (or the
        check ``failed``: why), it is measured no more, nor priced for a re-plan. The
        check's ``seconds`` (None: not timed) are charged to the exploring budget, in
        calls of the current choice, and price the next check. ``name`` (default: the
        ticket's pass) is the pass checked: another one awaiting its check may be judged
        on the same call (:meth:`awaiting_check`), its ``seconds`` those of its pass
        alone (charged, not pricing the next check)."""
        with self._lock:
            beside = name is not None
            name = name or ticket.candidate or ''
            candidate = self.candidates.get(name)
            if seconds is not None:
                if not beside:  # a judgement beside a check costs a pass, not a check
                    self._check_seconds = seconds
                self.spent += self._in_calls(seconds)
            if candidate is None or ticket.generation != self.plans_made:
                return  # the plan moved on while the check ran
            found = ratio if failed is None else float('inf')
            # Two calls in flight (threads) may both have checked it: the worse stands.
            candidate.error_ratio = max(found, candidate.error_ratio or 0.0)
            self._ratios[name] = candidate.error_ratio
            if failed is None and admitted and candidate.admitted:
                return
            if candidate.excluded is not None:
                return
            self.calibration.pop(name, None)
            if failed is not None:
                candidate.excluded = f'its accuracy check failed ({failed})'
            else:
                candidate.excluded = (
                    f'its gradient {ratio:.3g} times as far from a tighter solve as the '
                    f"error-controlled pass's (at most {ERROR_FACTOR:g})"
                )
            self._release_reserve()

    def _next_candidate(self) -> str:
        measured = [c for c in self.candidates.values() if c.excluded is None]
        current = self._incumbent[0] if self._incumbent is not None else None

        def awaiting(candidate: Candidate) -> bool:
            return candidate.checked and candidate.error_ratio is None

        current_awaits = any(c.name == current and awaiting(c) for c in measured)

        def order(candidate: Candidate) -> tuple[bool, int]:
            # A re-plan's current choice awaiting its check goes first (the re-plan may
            # not stop before it has run), or the pass whose check judges it too; then
            # the least measured, in the plan's order (the first plan's offers put the
            # checkpoint before the paper's rule; a re-plan's, the cheapest first). The
            # first plan does not measure the checkpoint first: a process's first call
            # through a kept graph pays a warm-up that may prune it.
            judges = awaiting(candidate) and candidate.name == JUDGES_BESIDE
            first = awaiting(candidate) and candidate.name == current
            return (not (first or (judges and current_awaits)), len(candidate.seconds))

        return min(measured, key=order).name

    def learn(self, ticket: Ticket, record: Any, ran: str, seconds: float | None) -> None:
        """After a backward pass: what ``ticket``'s call ran (``ran``, a pass name), in
        how many ``seconds`` (None: not timed), on a solve described by ``record``."""
        with self._lock:
            self.calls += 1
            size = (record.forward_nfe, record.forward_steps)
            if ticket.candidate is None:
                self.last_estimate = ran
                if self.state == 'new':
                    self._plan(record, ran, size)
                return
            if ticket.generation != self.plans_made or ticket.phase != self.state:
                # Issued before the plan moved on (several solves per training step
                # take their tickets before any backward pass): nothing to learn.
                return
            if self.state == 'exploring':
                self._measured(ticket.candidate, ran, seconds, size)
            elif self.state == 'settled':
                self._check(ran, size, record, seconds)

    def _next_cost(self) -> float:
        """What the next exploring call is expected to cost the budget: a call, and a
        check (priced by the last) where its pass awaits one."""
        upcoming = self.candidates.get(self._next_candidate()) if self._live() else None
        if upcoming is not None and upcoming.checked and upcoming.error_ratio is None:
            return 1 + self._expected_check()
        return 1.0

    def _expected_check(self, per_call: float | None = None) -> float:
        """What the next check of accuracy is expected to cost the budget: the last one's
        time, in calls of ``per_call`` seconds (as :meth:`_in_calls`; none made yet: 0)."""
        return self._in_calls(self._check_seconds or 0.0, per_call)

    def _allowed(self) -> float:
        """Calls the exploring budget allows so far: the first plan's and
        :data:`EXPLORE_SHARE` of all calls."""
        return self.first_exploration + EXPLORE_SHARE * self.calls

    def _in_calls(self, seconds: float, per_call: float | None = None) -> float:
        """``seconds`` in calls of ``per_call`` seconds (default: the current choice's;
        in a re-plan, the pass it would replace; in a plan made anew, the fastest call
        measured so far; where none is known, a call)."""
        if seconds <= 0:
            return 0.0
        if not per_call and self._incumbent is not None:
            per_call = self._incumbent[1]
        if not per_call:
            per_call = min((c.best for c in self.candidates.values() if c.best), default=0.0)
        return seconds / per_call if per_call > 0 else 1.0

    def _measured(self, name: str, ran: str, seconds: float | None, size: tuple[int, int]) -> None:
        self.explored += 1
        incumbent = self._incumbent
        if incumbent is None or (
            name != incumbent[0] and (seconds is None or seconds > incumbent[1])
        ):
            # A re-plan's call that ran no slower than the pass it would replace cost
            # nothing; the first plan's calls all count.
            self.spent += 1
        self._seen.append(size)
        candidate = self.candidates.get(name)
        if candidate is not None and candidate.excluded is None:
            if ran != candidate.name:
                candidate.excluded = f'could not serve a call (ran {ran} instead)'
                candidate.refused = True
            elif seconds is not None:
                candidate.seconds.append(seconds)
                self._prune_measured()
        self._release_reserve()
        # Settled here also where this call's candidate was excluded on the way (a
        # checked pass by its check of accuracy): the others may all be measured.
        done = all(c.excluded is not None or len(c.seconds) >= ROUNDS for c in self._live())
        passes_budget = self.spent + self._next_cost() > self._allowed()
        if not done and incumbent is not None and passes_budget:
            # A re-plan stops where the budget is spent, once the current choice (where
            # it is measured again) and some pass it may take are timed.
            current = self.candidates.get(incumbent[0])
            ready = (
                current is None
                or current.excluded is not None
                or bool(current.seconds and current.admitted)
            )
            done = ready and any(c.seconds and c.admitted for c in self._live())
        if done:
            self._settle()

    def _check(
        self, ran: str, size: tuple[int, int], record: Any, seconds: float | None = None
    ) -> None:
        """A settled plan's call: plan again where its pass could not serve; where the
        solve (its running median) left the band the plan was made in, or the pass's
        time (its running median, :data:`TIME_BAND`) left the one it first ran at,
        re-price the measured passes (:meth:`_recalibrate`)."""
        if ran != self.choice:
            self._replan(f'{self.choice} could not serve a call (ran {ran})', fallback=ran)
            return
        if self.reference is None:
            return
        self._recent.append(size)
        if seconds is not None:
            self._times.append((self.calls, seconds))
        if len(self._recent) < WINDOW // 2 + 1:
            return
        typical = (
            int(statistics.median(value[0] for value in self._recent)),
            int(statistics.median(value[1] for value in self._recent)),
        )
        if _outside(typical, self.reference):
            (low, high), (fewest, most) = self.reference
            self._recalibrate(
                record,
                typical,
                f'the solve moved from {low}-{high} evaluations and {fewest}-{most} steps '
                f'to about {typical[0]} and {typical[1]}',
            )
            return
        timed = self._recent_seconds()
        if timed is None:
            return
        if self._time_reference is None:
            self._time_reference = timed
        elif not self._time_reference / TIME_BAND <= timed <= self._time_reference * TIME_BAND:
            self._recalibrate(
                record,
                typical,
                f'its calls moved from {1000 * self._time_reference:.3g} ms to about '
                f'{1000 * timed:.3g} ms',
                solve_moved=False,
            )

    def _recent_seconds(self) -> float | None:
        """The median of the settled pass's recent times (None: too few timed)."""
        return _median(self._recent_times())

    def _recent_times(self, within: int | None = None) -> list[float]:
        return [
            seconds
            for number, seconds in self._times
            if within is None or number > self.calls - within
        ]

    def _watch_afresh(self) -> None:
        """Forget the recent solves and times: the next calls set the plan's references."""
        self._recent.clear()
        self._times.clear()
        self._time_reference = None

    def _recalibrate(
        self, record: Any, typical: tuple[int, int], why: str, solve_moved: bool = True
    ) -> None:
        """Re-price the passes measured before: each one's estimate from this call's
        record times its measured-over-estimated ratio (the current choice's from its
        recent times, where they were timed; the others' from the last plan). Those
        within :data:`PRUNE_MEASURED` of the best are measured again, cheapest first
        (within the exploring budget; a checked pass only where priced below the current
        choice, checked again, the cheapest unchecked pass held in reserve); where that
        is the current choice alone, unchecked or with its check standing, the plan just
        moves its band. Where the budget is spent, the re-priced estimates may
        switch to an unchecked pass only.

        Where the solve moved (not only the pass's time), the current choice's recent
        times are those of the calls that moved the solve's median (off the CPU, one
        call in :data:`SAMPLE_EVERY` is timed), and the checks of accuracy are made anew;
        where only its time moved, the checks made at this solve stand."""
        from . import choice

        within = WINDOW if solve_moved else None
        if solve_moved:
            self._ratios.clear()
        names = set(self.calibration)
        recent = self._recent_times(within)
        fresh = _median(recent)
        if fresh is not None and self.choice is not None:
            names.add(self.choice)
        estimates = {name: choice.estimate(name, record) for name in names}
        if fresh is not None and 0 < estimates.get(self.choice or '', 0.0) < float('inf'):
            self.calibration[self.choice or ''] = fresh / estimates[self.choice or '']
        predicted = {
            name: self.calibration[name] * cost
            for name, cost in estimates.items()
            if cost < float('inf') and name in self.calibration
        }
        best = min(predicted.values(), default=0.0)
        current = predicted.get(self.choice or '')
        again = sorted(
            (
                name
                for name, cost in predicted.items()
                if cost <= PRUNE_MEASURED * best
                # A checked pass costs a check (a tighter solve) to measure: it is
                # measured only where it may be taken, priced below the current choice.
                and (
                    name not in self.checked
                    or name == self.choice
                    or current is None
                    or cost < current
                )
            ),
            key=predicted.__getitem__,
        )
        checking = [name for name in again if name in self.checked and name not in self._ratios]
        # A re-plan needs one call of budget, and as many more as a check is expected
        # to cost (the last one's time) where it checks a pass.
        expected = self._expected_check(fresh or current)
        nothing_to_measure = again in ([], [self.choice]) and not checking
        if nothing_to_measure or self.spent + 1 + (expected if checking else 0.0) > (
            self._allowed()
        ):
            # Kept unmeasured for want of budget: its time stays watched against the
            # time it was chosen at, so that a slow drift re-prices it again once the
            # budget allows (a pass the prices keep, or take, is watched afresh).
            unmeasured = False
            if nothing_to_measure:
                kept = 'the calibrated estimates keep it'
            else:
                # Nothing may be measured: the calibrated estimates choose. (A pass tied
                # with another when measured may grow with the solve while the other
                # does not: sines with 10 times, the propagator against the
                # interpolating pass.)
                for name in self.checked - {self.choice}:
                    # No switch to a checked pass without its check at the new solve.
                    predicted.pop(name, None)
                # Nor to a pass last measured in an earlier plan than the current
                # choice: the current choice's price holds how its time grew since
                # (a backward solve that grows on its own), the other's does not (on
                # the nested spheres off their plateau such a switch took a pass that
                # ran at 2.3 times the current choice's time, for the rest of the run).
                latest = self._measured_in.get(self.choice or '', 0)
                for name in list(predicted):
                    if name != self.choice and self._measured_in.get(name, 0) < latest:
                        predicted.pop(name)
                cheapest = min(predicted, key=predicted.__getitem__, default=self.choice)
                current = predicted.get(self.choice or '', float('inf'))
                if (
                    cheapest is not None
                    and cheapest != self.choice
                    and predicted[cheapest] * SWITCH_MARGIN < current
                ):
                    kept = (
                        f'the exploring budget is spent; the calibrated estimates put '
                        f'{self.choice} at {current / predicted[cheapest]:.2f} times '
                        f'{cheapest}, which it takes'
                    )
                    self.choice = cheapest
                    # Tickets issued for the pass it leaves teach this plan nothing.
                    self.plans_made += 1
                else:
                    kept = 'the exploring budget is spent; the calibrated estimates keep it'
                    unmeasured = True
            owed = self.choice in checking
            if owed:
                kept += ' (its check at the new solve waits for the budget)'
            if (self.reference is None or _outside(typical, self.reference)) and not owed:
                # The band moves where the solve left it (not where only the time did,
                # nor where the current choice's check waits for the budget: the next
                # calls find it out of its band again and check it once that allows).
                self.reference = ((typical[0], typical[0]), (typical[1], typical[1]))
            reference = self._time_reference
            self._watch_afresh()
            if unmeasured:
                self._time_reference = reference
            self.reason = f'{why}; {kept}'
            return
        unchecked = [name for name in predicted if name not in self.checked]
        if checking and unchecked and not set(unchecked) & set(again):
            # A checked pass is checked again at the new solve (its error moves with the
            # solve's steps), and a check may refuse it: the cheapest unchecked pass is
            # held in reserve, measured only where every checked one is refused.
            reserve = min(unchecked, key=predicted.__getitem__)
            self._reserve = (reserve, estimates[reserve])
        self.plans_made += 1
        self.candidates = {}
        for name in again:
            candidate = self.candidates[name] = Candidate(
                name,
                estimates[name],
                checked=name in self.checked,
                error_ratio=self._ratios.get(name) if name in self.checked else None,
            )
            if name == self.choice and fresh is not None:
                # Its time at this solve is known from the calls just run: its last
                # ROUNDS (the least prices it, as the others' least does them), or one
                # fewer where it is checked again (one call runs its check).
                waiting = candidate.checked and candidate.error_ratio is None
                keep = ROUNDS - 1 if waiting else ROUNDS
                candidate.seconds = recent[len(recent) - keep :]
        for name, cost in predicted.items():
            if name not in again:
                excluded = f're-priced at {cost / best:.1f} times the fastest'
                if cost <= PRUNE_MEASURED * best and current:
                    excluded = (
                        f're-priced at {cost / current:.2f} times the current choice '
                        '(a checked pass is measured only where it may be taken)'
                    )
                self.candidates[name] = Candidate(
                    name, estimates[name], excluded=excluded, checked=name in self.checked
                )
        if self.choice is not None:
            # What a measured call is charged against: the current choice's time (its
            # recent median, else its re-priced estimate; unknown, every call is charged).
            self._incumbent = (self.choice, fresh or predicted.get(self.choice, 0.0))
        self._seen = []
        self.state = 'exploring'
        self.reason = f'{why}: measuring ' + ', '.join(again)

    def _replan(self, why: str, fallback: str | None) -> None:
        """Plan again from the next call where the exploring budget allows it (the calls
        spent exploring, and a check of accuracy where passes are offered checked, stay
        within the first plan's and :data:`EXPLORE_SHARE` of all calls); else settle on
        ``fallback`` (None: keep the plan)."""
        calls = 1 + ROUNDS * max(len(self.candidates), 1)
        check = self._expected_check() if self.checked else 0.0
        if self.spent + calls + check <= self._allowed():
            self._restart(why)
        elif fallback is not None:
            # The pass that could not serve may serve the next call again (one call site,
            # several functions): neither it nor the fallback (the pass the forward's
            # record allowed, not the cheapest) is kept; each call takes the estimate.
            self.state, self.choice = 'settled', None
            self.reason = f'{why}; the exploring budget is spent: each call takes the estimate'
            self._close_first_plan()

    def _release_reserve(self) -> None:
        """Where every pass a re-plan measures was refused (by its check, or by a call
        it could not serve), the unchecked pass held in reserve is measured now."""
        if self._reserve is not None and not self._live():
            reserve, estimate = self._reserve
            self.candidates[reserve] = Candidate(reserve, estimate)
            self._reserve = None

    def _live(self) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.excluded is None]

    def _plan(self, record: Any, ran: str, size: tuple[int, int]) -> None:
        """The first call's record: which passes may serve, and their estimates."""
        from . import choice

        self.plans_made += 1
        self.explored += 1
        self.spent += 1
        self._seen, self.calibration, self._ratios = [size], {}, {}
        self._measured_in = {}
        self._incumbent, self._reserve = None, None
        offers = choice.admissible_estimates(record)
        self.candidates = {
            name: Candidate(name, offer.cost, excluded=offer.problem, checked=offer.checked)
            for name, offer in offers.items()
        }
        self.checked = {name for name, offer in offers.items() if offer.checked}
        # A checked pass does not set the bar: its check may exclude it later.
        costs = [c.estimate for c in self._live() if not c.checked]
        cheapest = min(costs) if costs else 0.0
        for candidate in self._live():
            if cheapest > 0 and candidate.estimate > PRUNE_ESTIMATE * cheapest:
                candidate.excluded = (
                    f'estimated at {candidate.estimate / cheapest:.1f} times the cheapest'
                )
        live = self._live()
        if len(live) <= 1:
            self.choice = live[0].name if live else ran
            self.state, self.reference = 'settled', _range(self._seen)
            self._watch_afresh()
            self.reason = 'the only pass that may serve' if live else 'the estimate'
            self._close_first_plan()
            return
        self.state = 'exploring'
        self.reason = 'measuring ' + ', '.join(c.name for c in live)

    def _prune_measured(self) -> None:
        firsts = [c.seconds[0] for c in self._live() if c.seconds]
        for candidate in self._live():
            if candidate.seconds and candidate.seconds[0] > PRUNE_MEASURED * min(firsts):
                candidate.excluded = (
                    f'measured at {candidate.seconds[0] / min(firsts):.1f} times the fastest'
                )

    def _settle(self) -> None:
        # A checked pass may be taken only once its check in this plan admitted it.
        live = [c for c in self._live() if c.seconds and c.admitted]
        replanned, self._incumbent = self._incumbent is not None, None
        self._reserve = None
        if not live:
            self._replan('no pass could be measured', fallback=self.last_estimate or 'restart')
            return
        fastest = min(live, key=lambda c: c.best or 0.0)
        self.choice, self.state = fastest.name, 'settled'
        if not (
            replanned
            and self.reference is not None
            and not any(_outside(size, self.reference) for size in self._seen)
        ):
            # (A re-plan whose few calls lie within the band, one the pass's time set
            # off, keeps the band the plan was measured in.)
            self.reference = _range(self._seen)
        self._watch_afresh()
        # Measured over estimated, per pass: what a re-plan prices the passes with.
        measured = {
            c.name: (c.best or 0.0) / c.estimate
            for c in self.candidates.values()
            if c.seconds and 0 < c.estimate < float('inf') and not c.refused
        }
        self.calibration.update(measured)
        self._measured_in.update(dict.fromkeys(measured, self.plans_made))
        self.reason = f'fastest measured ({1000 * (fastest.best or 0.0):.3g} ms a call)'
        self._close_first_plan()

    def _close_first_plan(self) -> None:
        if self.plans_made == 1:
            self.first_exploration = self.spent

    def _restart(self, why: str) -> None:
        self.state, self.reason = 'new', f'planning again: {why}'

    def __str__(self) -> str:
        with self._lock:
            lines = [
                f'call site {self.site[0]}:{self.site[1]} ({self.settings})',
                f'  {self.state}: {self._shown_choice()} ({self.reason}); '
                f'{self.calls} calls, {self.explored} exploring ({self.spent:.3g} spent), '
                f'{self.plans_made} plans',
            ]
            if self.reference is not None:
                (low, high), (fewest, most) = self.reference
                lines.append(
                    f'  planned at {low}-{high} forward evaluations, {fewest}-{most} accepted steps'
                )
            for candidate in self.candidates.values():
                if candidate.seconds:
                    measured = ', '.join(f'{1000 * s:.3g}' for s in candidate.seconds)
                    what = f'measured {measured} ms'
                else:
                    what = 'not measured'
                why = f' ({candidate.excluded})' if candidate.excluded else ''
                if candidate.error_ratio is not None and not candidate.excluded:
                    why = (
                        f' (gradient {candidate.error_ratio:.3g} times as far from a '
                        "tighter solve as the error-controlled pass's)"
                    )
                lines.append(
                    f'  {candidate.name:<13} estimate {candidate.estimate:8.1f}  {what}{why}'
                )
            return '\n'.join(lines)

    __repr__ = __str__

    def _shown_choice(self) -> str:
        if self.choice is not None:
            return self.choice
        if self.state == 'estimated' and self.last_estimate is not None:
            # Each call takes the estimate's choice for itself: the last one's.
            return f"{self.last_estimate} (the last call's estimate)"
        return 'nothing chosen'


def _median(times: list[float]) -> float | None:
    """The median of ``times``, None where fewer than half a window were timed."""
    return statistics.median(times) if len(times) >= WINDOW // 2 + 1 else None


def _range(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((least, most) evaluations, (least, most) steps)`` of ``sizes``."""
    evaluations, steps = zip(*sizes)
    return (min(evaluations), max(evaluations)), (min(steps), max(steps))


def _outside(size: tuple[int, int], reference: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``size`` left the band around the ``(least, most)`` ranges."""
    return any(
        not (low / BAND <= value <= high * BAND)
        for value, (low, high) in zip(size, reference)
        if high
    )


class _CollectorClock:
    """Seconds the cyclic garbage collector has run in this process since the planner
    first timed a call. A timed call leaves them out, as :mod:`timeit` turns the
    collector off: one collection of a large heap (a notebook's, a test session's) takes
    a tenth of a second or more, as long as several calls of a small model, and falling
    on one pass's first measured call it would prune that pass for the whole plan."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None
        self._installed = False
        self._lock = threading.Lock()

    def install(self) -> None:
        """Watch the collector from now on (once per process)."""
        if self._installed:
            return
        with self._lock:
            if not self._installed:
                gc.callbacks.append(self._on_collection)
                self._installed = True

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # The collector runs with the GIL held, one collection at a time.
        now = time.perf_counter()
        if phase == 'start':
            self._started = now
        elif self._started is not None:
            self.seconds += now - self._started
            self._started = None


#: The process's watch on the garbage collector (installed by the first timed call).
COLLECTOR = _CollectorClock()


@dataclass
class Ticket:
    """One call's part in its call site's plan: the pass it runs (None: the estimate's
    choice from a record of everything) and its clock."""

    plan: CallSitePlan
    candidate: str | None
    timed: bool
    #: The plan's state and number of plans when the ticket was issued.
    phase: str = 'new'
    generation: int = 0
    #: Whether its pass was offered under the check of accuracy when the ticket was
    #: issued (a reset between the forward and the backward forgets the plan, not this).
    checked: bool = False
    #: Whether the call is timed where that costs nothing (on the CPU) though not
    #: ``timed`` (a settled plan's call: its clock watches the pass's time).
    timed_on_cpu: bool = False
    seconds: float = 0.0
    #: Whether its call was learnt from (a second backward pass through the same solve,
    #: ``retain_graph=True``, is not another call).
    learnt: bool = False
    _start: float = 0.0
    _collected: float = 0.0

    def start(self, device: torch.device) -> None:
        """Start (or resume) the clock."""
        if self.timed_on_cpu and device.type == 'cpu':
            self.timed = True
        if self.timed:
            COLLECTOR.install()
            synchronise(device)
            self._collected = COLLECTOR.seconds
            self._start = time.perf_counter()

    def stop(self, device: torch.device) -> None:
        """Stop the clock, adding the time since :meth:`start` less the garbage
        collector's (:class:`_CollectorClock`)."""
        if self.timed:
            synchronise(device)
            elapsed = time.perf_counter() - self._start
            self.seconds += max(elapsed - (COLLECTOR.seconds - self._collected), 0.0)


def synchronise(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a clock on a GPU reads nothing before it)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Planner:
    """Every call site's plan, keyed by the call site and the solve's settings."""

    def __init__(self) -> None:
        self._plans: dict[tuple[Any, ...], CallSitePlan] = {}
        self._lock = threading.Lock()

    def plan(self, key: tuple[Any, ...], settings: str, site: tuple[str, int]) -> CallSitePlan:
        """The plan for ``key`` (made on first use)."""
        with self._lock:
            found = self._plans.get(key)
            if found is None:
                found = self._plans[key] = CallSitePlan(site, settings)
            return found

    def plans(self) -> list[CallSitePlan]:
        """Every call site's plan, in the order of their first calls."""
        with self._lock:
            return list(self._plans.values())

    def reset(self) -> None:
        """Forget every plan."""
        with self._lock:
            self._plans.clear()


#: The process's planner.
PLANNER = Planner()


def plans() -> list[CallSitePlan]:
    """Every call site's plan of this process (``print(plan)`` shows what ran and why).

    Returns:
        list of :class:`CallSitePlan`, in the order of their first calls.
    """
    return PLANNER.plans()


def reset_plans() -> None:
    """Forget every call site's plan: the next calls plan anew."""
    PLANNER.reset()
