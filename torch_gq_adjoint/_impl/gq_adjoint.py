"""The GQ adjoint: one autograd Function whose forward and backward read top to bottom.

Forward: :func:`torchdiffeq.odeint` itself, on the user's ``func`` and state structure,
without a graph; only the evaluations (NFE) are counted.
Backward, interval by interval from the last: solve ``[z, a]`` backwards, read them at
Gauss–Legendre nodes (off the solver's dense output, or a cubic Hermite interpolant of
a fixed grid), restart ``z`` from the stored forward solution and add the loss gradient
to ``a``. The parameter integral is then one batched quadrature over every interval's
nodes; the time gradients follow in closed form from ``f`` at the output times.
"""

import numbers
from dataclasses import dataclass

import torch
import torchdiffeq
from torch.autograd.function import once_differentiable
from torch.func import vmap

from . import checks
from .backward_options import (
    backward_norm,
    backward_options,
    flat_state_norm,
    flat_tolerance,
)
from .checkpoint import (
    DEFAULT_CHECKPOINT_MEMORY,
    CheckpointBackward,
    ForwardTape,
    checkpoint_problem,
)
from .choice import prefers_checkpoint, tight_enough
from .dynamics import AdjointDynamics, CountedField
from .error_control import ControlledQuadrature, Interval, Rule
from .interpolation import hermite
from .notices import call_site, warn_once
from .parameter_integral import NodeEvaluator, ParameterIntegral
from .propagator import (
    SampleLayout,
    cheaper_than_restart,
    fall_back,
    mixes_samples,
    propagator_intervals,
    propagator_tolerance,
)
from .quadrature import (
    FIRST_GTOL,
    candidate_counts,
    gauss_legendre,
    grid_node_count,
    node_count,
)
from .state import FlatField, StateLayout


@dataclass
class _Settings:
    """Everything the Function needs besides tensors (checked by the public function)."""

    func: object
    field: FlatField
    layout: StateLayout
    rtol: object
    atol: object
    gtol: object
    method: str
    options: dict
    event_fn: object
    adjoint_rtol: object
    adjoint_atol: object
    adjoint_method: str
    adjoint_options: dict
    backward: str
    custom_adjoint_norm: bool
    checkpoint_memory: int
    info: object
    call_site: tuple
    per_sample: bool


#: The values of ``backward``.
BACKWARDS = ('auto', 'restart', 'propagator', 'checkpoint')


