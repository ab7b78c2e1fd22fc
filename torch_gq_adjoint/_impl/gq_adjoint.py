"""The public function and one autograd Function whose forward and backward read top to
bottom.

Forward: the call site's plan (:mod:`.planner`) names the pass to run, or none (its
first call, or planning by estimate); what that pass (or every pass) needs is recorded by
the first recorder that serves it (:mod:`.recorders`: the graph, the steps' tape, or
nothing), around :func:`torchdiffeq.odeint` itself on the user's ``func`` and state.
Backward: that pass, or the estimate's choice (:func:`~.choice.choose`) from the table of
passes (:mod:`.restart`, :mod:`.interpolated`, :mod:`.propagator`, :mod:`.checkpoint`),
returns the cotangents of ``y0`` and the parameters; the time gradients follow in closed
form from ``f`` at the output times (:func:`~.record.time_gradients`); the plan learns
what the call cost.
"""

from __future__ import annotations

import dataclasses
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from . import checks, generators
from .backward_options import backward_norm
from .checkpoint import DEFAULT_CHECKPOINT_MEMORY
from .choice import BACKWARDS, choose, records, take
from .func_state import FuncState
from .notices import call_site, warn_once
from .paper_rule import PAPER, AccuracyCheck, check_accuracy
from .planner import PLANNER, CallSitePlan, Ticket, synchronise
from .record import BackwardPass, BackwardResult, ForwardRecord, check_finite, time_gradients
from .recorders import record_forward
from .second_order import differentiable_backward
from .state import FlatField, StateLayout

#: The passes that read the forward's recorded steps (``info``'s ``checkpoint_*`` keys).
TAPE_READERS = ('checkpoint', 'interpolated')

#: A tolerance: a number, or a tensor broadcastable to the state.
Tolerance = Union[float, torch.Tensor]
#: A state: one tensor, or a tuple of tensors.
State = Union[torch.Tensor, tuple]


@dataclass
class Settings:
    """Everything the Function and the backward passes need besides tensors (checked by
    the public function)."""

    func: Callable
    field: FlatField
    layout: StateLayout
    rtol: Tolerance
    atol: Tolerance
    gtol: float | None
    method: str
    options: dict[str, Any]
    event_fn: Callable | None
    adjoint_rtol: Tolerance
    adjoint_atol: Tolerance
    adjoint_method: str
    adjoint_options: dict[str, Any]
    backward: str
    custom_adjoint_norm: bool
    checkpoint_memory: float
    info: dict[str, Any] | None
    call_site: tuple[str, int]
    per_sample: bool
    #: Whether a backward pass may follow (grad mode on and an input requiring grad):
    #: without one the forward records nothing.
    expects_backward: bool = True
    #: What was learnt at this call site (:mod:`.planner`); None without a backward.
    plan: CallSitePlan | None = None