class _GaussQuadratureAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, settings, t, *inputs):
        layout = settings.layout
        parts, params = inputs[:len(layout.shapes)], inputs[len(layout.shapes):]
        y0 = tuple(parts) if layout.is_tuple else parts[0]
        adaptive = settings.method in checks.ADAPTIVE_METHODS
        tape = None
        if (settings.backward in ('auto', 'checkpoint')
                and checkpoint_problem(settings.method, settings.event_fn is not None) is None):
            reversed_time = len(t) > 1 and bool(t[0] > t[1])
            tape = ForwardTape(adaptive, reversed_time, settings.checkpoint_memory)
        counted = CountedField(settings.func, adaptive, tape)
        with torch.no_grad():
            result = torchdiffeq.odeint(counted, y0, t, rtol=settings.rtol, atol=settings.atol,
                                        method=settings.method, options=settings.options,
                                        event_fn=settings.event_fn)
        event_t = None
        if settings.event_fn is not None:
            event_t, result = result
        solution = tuple(result) if layout.is_tuple else (result,)
        ctx.settings = settings
        ctx.forward_nfe = counted.nfe
        ctx.forward_step = counted.last_step
        ctx.tape = tape
        _report(settings.info, forward_nfe=counted.nfe,
                checkpoint_bytes=0 if tape is None else tape.nbytes,
                checkpoint_steps=0 if tape is None else len(tape.starts))
        ctx.save_for_backward(t, *((event_t,) if event_t is not None else ()), *solution,
                              *params)
        if event_t is None:
            return solution
        # torchdiffeq's own adjoint does not differentiate the event time either; the
        # gradient through it comes from torchdiffeq.odeint_event (see the docstring).
        ctx.mark_non_differentiable(event_t)
        return (event_t, *solution)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        settings = ctx.settings
        layout = settings.layout
        event_mode = settings.event_fn is not None
        saved = ctx.saved_tensors
        t, saved = saved[0], saved[1:]
        if event_mode:
            event_t, saved = saved[0], saved[1:]
            grad_outputs = grad_outputs[1:]
        parts = len(layout.shapes)
        solution_parts, params = saved[:parts], saved[parts:]
        solution = layout.flatten_series(tuple(solution_parts) if layout.is_tuple
                                         else solution_parts[0])
        grads = [torch.zeros_like(part) if grad is None else grad
                 for part, grad in zip(solution_parts, grad_outputs)]
        grad_solution = layout.flatten_series(tuple(grads) if layout.is_tuple else grads[0])
        times = t.detach()
        if event_mode:
            times = torch.cat([times[:1], event_t.detach().reshape(1).to(times)])

        adjoint, grad_times, param_grads = _backward_pass(
            settings, t.detach(), times, solution, grad_solution, tuple(params), ctx,
            need_time_grads=ctx.needs_input_grad[1])
        if grad_times is not None and event_mode:
            # Only t[0] reaches the solution in event mode, as in torchdiffeq.
            grad_times = torch.cat([grad_times[:1], torch.zeros_like(t[1:])])
        grad_y0 = layout.unflatten(adjoint)
        grad_y0 = grad_y0 if layout.is_tuple else (grad_y0,)
        return (None, grad_times, *grad_y0, *param_grads)


def _backward_pass(settings, t, times, solution, grad_solution, params, ctx, need_time_grads):
    """The whole backward pass on flat states: ``(dL/dy0, dL/dt or None, dL/dθ)``."""
    field = settings.field
    fields = _FieldValues(field, times, solution)
    choice = _choose_backward(settings, ctx.tape, ctx.forward_nfe, times, solution)
    if choice == 'checkpoint':
        backward = CheckpointBackward(settings, ctx.tape, t, times, solution[0], params)
        adjoint, adjoint_after_start, param_grads = backward(grad_solution)
        _report(settings.info, backward='checkpoint', backward_nfe=backward.nfe, nodes=0)
    else:
        adjoint, adjoint_after_start, param_grads = _quadrature_backward(
            settings, times, solution, grad_solution, params, ctx, fields)
    _check_finite(adjoint, 'the gradient of y0')
    for number, grad in enumerate(param_grads):
        _check_finite(grad, f'the gradient of parameter {number}')

    grad_times = None
    if need_time_grads:
        with torch.no_grad():
            derivatives = fields()
            grad_times = (grad_solution * derivatives).sum(dim=-1)
            grad_times[0] = -(adjoint_after_start * derivatives[0]).sum()
        grad_times = grad_times.to(times.dtype)
    return adjoint, grad_times, param_grads


def _quadrature_backward(settings, times, solution, grad_solution, params, ctx, fields):
    """Restart or propagator: ``(dL/dy0, a(t_0⁺), dL/dθ)``."""
    size = solution.shape[-1]
    evaluator = NodeEvaluator(settings.field, params, size, call_site=settings.call_site)
    controlled = settings.gtol is None and settings.adjoint_method not in checks.GRID_METHODS
    sweep = _Sweep(settings, times, solution, ctx.forward_nfe, ctx.forward_step, controlled)
    integral = None if controlled else ParameterIntegral(evaluator)

    use_propagator = _use_propagator(settings, sweep, solution, ctx.forward_nfe)
    if use_propagator:
        found, _ = propagator_intervals(sweep, grad_solution)
    else:
        found = _restart_intervals(sweep, grad_solution)
    # a(t_0^+): the adjoint arriving at t_0 from later times (none if t has one entry).
    adjoint_after_start = torch.zeros_like(grad_solution[-1])
    intervals = []
    for interval in found:
        if integral is not None:
            rule = interval.rules[0]
            integral.add(rule.times, rule.weights, rule.states, rule.adjoints)
        elif params:
            intervals.append(interval)
        adjoint_after_start = interval.adjoint_end
    adjoint = adjoint_after_start + grad_solution[0]

    if integral is not None:
        param_grads = integral.result()
    else:
        param_grads = ControlledQuadrature(evaluator, *sweep.tolerances, fields).integrate(
            intervals)
    _report(settings.info, backward='propagator' if use_propagator else 'restart',
            backward_nfe=sweep.dynamics.nfe + (0 if sweep.propagator_dynamics is None
                                               else sweep.propagator_dynamics.nfe),
            nodes=evaluator.nodes)
    return adjoint, adjoint_after_start, param_grads