class _GaussQuadratureAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, settings: Settings, t: torch.Tensor, *inputs: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        layout = settings.layout
        parts, params = inputs[: len(layout.shapes)], inputs[len(layout.shapes) :]
        plan = settings.plan
        ticket = _ticket(settings, plan)
        needs = _needs(settings, plan, ticket)
        device = parts[0].device
        if ticket is not None:
            ticket.start(device)
        recording = record_forward(
            settings, t, parts, params, needs, on_overflow=lambda: _too_large(plan)
        )
        if ticket is not None:
            ticket.stop(device)
        result, tape = recording.result, recording.tape
        event_t = None
        if settings.event_fn is not None:
            event_t, result = result
        solution = tuple(result) if layout.is_tuple else (result,)
        ctx.settings = settings
        ctx.recording = recording
        ctx.ticket = ticket
        # After the solve: what func reads, to catch a change before backward() (none
        # comes without grad mode or an input requiring grad).
        ctx.func_state = FuncState(settings.func) if settings.expects_backward else None
        _report(
            settings.info,
            forward_nfe=recording.nfe,
            checkpoint_bytes=0 if tape is None else tape.nbytes,
            checkpoint_steps=0 if tape is None else len(tape.starts),
        )
        # y0's parts too: a backward pass that records its graph solves again from them.
        ctx.save_for_backward(
            t, *((event_t,) if event_t is not None else ()), *solution, *params, *parts
        )
        if event_t is None:
            return solution
        # torchdiffeq's own adjoint does not differentiate the event time either; the
        # gradient through it comes from torchdiffeq.odeint_event (see the docstring).
        ctx.mark_non_differentiable(event_t)
        return (event_t, *solution)

    @staticmethod
    def backward(
        ctx: Any, *grad_outputs: Optional[torch.Tensor]
    ) -> tuple[Optional[torch.Tensor], ...]:
        ctx.func_state.check()
        settings = ctx.settings
        layout = settings.layout
        event_mode = settings.event_fn is not None
        saved = ctx.saved_tensors
        t, saved = saved[0], saved[1:]
        if event_mode:
            event_t, saved = saved[0], saved[1:]
            grad_outputs = grad_outputs[1:]
        parts = len(layout.shapes)
        solution_parts, params, y0_parts = (saved[:parts], saved[parts:-parts], saved[-parts:])
        if torch.is_grad_enabled() or getattr(ctx, 'with_graph', False):
            # create_graph=True: the cotangents must carry their own graph. A later
            # backward pass through this solve (the second derivative reaching the
            # cotangents' dependence on the solution) takes the same path, so that every
            # order is direct backprop's.
            grad_times, grad_y0, param_grads, costs = differentiable_backward(
                settings, t, y0_parts, params, grad_outputs, ctx.needs_input_grad[1]
            )
            ctx.with_graph = True
            _report(settings.info, **costs)
            if ctx.ticket is not None:  # the plan does not learn from such a call
                _report(settings.info, plan=ctx.ticket.plan.state)
            return (None, grad_times, *grad_y0, *param_grads)
        return _backward(
            ctx,
            settings,
            t,
            event_t if event_mode else None,
            solution_parts,
            params,
            y0_parts,
            grad_outputs,
        )


def _ticket(settings: Settings, plan: CallSitePlan | None) -> Ticket | None:
    """This call's part in the call site's plan (``'auto'`` with a backward to come)."""
    if plan is None or settings.backward != 'auto':
        return None
    return plan.ticket()


def _needs(settings: Settings, plan: CallSitePlan | None, ticket: Ticket | None) -> set[str]:
    """What the forward records: for the pass to run (the ticket's candidate or the pass
    forced), or for every pass the estimate may choose; the graph only where it may
    serve (not after it did not fit here; under the estimate, on a call site's first call
    and while the estimate last chose the checkpoint there)."""
    if not settings.expects_backward:
        return set()
    candidate = None if ticket is None else ticket.candidate
    needs = records(settings, candidate)
    if 'graph' in needs and plan is not None:
        estimated = settings.backward == 'auto' and candidate is None
        if plan.graph_too_large or (estimated and plan.last_estimate not in (None, 'checkpoint')):
            needs.discard('graph')
    return needs


def _too_large(plan: CallSitePlan | None) -> None:
    if plan is not None:
        plan.graph_too_large = True


def _backward(
    ctx: Any,
    settings: Settings,
    t: torch.Tensor,
    event_t: Optional[torch.Tensor],
    solution_parts: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    y0_parts: Sequence[torch.Tensor],
    grad_outputs: Sequence[Optional[torch.Tensor]],
) -> tuple[Optional[torch.Tensor], ...]:
    """The backward pass without a graph of its own: the chosen pass's cotangents."""
    layout = settings.layout
    event_mode = event_t is not None
    with torch.no_grad():
        solution = layout.flatten_series(
            tuple(solution_parts) if layout.is_tuple else solution_parts[0]
        )
        grads = [
            torch.zeros_like(part) if grad is None else grad
            for part, grad in zip(solution_parts, grad_outputs)
        ]
        grad_solution = layout.flatten_series(tuple(grads) if layout.is_tuple else grads[0])
        times = t.detach()
        if event_t is not None:
            times = torch.cat([times[:1], event_t.detach().reshape(1).to(times)])

        recording = ctx.recording
        device = solution.device
        recorded_again = 0
        if recording.graph is not None and recording.graph.used and recording.tape is None:
            # A second backward pass through this solve (retain_graph=True outside): the
            # first one freed the kept graph and no steps were recorded beside it, so
            # the solve is recorded again from y0 (the same steps, the same gradient).
            with generators.untouched(device):
                if recording.generator_states is not None:
                    # What the forward drew (a func with dropout), drawn again.
                    generators.restore(device, recording.generator_states)
                recording = record_forward(
                    settings, t, tuple(y0_parts), tuple(params), {'graph', 'steps'}
                )
            ctx.recording, recorded_again = recording, recording.nfe
        record = ForwardRecord(
            settings,
            t.detach(),
            times,
            solution,
            tuple(params),
            recording.nfe,
            recording.last_step,
            recording.tape,
            recording.graph,
            forward_steps=recording.accepted,
        )
        ticket = ctx.ticket
        if ticket is not None:
            ticket.start(device)
        with generators.untouched(device):
            backward = None
            candidate = None if ticket is None else ticket.candidate
            # Only a checked pass's ticket asks its plan (a lock) what to do.
            checked = ticket is not None and ticket.checked
            status = ticket.plan.check_status(ticket) if checked else None
            if status == 'refused':
                # A checked pass not (or no longer) admitted where this call's ticket was
                # issued: the error-controlled pass serves it, as it served the check.
                candidate = 'restart'
            why = None
            if candidate is not None:
                backward, why = take(candidate, record)
            if backward is None:
                backward = choose(record)
                if why is not None and ticket is not None and ticket.phase == 'pinned':
                    _pinned_cannot_serve(settings, candidate, why, backward)
            result = backward(grad_solution)
            if status == 'check' and backward.name == candidate:
                result = _check_accuracy(ticket, record, y0_parts, grad_solution, result)
            grad_times = None
            if ctx.needs_input_grad[1]:
                grad_times = time_gradients(record, grad_solution, result.adjoint_after_start)
        check_finite(result)
        costs = dict(result.costs)
        if recorded_again:
            costs['backward_nfe'] = costs.get('backward_nfe', 0) + recorded_again
        _report(settings.info, **costs)
        read_tape = result.costs.get('backward') in TAPE_READERS
        if settings.info is not None and (not read_tape or 'graph_bytes' in result.costs):
            # Recorded for a pass that did not run: report only what ran.
            for key in ('checkpoint_steps', 'checkpoint_bytes'):
                settings.info.pop(key, None)
        adjoint, param_grads = result.grad_y0, result.param_grads
        if grad_times is not None and event_mode:
            # Only t[0] reaches the solution in event mode, as in torchdiffeq.
            grad_times = torch.cat([grad_times[:1], torch.zeros_like(t[1:])])
        unflat = layout.unflatten(adjoint)
        grad_y0 = unflat if isinstance(unflat, tuple) else (unflat,)
        if ticket is not None:
            ticket.stop(device)
            if not ticket.learnt:  # a second backward through this solve is no new call
                ticket.learnt = True
                with generators.untouched(device):  # a first plan probes func
                    ticket.plan.learn(
                        ticket, record, backward.name, ticket.seconds if ticket.timed else None
                    )
            _report(settings.info, plan=ticket.plan.state)
        return (None, grad_times, *grad_y0, *param_grads)


def _pinned_cannot_serve(
    settings: Settings, pinned: Optional[str], why: str, served: BackwardPass
) -> None:
    warn_once(
        f"odeint_adjoint_gq: the plan here is pinned to '{pinned}', which cannot serve this "
        f"call ({why}); it got '{served.name}' instead. plan.unpin() plans again; "
        'plan.pin(name) runs another pass.',
        settings.call_site,
    )


def _check_accuracy(
    ticket: Ticket,
    record: ForwardRecord,
    y0_parts: Sequence[torch.Tensor],
    grad_solution: torch.Tensor,
    checked: BackwardResult,
) -> BackwardResult:
    """A checked pass's first call in a plan (the paper's rule, or the checkpoint at
    coarse tolerances): its accuracy checked outside the clock (:mod:`.paper_rule`),
    and the other checked passes awaiting their check judged beside it where this
    call's record serves them; where it is not admitted, the error-controlled pass's
    result serves the call instead. ``backward_nfe`` counts every evaluation made."""
    device = grad_solution.device
    ticket.stop(device)
    # Its time is charged to the plan's exploring budget (not to the pass's clock).
    started = time.perf_counter()
    check = check_accuracy(record, y0_parts, grad_solution, checked)
    synchronise(device)
    judging = time.perf_counter()
    beside, evaluations = _judge_beside(ticket, record, grad_solution, check)
    synchronise(device)
    judged = time.perf_counter() - judging
    plan = ticket.plan
    plan.accuracy_checked(ticket, check.ratio, check.admitted, check.failed, judging - started)
    for number, (name, ratio, admitted, failed) in enumerate(beside):
        # The passes judged beside are charged their time (once, with the first).
        seconds = judged if number == 0 else None
        plan.accuracy_checked(ticket, ratio, admitted, failed, seconds, name=name)
    ticket.start(device)
    # Where even the error-controlled pass failed, the checked gradient is all there is.
    served = checked if check.admitted or check.controlled is None else check.controlled
    costs = dict(served.costs)
    costs['backward_nfe'] = checked.costs.get('backward_nfe', 0) + check.evaluations + evaluations
    return dataclasses.replace(served, costs=costs)