def _choose_backward(settings, tape, forward_nfe, times, solution):
    """``'checkpoint'`` or ``'quadrature'`` (restart or propagator, chosen later)."""
    if settings.backward in ('restart', 'propagator'):
        return 'quadrature'
    reason = checkpoint_problem(settings.method, settings.event_fn is not None)
    if reason is None and (tape is None or tape.overflow):
        reason = (f'the recorded steps passed checkpoint_memory={settings.checkpoint_memory} '
                  'bytes')
    if settings.backward == 'checkpoint':
        if reason is None:
            return 'checkpoint'
        warn_once(f"odeint_adjoint_gq: backward='checkpoint' cannot be used ({reason}); "
                  "using backward='restart'.", settings.call_site)
        return 'quadrature'
    if reason is not None or not tight_enough(settings.rtol):
        return 'quadrature'
    steps = tape.step_evaluations if tape.adaptive else forward_nfe
    controlled = settings.gtol is None
    rule = (forward_nfe, steps, len(times) - 1, controlled)
    if prefers_checkpoint(*rule, vectorised=True):
        return 'checkpoint'
    if not prefers_checkpoint(*rule, vectorised=False):
        return 'quadrature'
    return 'checkpoint' if not _vectorisable(settings.field, times, solution) else 'quadrature'


def _vectorisable(field, times, solution):
    """Whether ``vmap`` batches ``field`` over quadrature nodes (one evaluation)."""
    with torch.enable_grad():
        try:
            vmap(field)(times[-1:], solution[-1:].detach().requires_grad_(True))
        except RuntimeError:
            return False
    return True


def _report(info, **values):
    """Write what the solve cost into the user's ``info`` dict (if one was given)."""
    if info is not None:
        info.update(values)


def _restart_intervals(sweep, grad_solution):
    """The paper's backward pass: one ``[z, a]`` solve per interval, from the last."""
    adjoint = grad_solution[-1]
    for index in range(len(sweep.time_values) - 1, 0, -1):
        interval = sweep.solve(index, adjoint)
        yield interval
        adjoint = interval.adjoint_end + grad_solution[index - 1]


def _use_propagator(settings, sweep, solution, forward_nfe):
    """Whether this backward pass uses the propagator (see ``backward`` in the docstring)."""
    if (settings.backward in ('restart', 'checkpoint') or not settings.per_sample
            or len(sweep.time_values) < 3):
        return False
    explicit = settings.backward == 'propagator'
    reason, mixing = None, False
    if sweep.grid:
        reason = 'fixed-grid methods step the same either way'
    elif settings.custom_adjoint_norm:
        reason = 'a callable adjoint norm expects the restart method\'s state'
    elif sweep.samples is None:
        reason = sweep.samples_problem
    elif not explicit and not cheaper_than_restart(sweep.samples, forward_nfe,
                                                   len(sweep.time_values) - 1):
        return False  # the cost model restarts; no need to probe the function
    elif mixes_samples(settings.field, sweep.times[-1], solution[-1], sweep.samples):
        reason, mixing = ('func mixes the samples of the batch (a cotangent on sample 0 '
                          'reached other samples), so the adjoint is not per sample'), True
    if reason is not None:
        # Under 'auto', a function that mixes the samples of a batch (a state with a batch
        # dimension and per-sample features) is worth a warning: the propagator was about
        # to be used. A 1-D state is as likely one coupled trajectory as a batch of scalars:
        # restarting is simply right there.
        if explicit or (mixing and sweep.samples.batched):
            fall_back(reason, settings.call_site)
        return False
    return True


class _FieldValues:
    """``f(t_i, z_i)`` at every output time, ``(T, n)``, computed once on first use.

    They give the time gradients in closed form (``dL/dt_i = g_i · f(t_i, z_i)`` for
    i ≥ 1, ``dL/dt_0 = -a(t_0⁺) · f(t_0, z_0)``: the solution moves with t_0 only through
    the start of the flow, so the loss gradient at t_0 itself does not count) and the
    reference of the error-controlled quadrature's time check.
    """

    def __init__(self, field, times, solution):
        self.field, self.times, self.solution = field, times, solution
        self.values = None

    def __call__(self):
        if self.values is None:
            with torch.no_grad():
                try:
                    self.values = vmap(self.field)(self.times, self.solution)
                except RuntimeError:  # func cannot be vectorised: one call per time
                    self.values = torch.stack([self.field(time, state) for time, state
                                               in zip(self.times, self.solution)])
        return self.values


class _Sweep:
    """Backward solves of ``[z, a]``, one interval at a time, and their quadrature nodes."""

    def __init__(self, settings, times, solution, forward_nfe, forward_step, controlled):
        self.settings = settings
        self.times = times
        self.solution = solution
        self.size = solution.shape[-1]
        self.forward_nfe = forward_nfe
        self.controlled = controlled
        method = settings.adjoint_method
        self.grid = method in checks.GRID_METHODS
        self.adaptive = method in checks.ADAPTIVE_METHODS
        # One host transfer for all times: node counts and positions are host-side.
        self.time_values = times.tolist()
        self.total_length = self.time_values[-1] - self.time_values[0]
        # The backward solves run against t's direction; the solver's own time
        # s = direction·t increases (see AdjointDynamics).
        self.direction = -1.0 if self.total_length > 0 else 1.0
        self.carry = self.adaptive and settings.gtol is not None
        self.dynamics = AdjointDynamics(settings.field, self.size, self.direction,
                                        record_steps=self.carry, record_grid=self.grid)
        self.options = backward_options(settings.adjoint_options, self.direction)
        # The paper's rule (a number gtol) favours speed: a step chosen by the user wins for
        # the first interval; after that, and when the user chose none, each solve starts
        # with the last accepted step of the previous one. The default mode starts every
        # solve as torchdiffeq's adjoint does (its own initial step selection, or the
        # user's first_step): carried steps are as large as the error estimate allows,
        # and on coarse tolerances that costs accuracy the adjoint has.
        self.step = self.options.get('first_step', forward_step) if self.carry else None
        jumps = settings.adjoint_options.get('jump_t')
        self.jumps = [] if jumps is None else torch.as_tensor(jumps).reshape(-1).tolist()
        self.tolerances = tuple(flat_tolerance(value, settings.layout, solution)
                                for value in (settings.adjoint_rtol, settings.adjoint_atol))
        part_norm = flat_state_norm(settings.options.get('norm'), settings.layout)
        size = self.size

        def propagator_norm(state):
            # As the default backward norm: the forward norm of z, RMS of the rest.
            return torch.maximum(torch.as_tensor(part_norm(state[:size])),
                                 state[size:].pow(2).mean().sqrt())
        self.propagator_norm = propagator_norm
        self.propagator_dynamics = None
        self.samples, self.samples_problem = None, None
        if settings.backward != 'restart':
            try:
                self.samples = SampleLayout(settings.layout)
            except ValueError as error:
                self.samples_problem = str(error)

    def rules_of(self, index):
        """The candidate rules of interval ``[t_{index-1}, t_index]`` (dense methods)."""
        return self._rules(self.time_values[index], self.time_values[index - 1], self._counts)

    def odeint(self, dynamics, start_state, solve_times, index):
        """One backward solve of ``dynamics`` (see :meth:`_odeint`)."""
        return self._odeint(start_state, solve_times, index, dynamics)

    def interval(self, index, rules, adjoint_start, adjoint_end, state_end):
        """The :class:`Interval` ``[t_{index-1}, t_index]`` of a backward solve's results."""
        end, start = self.time_values[index], self.time_values[index - 1]
        # Across a jump of f, a·f jumps too: the time check's reference does not hold.
        smooth = not any(min(start, end) < value < max(start, end) for value in self.jumps)
        return Interval(index, rules, adjoint_start, adjoint_end, self.solution[index],
                        state_end, abs(end - start), time_check=smooth)

    def solve(self, index, adjoint):
        """Solve ``[t_{index-1}, t_index]`` backwards from ``a(t_index⁻) = adjoint``."""
        end, start = self.time_values[index], self.time_values[index - 1]
        endpoints = self.times[[index, index - 1]]
        start_state = torch.cat([self.solution[index], adjoint])
        if self.grid:
            return self._solve_grid(index, end, start, endpoints, start_state, adjoint)
        rules = self._rules(end, start, self._counts)
        # Every candidate node in one solve, as increasing solver times. On a very short
        # interval a node can round onto an end point (float32): unique() merges them.
        node_times = torch.cat([endpoints[:1]] + [nodes for nodes, _ in rules]
                               + [endpoints[1:]])
        solve_times, position = torch.unique(self.direction * node_times, sorted=True,
                                             return_inverse=True)
        path = self._odeint(start_state, solve_times, index)[position]
        inner = path[1:-1]
        result, offset = [], 0
        for nodes, weights in rules:
            at = inner[offset:offset + len(nodes)]
            offset += len(nodes)
            result.append(Rule(nodes, weights, at[:, :self.size], at[:, self.size:]))
        return self._interval(index, result, adjoint, path)

    def _solve_grid(self, index, end, start, endpoints, start_state, adjoint):
        dynamics = self.dynamics
        dynamics.start_interval()
        solve_times = self.direction * endpoints
        path = self._odeint(start_state, solve_times, index)
        if not dynamics.grid:
            raise RuntimeError('odeint_adjoint_gq: no grid was recorded in the backward solve '
                               f'of {self.settings.adjoint_method}; the torchdiffeq version '
                               'differs from the pinned one (see requirements.txt).')
        grid_s = torch.stack([item[0].to(solve_times.dtype) for item in dynamics.grid]
                             + [solve_times[-1]])
        grid_y = torch.stack([item[1] for item in dynamics.grid] + [path[-1]])
        final_slope = dynamics(solve_times[-1], path[-1])
        grid_f = torch.stack([item[2] for item in dynamics.grid] + [final_slope])
        if self.settings.gtol is None:
            steps = len(dynamics.grid)

            def counts(length):
                share = round(steps * abs(length / (end - start)))
                return [grid_node_count(self.settings.adjoint_method, share)]
        else:
            counts = self._counts
        ((nodes, weights),) = self._rules(end, start, counts)
        at = hermite(grid_s, grid_y, grid_f, self.direction * nodes)
        rule = Rule(nodes, weights, at[:, :self.size], at[:, self.size:])
        return self._interval(index, [rule], adjoint, path)

    def _interval(self, index, rules, adjoint, path):
        return self.interval(index, rules, adjoint, path[-1, self.size:], path[-1, :self.size])

    def _counts(self, length):
        """Node counts to try on a piece of length ``length`` (adaptive and scipy methods)."""
        if self.controlled:
            return candidate_counts(node_count(FIRST_GTOL, self.forward_nfe, length,
                                               self.total_length))
        return [node_count(self.settings.gtol, self.forward_nfe, length, self.total_length)]

    def _rules(self, end, start, counts):
        """Gauss–Legendre rules on ``[start, end]``, composite across ``jump_t``.

        A discontinuity of ``f`` inside an interval would ruin a Gauss rule's accuracy;
        the pieces between the jump times get a rule each. ``counts(length)`` gives the
        node counts of a piece, one per candidate rule. Returns ``[(nodes, weights)]``,
        one pair per candidate, nodes running from ``end`` to ``start``.
        """
        low, high = min(start, end), max(start, end)
        inner = sorted(value for value in self.jumps if low < value < high)
        bounds = [end] + (inner[::-1] if end > start else inner) + [start]
        pieces = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        per_piece = [counts(piece_end - piece_start) for piece_end, piece_start in pieces]
        rules = []
        for level in range(max(len(candidates) for candidates in per_piece)):
            nodes, weights = [], []
            for (piece_end, piece_start), candidates in zip(pieces, per_piece):
                count = candidates[min(level, len(candidates) - 1)]
                piece_nodes, piece_weights = gauss_legendre(piece_end, piece_start, count,
                                                            self.times.dtype, self.times.device)
                nodes.append(piece_nodes)
                # Nodes run backwards from `end`; the integral itself runs forwards in time.
                weights.append(-piece_weights)
            rules.append((torch.cat(nodes), torch.cat(weights)))
        return rules

    def _odeint(self, start_state, solve_times, index, dynamics=None):
        """One backward solve; a non-finite state becomes a clear error."""
        dynamics = self.dynamics if dynamics is None else dynamics
        options = self.options
        if self.step is not None:
            options = dict(options, first_step=self.step)
        settings = self.settings
        rtol, atol = settings.adjoint_rtol, settings.adjoint_atol
        if dynamics is not self.dynamics:
            options = dict(options, norm=self.propagator_norm)
            if self.controlled:
                # Error-controlled mode aims at accuracy: the one long solve is tightened
                # (see propagator_tolerance). The paper's rule favours speed, as it does
                # by carrying steps: the solve runs at the adjoint tolerances.
                rtol, atol = (propagator_tolerance(value, start_state.dtype)
                              for value in (rtol, atol))
        try:
            path = torchdiffeq.odeint(dynamics, start_state, solve_times, rtol=rtol, atol=atol,
                                      method=settings.adjoint_method, options=options)
        except AssertionError as error:
            if 'non-finite' in str(error) or 'underflow' in str(error):
                raise FloatingPointError(
                    f'odeint_adjoint_gq: the backward solve over [t[{index - 1}], t[{index}]] '
                    f'failed with non-finite or vanishing values ({error}). Check func for '
                    'overflow, or lower rtol/atol.') from error
            raise
        if self.carry and self.dynamics.last_step is not None:
            self.step = self.dynamics.last_step
        return path