def _judge_beside(
    ticket: Ticket, record: ForwardRecord, grad_solution: torch.Tensor, check: AccuracyCheck
) -> tuple[list[tuple[str, float, bool, Optional[str]]], int]:
    """The other checked passes of the plan that await their check, where this call's
    record serves them (the paper's rule on the checkpoint's call): each one's gradient
    judged against the same tighter solve, ``(name, ratio, admitted, failed)``, and the
    evaluations they took. Nothing where the check itself failed (each pass is then
    checked on its own call)."""
    judged: list[tuple[str, float, bool, Optional[str]]] = []
    evaluations = 0
    if check.failed is not None:
        return judged, evaluations
    for name in ticket.plan.awaiting_check(ticket):
        backward, _ = take(name, record)
        if backward is None:  # its record is not this call's (the checkpoint's steps)
            continue
        try:
            result = backward(grad_solution)
        except Exception as error:  # noqa: BLE001 - as a failing check: the pass is refused
            judged.append((name, float('inf'), False, f'{type(error).__name__}: {error}'))
            continue
        evaluations += result.costs.get('backward_nfe', 0)
        ratio, admitted = check.judge(result)
        judged.append((name, ratio, admitted, None))
    return judged, evaluations


def _report(info: Optional[dict[str, Any]], **values: Any) -> None:
    """Write what the solve cost into the user's ``info`` dict (if one was given)."""
    if info is not None:
        info.update(values)