def _check_finite(tensor, what):
    if not torch.isfinite(tensor).all():
        raise FloatingPointError(f'odeint_adjoint_gq: non-finite values met in the backward pass '
                                 f'({what} holds NaN or inf).')


def odeint_adjoint_gq(func, y0, t, *, rtol=1e-7, atol=1e-9, gtol=None, method=None,
                      options=None, event_fn=None, adjoint_rtol=None, adjoint_atol=None,
                      adjoint_method=None, adjoint_options=None, adjoint_params=None,
                      backward='auto', batch_dim=0, checkpoint_memory=DEFAULT_CHECKPOINT_MEMORY,
                      info=None):
    """Solve ``dy/dt = func(t, y)`` like :func:`torchdiffeq.odeint`; gradients by the GQ adjoint.

    The forward pass is :func:`torchdiffeq.odeint` itself without a graph (memory
    O(state)): same steps, same values. The backward pass solves only the state and its
    adjoint ``[z, a]`` backwards and computes the parameter gradient ``∫ aᵀ ∂f/∂θ dt``
    with Gauss–Legendre quadrature on each interval ``[t[i-1], t[i]]``.

    Same signature as :func:`torchdiffeq.odeint_adjoint` plus ``gtol``, so switching is
    a rename.

    Args:
        func: callable ``func(t, y)`` returning ``dy/dt`` with ``y``'s structure. An
            ``nn.Module`` unless ``adjoint_params`` is given. No ``nfe`` attribute needed.
            Its ``callback_step``, ``callback_accept_step``, ``callback_reject_step`` are
            called in the forward solve and their ``*_adjoint`` versions in the backward
            solves, as torchdiffeq's adjoint calls them (with ``(t, (t_placeholder, z, a),
            dt)``, flat ``z`` and ``a``, no parameter entries).
        y0: floating point tensor of any shape (0-dim included), or a tuple of such
            tensors (same dtype and device), the state at ``t[0]``; finite.
        t: 1-D floating point tensor of output times, strictly increasing or strictly
            decreasing, on ``y0``'s device. Its entries may require grad.
        rtol, atol: tolerances of the forward solve (defaults 1e-7, 1e-9 as torchdiffeq):
            finite and non-negative numbers or tensors; ``atol`` positive for methods with
            step-size control.
        gtol: how the quadrature nodes are chosen.

            - None (default): error-controlled. For solvers with step-size control, each
              interval's rule is checked on two integrals the backward solve knows
              exactly, ``∫ aᵀ∂f/∂z dt = Δa`` and ``∫ aᵀ∂f/∂t dt = Δ(aᵀf)``, which come out
              of the same backward pass as the parameter integrand; a rule passes when
              both hold to ``adjoint_rtol``/``adjoint_atol``, or when it agrees with the
              previous rule to that tolerance. Rules start at the paper's with ``C = 0.1``
              and double (at most 4 rules, 64 nodes). For fixed-grid methods: 1 node per
              grid step (euler, midpoint, heun2) or 2 (heun3, rk4, the Adams methods), at
              most 64 per interval.
            - a positive number ``C``: the paper's rule, ``min(ceil(C · NFE · |t[i] −
              t[i−1]| / |t[-1] − t[0]|), 64)`` nodes (at least one), NFE the forward
              solve's evaluations. Larger gives more nodes; it is not a tolerance.
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
            each; docs/benchmarks.md measures them on common workloads).

            - ``'auto'`` (default): a deterministic rule on counted evaluations (never on
              timings; the same call always takes the same path). The checkpoint where
              the forward solve is tight (``rtol`` ≤ 1e-5), its steps fit in
              ``checkpoint_memory`` and it is expected to cost under half the restart
              method (many output times, or a ``func`` that ``vmap`` cannot batch, such
              as a CNF taking ``torch.autograd.grad`` inside); else the propagator where
              it is valid and cheaper (``(1 + d) · NFE < 2 · max(NFE, 7 · intervals)``);
              else ``'restart'``.
            - ``'restart'``: the paper's, one ``[z, a]`` solve per interval, restarted at
              every observation time (at least one full solver step each), the parameter
              gradient by Gauss–Legendre quadrature.
            - ``'propagator'``: one backward solve of ``z`` and the per-sample
              propagator ``Ψ`` (a d × d matrix per sample, d the per-sample state size)
              over the whole horizon, ``a`` in closed form at the nodes. Needs ``func``
              to treat the samples along ``batch_dim`` independently: that is checked,
              and a function that mixes samples gets ``'restart'`` with a warning, as do
              fixed-grid methods and callable adjoint norms.
            - ``'checkpoint'``: discretise-then-optimise. The state at each accepted
              forward step is kept (memory O(steps × state)); the backward pass
              recomputes one step at a time with torchdiffeq's own step function and
              backpropagates through it. The gradient is that of the forward
              discretisation with the step sizes held fixed: direct backpropagation's,
              less the derivative of the step-size controller. Covers the adaptive
              Runge–Kutta methods and euler, midpoint, heun2, heun3, rk4; the Adams
              methods, scipy_solver, fixed-grid event handling and a tape past
              ``checkpoint_memory`` get ``'restart'`` with a warning. ``adjoint_*``
              arguments and the ``*_adjoint`` callbacks are not used by it.

            Fall-back warnings are shown once per call site and process.
        batch_dim: 0 (default): the samples are along the first dimension of ``y0`` (of
            every part of a tuple ``y0``); None: no per-sample structure (no propagator).
        checkpoint_memory: bytes the checkpoint's record of the forward steps may hold
            (default 2**28, 256 MiB). Under ``'auto'`` a solve whose steps pass it uses
            the quadrature passes (memory O(state)); 0 rules the checkpoint out.
        info: optional dict, filled in with what the solve cost: ``forward_nfe``,
            ``checkpoint_steps`` and ``checkpoint_bytes`` after the forward pass;
            ``backward`` (``'restart'``, ``'propagator'`` or ``'checkpoint'``, the pass
            that ran), ``backward_nfe`` and ``nodes`` (quadrature nodes evaluated) after
            the backward pass.

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
    checks.check_times(t, parts[0].device)
    checks.check_event_fn(event_fn, t)
    gtol = checks.check_gtol(gtol)
    checks.check_method('method', method)
    checks.check_method('adjoint_method', adjoint_method)
    method = method or 'dopri5'
    if adjoint_method is None:
        adjoint_method = method
    elif adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError('adjoint_options must be given when adjoint_method differs from method '
                         'and options are given: options of one method need not suit another.')
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    for name, value, used_by in (('rtol', rtol, method), ('atol', atol, method),
                                 ('adjoint_rtol', adjoint_rtol, adjoint_method),
                                 ('adjoint_atol', adjoint_atol, adjoint_method)):
        checks.check_tolerance(name, value, used_by)
    checks.check_finite_state(parts, is_tuple)
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(map(repr, BACKWARDS))}; "
                         f'got {backward!r}.')
    if (isinstance(checkpoint_memory, bool) or not isinstance(checkpoint_memory, numbers.Real)
            or not checkpoint_memory >= 0):
        raise ValueError('checkpoint_memory must be a non-negative number of bytes (e.g. '
                         f'2**28); got {checkpoint_memory!r}.')
    if info is not None and not isinstance(info, dict):
        raise TypeError(f'info must be a dict (filled in with what the solve cost) or None; '
                        f'got {type(info).__name__}.')
    if batch_dim not in (0, None) or isinstance(batch_dim, bool):
        raise ValueError(f'batch_dim must be 0 (samples along the first dimension) or None; '
                         f'got {batch_dim!r}.')
    if batch_dim is None and backward == 'propagator':
        backward = 'restart'
    options = checks.check_options('options', options)
    if adjoint_options is None:
        adjoint_options = {key: value for key, value in options.items() if key != 'norm'}
    else:
        adjoint_options = checks.check_options('adjoint_options', adjoint_options)

    layout = StateLayout(parts, is_tuple)
    custom_adjoint_norm = callable(adjoint_options.get('norm'))
    adjoint_options['norm'] = backward_norm(options.get('norm'), adjoint_options.get('norm'),
                                            layout)
    settings = _Settings(
        func=func, field=FlatField(func, layout), layout=layout, rtol=rtol, atol=atol,
        gtol=gtol, method=method, options=options, event_fn=event_fn,
        adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
        adjoint_options=adjoint_options, backward=backward,
        custom_adjoint_norm=custom_adjoint_norm, checkpoint_memory=checkpoint_memory,
        info=info, call_site=call_site(), per_sample=batch_dim is not None)
    outputs = _GaussQuadratureAdjoint.apply(settings, t, *parts, *params)
    if event_fn is not None:
        event_t, outputs = outputs[0], outputs[1:]
    solution = tuple(outputs) if is_tuple else outputs[0]
    return solution if event_fn is None else (event_t, solution)