def odeint_adjoint_gq(
    func: Callable,
    y0: State,
    t: torch.Tensor,
    *,
    rtol: Tolerance = 1e-7,
    atol: Tolerance = 1e-9,
    gtol: float | None = None,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: Tolerance | None = None,
    adjoint_atol: Tolerance | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Any = None,
    backward: str = 'auto',
    batch_dim: int | None = 0,
    checkpoint_memory: float = DEFAULT_CHECKPOINT_MEMORY,
    info: dict[str, Any] | None = None,
) -> Any:
    """Solve ``dy/dt = func(t, y)`` like :func:`torchdiffeq.odeint`; gradients by the GQ adjoint.

    The forward pass is :func:`torchdiffeq.odeint` itself, without a graph (memory
    O(state)) or, where the graph is small and the checkpoint may run, with it: same
    steps, same values. The backward pass solves only the state and its
    adjoint ``[z, a]`` backwards and computes the parameter gradient ``∫ aᵀ ∂f/∂θ dt``
    with Gauss–Legendre quadrature on each interval ``[t[i-1], t[i]]``.

    Same signature as :func:`torchdiffeq.odeint_adjoint` plus ``gtol``, so switching is
    a rename.

    Args:
        func: callable ``func(t, y)`` returning ``dy/dt`` with ``y``'s structure. An
            ``nn.Module`` unless ``adjoint_params`` is given. No ``nfe`` attribute needed.
            Its ``callback_step``, ``callback_accept_step``, ``callback_reject_step`` are
            called in the forward solve and their ``*_adjoint`` versions in the backward
            solves of the restart and interpolating passes, as torchdiffeq's adjoint
            calls them (with ``(t, (t_placeholder, z, a), dt)``, flat ``z`` and ``a``, no
            parameter entries); the propagator and the checkpoint do not call them.
        y0: floating point tensor of any shape (0-dim included), or a tuple of such
            tensors (same dtype and device), the state at ``t[0]``; finite.
        t: 1-D floating point tensor of output times, strictly increasing or strictly
            decreasing, on ``y0``'s device. Its entries may require grad.
        rtol, atol: tolerances of the forward solve (defaults 1e-7, 1e-9 as torchdiffeq):
            finite and non-negative numbers or tensors; ``atol`` positive for methods with
            step-size control.
        gtol: how the quadrature nodes are chosen (docs/usage.md gives both rules).

            - None (default): error-controlled; each interval's rule is checked on
              integrals the backward solve knows exactly, for the adjoint's accuracy.
              Fixed-grid methods get one or two nodes per grid step.
            - a positive number ``C``: the paper's rule, about ``C · NFE`` nodes in all,
              shared by the intervals in proportion to their length (at least one, at
              most 64 each). Larger gives more nodes; it is not a tolerance.
        method: torchdiffeq method name (default None: dopri5).
        options: dict of solver options for the forward solve (e.g. ``step_size``,
            ``step_t``, ``jump_t``, ``grid_constructor``, ``norm``), as for ``odeint``.
        event_fn: optional ``event_fn(t, y)``; as in :func:`torchdiffeq.odeint_adjoint`
            the solve stops where it crosses zero, ``t`` must have 2 entries, and the
            return value is ``(event_t, solution)``. Gradients flow to the solution at
            the event time as at a fixed end time (``event_t`` itself is not
            differentiable); for gradients through the event time use
            ``torchdiffeq.odeint_event(func, y0, t0, event_fn=...,
            odeint_interface=odeint_adjoint_gq)``.
        adjoint_rtol, adjoint_atol: tolerances of the backward ``[z, a]`` solve
            (default: ``rtol``, ``atol``); they also set the error-controlled rule's target.
        adjoint_method: method of the backward solve (default: ``method``).
        adjoint_options: options of the backward solve (default: ``options`` without
            ``norm``). ``step_t``, ``jump_t`` and ``grid_constructor`` are given in real
            time, as the user wrote them; they are mapped to the backward solve's time as
            torchdiffeq's adjoint does (``grid_constructor`` receives ``(func, y0,
            tensor([t[i], t[i-1]]))`` and returns a grid from ``t[i]`` to ``t[i-1]``).
            ``norm='seminorm'`` is accepted and changes nothing: the backward state has
            no parameter part for a seminorm to leave out. A callable ``norm`` receives
            ``(t_placeholder, *y, *adj_y)`` as torchdiffeq's adjoint would (with no
            parameter entries). For adaptive methods each interval's solve starts from
            the last accepted step of the previous one unless ``first_step`` is given.
        adjoint_params: tensors to differentiate (default: ``func.parameters()``); those
            not requiring grad are skipped, unused ones get a zero gradient.
        backward: which backward pass computes the gradients (docs/backward.md derives
            each and gives the rule of ``'auto'``; docs/benchmarks.md measures them).

            - ``'auto'`` (default): the fastest pass that serves the solve, planned per
              call site (:func:`torch_gq_adjoint.plans`): the first call takes the
              estimate (a count of evaluations), the next few time each admissible
              pass on real calls and the fastest is kept, planned again when the solve
              changes (after the first plan, exploring costs at most 5 % of a site's
              calls, counted in calls of the current choice). At coarse tolerances
              (``rtol`` above 1e-5) the checkpoint and the paper's rule (``gtol=0.1``,
              carried steps; ``info['backward']`` is then ``'paper'``) serve only where
              a check against a tighter solve finds them as accurate as the
              error-controlled pass. Under
              ``torch.use_deterministic_algorithms(True)`` or
              ``set_planning('estimate')`` every call takes the estimate: the same
              passes and bit-identical gradients on every run.
            - ``'restart'``: the paper's, one ``[z, a]`` solve per interval, restarted at
              every observation time, the parameter gradient by Gauss–Legendre quadrature.
            - ``'interpolated'``: ``a`` alone, solved once over the whole horizon, ``z``
              read off the forward solve's own dense output (its accepted steps and their
              stages are kept: memory O(steps × stages × state)), the loss gradients
              added as jumps without restarting; quadrature as ``'restart'``. Adaptive
              Runge–Kutta methods.
            - ``'propagator'``: one backward solve of ``z`` and the per-sample
              propagator ``Ψ`` (a d × d matrix per sample, d the per-sample state size)
              over the whole horizon, ``a`` in closed form at the nodes. Needs ``func``
              to treat the samples along ``batch_dim`` independently (checked).
            - ``'checkpoint'``: discretise-then-optimise. The state at each accepted
              forward step is kept (memory O(steps × state)); the backward pass
              recomputes one step at a time with torchdiffeq's own step function and
              backpropagates through it: direct backpropagation's gradient less the
              derivative of the step-size controller. Where the forward's graph fits
              ``checkpoint_memory`` (estimated as it grows) the forward keeps it, with
              the controller's norm detached, and the backward pass goes through it
              instead: the same gradient, nothing evaluated again, direct backprop's
              memory (under ``'auto'`` while the checkpoint is what it takes at that
              line). ``adjoint_*`` arguments and the
              ``*_adjoint`` callbacks are not used by it. With ``create_graph=True``
              (second derivatives) it solves again with a graph and backpropagates through
              it: direct backprop's derivatives of every order, at direct backprop's
              memory; ``'auto'`` then takes it, and the other passes raise
              (docs/usage.md).

            A pass that cannot serve the solve (docs/backward.md says which) gives way to
            ``'restart'`` with a warning, shown once per call site and process.
        batch_dim: 0 (default): the samples are along the first dimension of ``y0`` (of
            every part of a tuple ``y0``); None: no per-sample structure (no propagator).
        checkpoint_memory: bytes the forward may keep for the backward pass: its graph
            (checkpoint) or the record of its steps (checkpoint and interpolating
            passes) (default 2**28, 256 MiB). A graph that would pass it is not kept
            (the steps are recorded instead, and the call site's plan remembers it); under
            ``'auto'`` a solve whose steps pass it uses the passes with memory O(state);
            0 rules them out.
        info: optional dict, emptied and filled in with what the solve cost
            (docs/usage.md explains each key): ``forward_nfe`` after the forward pass;
            ``backward`` (the pass that ran), ``backward_nfe`` and ``nodes`` after the
            backward pass,
            ``checkpoint_steps`` and ``checkpoint_bytes`` where that pass read the
            forward's recorded steps, ``graph_bytes`` (the estimate of the kept
            graph's size) where the checkpoint went through the forward's graph, and,
            under ``'auto'``, ``plan`` (the call site's plan after this call: ``'new'``,
            ``'exploring'``, ``'settled'``, ``'pinned'`` or ``'estimated'``).

    Returns:
        Tensor of shape ``(len(t), *y0.shape)``, or a tuple of such tensors for a tuple
        ``y0``: exactly what :func:`torchdiffeq.odeint` returns (``(event_t, solution)``
        with ``event_fn``).

    Raises:
        TypeError, ValueError: bad arguments (named in the message), before any solve.
        FloatingPointError: non-finite values met in the backward pass.
    """
    params = checks.check_func_and_params(func, adjoint_params)
    parts, is_tuple = checks.check_state(y0)
    # An inference tensor cannot join a graph; a copy made outside inference mode can (the
    # solve differentiates from y0 whether or not it requires grad).
    parts = tuple(part.clone() if part.is_inference() else part for part in parts)
    checks.check_times(t, parts[0].device)
    checks.check_event_fn(event_fn, t)
    gtol = checks.check_gtol(gtol)
    checks.check_method('method', method)
    checks.check_method('adjoint_method', adjoint_method)
    method = method or 'dopri5'
    if adjoint_method is None:
        adjoint_method = method
    elif adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError(
            'adjoint_options must be given when adjoint_method differs from method '
            'and options are given: options of one method need not suit another.'
        )
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    for name, value, used_by in (
        ('rtol', rtol, method),
        ('atol', atol, method),
        ('adjoint_rtol', adjoint_rtol, adjoint_method),
        ('adjoint_atol', adjoint_atol, adjoint_method),
    ):
        checks.check_tolerance(name, value, used_by)
    for name, value in (('rtol', rtol), ('atol', atol)):
        checks.check_tolerance_shape(name, value, parts, is_tuple)
    checks.check_finite_state(parts, is_tuple)
    if backward not in BACKWARDS:
        # The paper's rule is a plan's name for a pass, not a value of backward.
        hint = " (the paper's rule: backward='restart', gtol=0.1)" if backward == PAPER else ''
        raise ValueError(
            f'backward must be one of {", ".join(map(repr, BACKWARDS))}{hint}; got {backward!r}.'
        )
    memory_wanted = 'checkpoint_memory must be a non-negative number of bytes (e.g. 2**28)'
    if isinstance(checkpoint_memory, bool) or not isinstance(checkpoint_memory, numbers.Real):
        raise TypeError(f'{memory_wanted}; got {type(checkpoint_memory).__name__}.')
    if not checkpoint_memory >= 0:
        raise ValueError(f'{memory_wanted}; got {checkpoint_memory!r}.')
    if info is not None and not isinstance(info, dict):
        raise TypeError(
            f'info must be a dict (filled in with what the solve cost) or None; '
            f'got {type(info).__name__}.'
        )
    dim_wanted = 'batch_dim must be 0 (samples along the first dimension) or None'
    if batch_dim is not None and (isinstance(batch_dim, bool) or not isinstance(batch_dim, int)):
        raise TypeError(f'{dim_wanted}; got {type(batch_dim).__name__}.')
    if batch_dim not in (0, None):
        raise ValueError(f'{dim_wanted}; got {batch_dim!r}.')
    if info is not None:
        info.clear()  # what this call cost, nothing of an earlier call's
    if batch_dim is None and backward == 'propagator':
        backward = 'restart'
    options = checks.check_options('options', options)
    if adjoint_options is None:
        adjoint_options = {key: value for key, value in options.items() if key != 'norm'}
    else:
        adjoint_options = checks.check_options('adjoint_options', adjoint_options)

    layout = StateLayout(parts, is_tuple)
    custom_adjoint_norm = callable(adjoint_options.get('norm'))
    adjoint_options['norm'] = backward_norm(
        options.get('norm'), adjoint_options.get('norm'), layout
    )
    settings = Settings(
        func=func,
        field=FlatField(func, layout),
        layout=layout,
        rtol=rtol,
        atol=atol,
        gtol=gtol,
        method=method,
        options=options,
        event_fn=event_fn,
        adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol,
        adjoint_method=adjoint_method,
        adjoint_options=adjoint_options,
        backward=backward,
        custom_adjoint_norm=custom_adjoint_norm,
        checkpoint_memory=checkpoint_memory,
        info=info,
        call_site=call_site(),
        per_sample=batch_dim is not None,
        expects_backward=torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in (t, *parts, *params)),
    )
    if settings.expects_backward:
        settings.plan = PLANNER.plan(*_plan_key(settings, t, parts[0]), site=settings.call_site)
    outputs = _GaussQuadratureAdjoint.apply(settings, t, *parts, *params)
    if event_fn is not None:
        event_t, outputs = outputs[0], outputs[1:]
    solution = tuple(outputs) if is_tuple else outputs[0]
    return solution if event_fn is None else (event_t, solution)


def _plan_key(
    settings: Settings, t: torch.Tensor, like: torch.Tensor
) -> tuple[tuple[Any, ...], str]:
    """What a call site's plan is kept by (the call site and every setting that changes
    which pass is fastest), and a short description of it.

    Sizes enter rounded up to a power of two (the leading dimension of each part of the
    state, the number of output times): a training loop whose batches or series vary in
    length (the last, smaller batch; irregular time series) keeps a few plans, not one
    per length, each of which would explore anew.
    """
    layout = settings.layout
    description = (
        f'state {sum(layout.numels)} {str(like.dtype).replace("torch.", "")} {like.device}, '
        f'{settings.method}, rtol {_short(settings.rtol)}, atol {_short(settings.atol)}, '
        f'{len(t)} times (a plan for {_span(len(t))} times and leading sizes in the same '
        'power of two)'
    )
    key = (
        settings.call_site,
        tuple(
            (_bucket(shape[0]), tuple(shape[1:])) if len(shape) else () for shape in layout.shapes
        ),
        like.dtype,
        like.device,
        settings.method,
        settings.adjoint_method,
        _hashable(settings.rtol),
        _hashable(settings.atol),
        settings.gtol,
        _bucket(len(t)),
        settings.event_fn is not None,
        settings.backward,
        settings.checkpoint_memory,
    )
    return key, description


def _bucket(size: int) -> int:
    """``size`` rounded up to a power of two (1 stays 1)."""
    return 1 << max(size - 1, 0).bit_length()


def _span(size: int) -> str:
    """The sizes that share ``size``'s bucket (:func:`_bucket`), as text."""
    high = _bucket(size)
    low = high // 2 + 1 if high > 2 else high
    return str(high) if low == high else f'{low}-{high}'


def _hashable(value: Any) -> Any:
    if torch.is_tensor(value):
        return ('tensor', tuple(value.shape), float(value.detach().double().sum()))
    if isinstance(value, (tuple, list)):
        return tuple(_hashable(entry) for entry in value)
    return float(value)


def _short(value: Any) -> str:
    return f'{value:g}' if isinstance(value, numbers.Real) else type(value).__name__
