"""The interpolating backward pass: the adjoint alone, the state read off the forward's steps.

The restart method solves ``[z, a]`` backwards and restarts at every output time; the
state ``z`` is solved again although the forward pass already computed it. Here the
forward pass keeps its accepted steps and their stage derivatives
(:class:`~.checkpoint.ForwardTape` with ``keep_stages``), and :class:`DenseForward`
rebuilds the solver's own dense output from them: ``z(t)`` anywhere in the horizon, the
very polynomial :func:`torchdiffeq.odeint` interpolated its outputs with, at no
evaluation of ``f``.

The backward pass then solves the adjoint alone (``n`` numbers, not ``2n``), once over the
whole horizon, with no restart. The loss gradient ``g_k`` at each output time makes ``a``
jump; the solve carries the continuous ``b = a - G(s)`` instead, where ``G`` is the sum of
the jumps passed so far (``s = direction · t``, the backward solve's increasing time):

    db/ds = -direction · (∂f/∂z)ᵀ (b + G(s)),

whose right-hand side jumps where ``G`` does. Those times are handed to the solver as
``jump_t``: it ends a step exactly there and evaluates the far side afresh, but keeps its
step size (a restart would select one anew). Output times whose loss gradient is zero
are not jumps at all. ``a`` at the output times and the quadrature nodes is ``b + G``,
read off the one solve's dense output, and the parameter integral is the same
Gauss–Legendre quadrature (paper's rule or error-controlled) as the restart method's.
Where ``vmap`` cannot batch ``func`` under the error-controlled rule, the integral rides
along with the solve instead (``[b, ∫ aᵀ ∂f/∂θ]``, started cold). At tight tolerances the
dense output is first refined by one Picard step (:meth:`DenseForward.refine`).

The gradient is the continuous adjoint's, as the restart method's: its error follows the
backward solve's tolerance, not the forward discretisation's (unlike the checkpoint).
Memory: the tape, O(steps × stages × state), within ``checkpoint_memory``.

What this relies on in torchdiffeq (private, pinned in requirements.txt and checked by
``tests/library/test_torchdiffeq_contract.py``): the solver classes' ``mid`` and
``tableau.c_sol`` and ``torchdiffeq._impl.interp._interp_fit``.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import torch
from torch.func import vmap
from torchdiffeq._impl.interp import _interp_fit
from torchdiffeq._impl.odeint import SOLVERS

from .backward_options import above_rounding, flat_state_norm
from .backward_solves import BackwardSolves, integrate_intervals
from .checkpoint import ForwardTape, tape_problem
from .checks import ADAPTIVE_METHODS, tight_enough
from .dynamics import CALLBACKS, StepRecorder
from .error_control import Interval, Rule
from .record import BackwardResult, ForwardRecord
from .state import FlatField, StateLayout

if TYPE_CHECKING:
    from .gq_adjoint import Settings


class DenseForward:
    """The forward solve's dense output, rebuilt from its recorded steps.

    Args:
        tape: :class:`~.checkpoint.ForwardTape` recorded with ``keep_stages``.
        layout: :class:`~.state.StateLayout` of the state.
        method: the forward method (its tableau's ``mid`` and ``c_sol``).

    The forward solver's time is ``u = t`` (``-t`` when ``t`` decreases); the pieces are
    fitted all at once: :attr:`coefficients` ``(degree + 1, S, n)`` for ``S`` steps, in
    powers of the fraction of the step, lowest first.
    """

    def __init__(self, tape: ForwardTape, layout: StateLayout, method: str) -> None:
        sign = -1.0 if tape.reversed_time else 1.0
        flat = layout.flatten
        solver = SOLVERS[method]
        starts = tape.starts
        y0 = torch.stack([flat(start[1]) for start in starts])
        dtype, device = y0.dtype, y0.device
        firsts = [tape.first_derivative] + tape.ends[:-1]
        # Stage derivatives in the solver's frame: k_0 (the step's first derivative,
        # after a jump_t the one on its far side) and each stage's output.
        k = torch.stack(
            [
                torch.stack([flat(first)] + [flat(stage) for stage in stages], dim=-1)
                for first, stages in zip(firsts, tape.stages)
            ]
        )
        if sign < 0:
            k = -k
        steps = torch.stack([start[2] for start in starts]).to(torch.float64)
        dt = steps.to(dtype).reshape(-1, 1)
        mid = solver.mid.to(dtype=dtype, device=device)
        c_sol = solver.tableau.c_sol.to(dtype=dtype, device=device)
        y_mid = y0 + (k * (dt.unsqueeze(-1) * mid)).sum(-1)
        y_last = y0[-1] + (k[-1] * (dt[-1] * c_sol)).sum(-1)
        y1 = torch.cat([y0[1:], y_last.unsqueeze(0)])
        self.coefficients = torch.stack(_interp_fit(y0, y1, y_mid, k[..., 0], k[..., -1], dt))
        begins = torch.tensor(
            [sign * float(start[0]) for start in starts], dtype=torch.float64, device=device
        )
        ends = torch.cat([begins[1:], (begins[-1] + steps[-1].to(device)).reshape(1)])
        self.begins, self.ends = begins, ends
        self.starts, self.sign, self._last_end = y0, sign, y_last
        self.first_slopes, self.last_slopes = k[..., 0], k[..., -1]
        self._begin_values = begins.tolist()
        self._end_values = ends.tolist()

    def refine(self, field: FlatField) -> None:
        """Replace the solver's polynomials by ones a power of the step size more accurate.

        A solver's dense output is an order less accurate inside a step than at its ends.
        On every step ``f`` is evaluated along the polynomial at
        :data:`COLLOCATION_POINTS` interior points (without a graph, batched by ``vmap``
        where it can be); with the step's own first and last stage derivatives, the
        polynomial through these derivatives is integrated from the step's start:
        ``z(u) = y_j + ∫ f(s, p(s)) ds``, a Picard step, of degree 5. Its error is that of
        the interpolated derivative integrated over the step.

        Args:
            field: :class:`~.state.FlatField`.
        """
        width = self.ends - self.begins
        points = self.begins.unsqueeze(-1) + width.unsqueeze(-1) * _COLLOCATION.to(width.device)
        states = self.at(points.reshape(-1))
        times = (self.sign * points.reshape(-1)).to(states.dtype)
        with torch.no_grad():
            try:
                slopes = vmap(field)(times, states)
            except RuntimeError:  # as the quadrature's nodes: one evaluation each
                slopes = torch.stack([field(time, state) for time, state in zip(times, states)])
        slopes = self.sign * slopes.reshape(len(self.begins), len(_COLLOCATION), -1)
        values = torch.cat(
            [self.first_slopes.unsqueeze(1), slopes, self.last_slopes.unsqueeze(1)], dim=1
        )  # (S, m + 2, n)
        # Derivative values -> its polynomial's coefficients -> the integral's, times h.
        derivative = torch.einsum(
            'pi,sin->psn', _INVERSE_VANDERMONDE.to(values.dtype).to(values.device), values
        )
        powers = _POWERS.to(values.dtype).to(values.device) + 1
        integral = derivative / powers.reshape(-1, 1, 1) * width.to(values.dtype).reshape(1, -1, 1)
        coefficients = torch.cat([self.starts.unsqueeze(0), integral])
        # The step's end is the solver's y1 again: the Picard step misses it by its own
        # error, which a term linear in the fraction of the step takes out (the order
        # stays) so that the pieces join.
        ends = torch.cat([self.starts[1:], self._last_end.unsqueeze(0)])
        coefficients[1] += ends - coefficients.sum(0)
        self.coefficients = coefficients

    def last_step_within(self, end: float) -> float:
        """The size of the last forward step that ends at or before ``end`` (forward solver
        time), or, where the first step already passes it, the part of that step before
        ``end``. The forward's very last step usually reaches past the last output time
        (the solver interpolates back), by as far as its error estimate allowed; its
        size says nothing about the solution at that time."""
        inside = [
            right - left
            for left, right in zip(self._begin_values, self._end_values)
            if right <= end
        ]
        return inside[-1] if inside else end - self._begin_values[0]

    def at(self, u: torch.Tensor) -> torch.Tensor:
        """States ``(K, n)`` at forward solver times ``u`` ``(K,)``."""
        u = u.to(torch.float64)
        step = (torch.searchsorted(self.begins, u, right=True) - 1).clamp(0, len(self.begins) - 1)
        begin, end = self.begins[step], self.ends[step]
        x = ((u - begin) / (end - begin)).to(self.coefficients.dtype).unsqueeze(-1)
        return _horner(self.coefficients[:, step], x)

    def at_value(self, u: float) -> torch.Tensor:
        """The state ``(n,)`` at one forward solver time ``u`` (a float)."""
        step = min(
            max(bisect.bisect_right(self._begin_values, u) - 1, 0), len(self._begin_values) - 1
        )
        begin, end = self._begin_values[step], self._end_values[step]
        return _horner(self.coefficients[:, step], (u - begin) / (end - begin))


#: Interior points (fractions of a step) where :meth:`DenseForward.refine` evaluates
#: ``f``: the 3-point Gauss–Legendre nodes on [0, 1]. With the step's two end derivatives
#: they fix a polynomial of degree 4 in the derivative.
COLLOCATION_POINTS = 3
_COLLOCATION = torch.tensor([0.5 - 0.5 * 0.6**0.5, 0.5, 0.5 + 0.5 * 0.6**0.5], dtype=torch.float64)
_ABSCISSAE = torch.cat(
    [torch.zeros(1, dtype=torch.float64), _COLLOCATION, torch.ones(1, dtype=torch.float64)]
)
_POWERS = torch.arange(len(_ABSCISSAE), dtype=torch.float64)
# Values at the abscissae -> coefficients of the interpolating polynomial (lowest first).
_INVERSE_VANDERMONDE = torch.linalg.inv(_ABSCISSAE.unsqueeze(-1) ** _POWERS)


def _horner(coefficients: torch.Tensor, x: Union[torch.Tensor, float]) -> torch.Tensor:
    """``Σ_j coefficients[j] x^j`` (lowest power first)."""
    total = coefficients[-1]
    for coefficient in reversed(coefficients[:-1]):
        total = total * x + coefficient
    return total


class JumpedAdjointDynamics(StepRecorder):
    """``db/ds`` of the interpolating pass (see the module docstring).

    The user's ``callback_*_adjoint`` are called as torchdiffeq's adjoint calls them (see
    :class:`~.dynamics.AdjointDynamics`), with ``z`` read off the forward's steps and
    ``a = b + G``.

    Args:
        field: :class:`~.state.FlatField`.
        dense: :class:`DenseForward`.
        direction: +1.0 or -1.0, the sign of ``dt/ds``.
        jump_values: increasing floats, the solver times of the jumps, as the solver's
            evaluations see them (in the state's dtype).
        totals: ``(J + 1, n)``, ``G`` after passing 0, 1, ..., J jumps.
        params: tuple of tensors requiring grad (default none). Given, the state is
            ``[b, I]`` with ``dI/ds = -direction · aᵀ ∂f/∂θ`` (flat): the parameter
            integral rides along with the solve, the solver's own weights integrating it.
    """

    def __init__(
        self,
        field: FlatField,
        dense: DenseForward,
        direction: float,
        jump_values: list[float],
        totals: torch.Tensor,
        params: Sequence[torch.Tensor] = (),
    ) -> None:
        super().__init__(record_steps=False)
        self.field, self.dense, self.direction = field, dense, direction
        self.jump_values, self.totals = jump_values, totals
        self.params = tuple(params)
        self.size = totals.shape[-1]
        user = field.func
        callbacks = {
            name: getattr(user, name + '_adjoint')
            for name in CALLBACKS
            if getattr(user, name + '_adjoint', None) is not None
        }
        self._install_callbacks(callbacks, wrap=self._adjoint_callback)

    def _adjoint(self, value: float, b: torch.Tensor) -> torch.Tensor:
        # torchdiffeq evaluates just past a jump (and just before one) by one ulp of the
        # state's dtype: the jumps passed are those strictly before s.
        return b + self.totals[bisect.bisect_left(self.jump_values, value)]

    def _adjoint_callback(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        layout = self.field.layout
        shape: Callable[[torch.Tensor], Any] = (
            (lambda flat: flat) if layout.is_tuple else layout.unflatten
        )

        def adjoint_callback(s0: torch.Tensor, state: torch.Tensor, ds: Any) -> None:
            value = float(s0)
            placeholder = torch.zeros((), dtype=state.dtype, device=state.device)
            callback(
                -s0,
                (
                    placeholder,
                    shape(self.dense.at_value(-value)),
                    shape(self._adjoint(value, state[: self.size])),
                ),
                ds,
            )

        return adjoint_callback

    def __call__(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        value = float(s)
        adjoint = self._adjoint(value, state[: self.size])
        t = s.detach() * self.direction
        with torch.enable_grad():
            z = self.dense.at_value(-value).detach().requires_grad_(True)
            derivative = self.field(t, z)
            inputs = (z,) + self.params
            grads: tuple[torch.Tensor | None, ...] = (None,) * len(inputs)
            if derivative.requires_grad:
                grads = torch.autograd.grad(derivative, inputs, adjoint, allow_unused=True)
        result = torch.cat(
            [
                torch.zeros_like(value_).reshape(-1) if grad is None else grad.reshape(-1)
                for value_, grad in zip(inputs, grads)
            ]
        )
        return result if self.direction < 0 else -result


class InterpolatedBackward:
    """The interpolating backward pass (``backward='interpolated'``).

    Args:
        record: :class:`~.record.ForwardRecord` whose tape holds the steps and stages.
    """

    name = 'interpolated'

    @staticmethod
    def records(settings: Settings) -> tuple[str, ...]:
        """What the forward pass must record for this pass: its accepted steps and their
        stages (where the methods are covered)."""
        return () if _settings_problem(settings) else ('steps', 'stages')

    @staticmethod
    def problem(record: ForwardRecord) -> Optional[str]:
        """Why this pass cannot serve the solve (None if it can)."""
        if len(record.times) < 2:
            return 'one output time: there are no steps to read the state off'
        return _settings_problem(record.settings) or tape_problem(record, stages=True)

    def __init__(self, record: ForwardRecord) -> None:
        self.record = record
        self.solves = BackwardSolves(record)
        settings = record.settings
        if record.tape is None or settings.method is None:  # problem() names this first
            raise RuntimeError('odeint_adjoint_gq: the forward pass did not record its steps')
        self.dense = DenseForward(record.tape, settings.layout, settings.method)
        if tight_enough(settings.rtol):
            # Short steps: the Picard step gains an order (docs/backward.md). With the
            # long steps of loose tolerances its own interpolation error, of f across
            # the whole step, can exceed the solver's polynomial's: measured on the
            # paper's sines at rtol 1e-3, it doubled the gradient's error.
            self.dense.refine(settings.field)
        # The solve carries b alone: the forward's norm, as for the state.
        self.norm = flat_state_norm(settings.options.get('norm'), settings.layout)
        self.dynamics: JumpedAdjointDynamics | None = None

    def __call__(self, grad_solution: torch.Tensor) -> BackwardResult:
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        solves, record = self.solves, self.record
        found: list[Interval]
        if len(solves.time_values) < 2:
            found = []
        elif solves.controlled and record.params and not record.vectorisable():
            return self._riding_integral(grad_solution)
        else:
            found = self._intervals(grad_solution)
        return integrate_intervals(
            solves,
            found,
            grad_solution,
            self.name,
            lambda: 0 if self.dynamics is None else self.dynamics.nfe,
        )

    def _jumps(
        self, grad_solution: torch.Tensor, params: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The jump times (solver time), ``G`` after each, and the solve's dynamics."""
        solves = self.solves
        count = len(solves.time_values)
        solver_times = solves.direction * solves.times  # s of each t_i; s_{T-1} the least
        # Interior output times with a loss gradient are jumps; from the last one back.
        interior = grad_solution[1:-1].ne(0).any(dim=-1).tolist()
        jumps = [index for index in range(count - 2, 0, -1) if interior[index - 1]]
        running = [grad_solution[-1]]
        for index in jumps:
            running.append(running[-1] + grad_solution[index])
        totals = torch.stack(running)
        jump_times = (solver_times[jumps] if jumps else solver_times[:0]).contiguous()
        jump_values = jump_times.to(grad_solution.dtype).tolist()
        self.dynamics = JumpedAdjointDynamics(
            solves.settings.field, self.dense, solves.direction, jump_values, totals, params
        )
        return solver_times, jump_times, totals

    def _solve(
        self,
        start: torch.Tensor,
        grid: torch.Tensor,
        jump_times: torch.Tensor,
        norm: Callable[[torch.Tensor], torch.Tensor],
        warm: bool = True,
    ) -> torch.Tensor:
        """The one backward solve from ``start`` over the increasing solver times ``grid``
        (``warm``: its first step from the forward's last steps)."""
        solves = self.solves
        options = _with_jumps(solves.options, jump_times)
        if warm and 'first_step' not in options:
            # The forward's steps near the end suit the first backward step: same
            # dynamics, same place. Starting warm saves the initial step selection.
            options['first_step'] = self.dense.last_step_within(
                float(-solves.direction * solves.times[-1])
            )
        extra = len(start) - solves.size
        rtol, atol = (_padded(value, extra) for value in solves.tolerances)
        # The state it reads off the forward's steps is exact only to rounding: a relative
        # tolerance below that has the controller chase it (float32 at torchdiffeq's
        # default rtol 1e-7: over eight times the restart pass's evaluations, and a larger
        # error than it).
        rtol = above_rounding(rtol, start.dtype)
        dynamics = self.dynamics
        if dynamics is None:
            raise RuntimeError('odeint_adjoint_gq: the backward dynamics were not built')
        return solves.odeint(
            dynamics,
            start,
            grid,
            len(solves.time_values) - 1,
            rtol=rtol,
            atol=atol,
            norm=norm,
            options=options,
        )

    def _riding_integral(self, grad_solution: torch.Tensor) -> BackwardResult:
        """The error-controlled rule's nodes, when ``vmap`` cannot batch ``func``, would
        each cost a full product; the parameter integral rides along with the solve
        instead, one product per backward evaluation."""
        solves, params = self.solves, self.record.params
        solver_times, jump_times, totals = self._jumps(grad_solution, params)
        size = solves.size
        total = sum(param.numel() for param in params)
        start = torch.zeros(size + total, dtype=grad_solution.dtype, device=grad_solution.device)
        # The integral counts in the step-size control, as in torchdiffeq's adjoint by
        # default: leaving it out (a seminorm) costs accuracy at tight tolerances.
        # It starts cold, as torchdiffeq's adjoint does: a long first step passes the
        # error estimate of the integral more easily than it integrates it (on a CNF with
        # the exact trace, starting warm tripled the error).
        path = self._solve(
            start,
            solver_times.flip(0),
            jump_times,
            lambda state: torch.maximum(
                torch.as_tensor(self.norm(state[:size])), state[size:].pow(2).mean().sqrt()
            ),
            warm=False,
        )
        before = torch.searchsorted(jump_times, solver_times[:1], right=False)
        after_start = path[-1, :size] + totals[before[0]]
        flat = path[-1, size:]
        param_grads = [
            piece.reshape(param.shape).to(param.dtype)
            for piece, param in zip(torch.split(flat, [param.numel() for param in params]), params)
        ]
        dynamics = self.dynamics
        if dynamics is None:  # the solve above built it
            raise RuntimeError('odeint_adjoint_gq: the backward dynamics were not built')
        return BackwardResult(
            after_start + grad_solution[0],
            after_start,
            param_grads,
            dict(backward=self.name, backward_nfe=dynamics.nfe, nodes=0),
        )

    def _intervals(self, grad_solution: torch.Tensor) -> list[Interval]:
        solves = self.solves
        count = len(solves.time_values)
        direction = solves.direction
        solver_times, jump_times, totals = self._jumps(grad_solution)
        rules = {index: solves.rules_of(index) for index in range(count - 1, 0, -1)}
        nodes = torch.cat(
            [solves.times] + [node_times for index in rules for node_times, _ in rules[index]]
        )
        grid, position = torch.unique(direction * nodes, sorted=True, return_inverse=True)
        path = self._solve(torch.zeros_like(grad_solution[-1]), grid, jump_times, self.norm)[
            position
        ]
        outputs, inner = path[:count], path[count:]
        # G just after (in s) each output time: jumps at or before it; at the node times
        # (strictly between output times) the same count as strictly before.
        passed_after = torch.searchsorted(jump_times, solver_times, right=True)
        passed_before = torch.searchsorted(jump_times, solver_times, right=False)
        node_list = torch.cat([node_times for index in rules for node_times, _ in rules[index]])
        node_passed = torch.searchsorted(jump_times, direction * node_list)
        node_states = self.dense.at(-direction * node_list)
        node_adjoints = inner + totals[node_passed]

        intervals, offset = [], 0
        for index in range(count - 1, 0, -1):
            found = []
            for node_times, weights in rules[index]:
                part = slice(offset, offset + len(node_times))
                offset += len(node_times)
                found.append(Rule(node_times, weights, node_states[part], node_adjoints[part]))
            # a(t_index⁻) holds g_index (the start's own jump); a(t_{index-1}⁺) does not.
            start = outputs[index] + totals[passed_after[index]]
            end = outputs[index - 1] + totals[passed_before[index - 1]]
            intervals.append(solves.interval(index, found, start, end, solves.solution[index - 1]))
        return intervals


def _settings_problem(settings: Settings) -> Optional[str]:
    """Why the arguments rule this pass out (None if they do not)."""
    if settings.method not in ADAPTIVE_METHODS:
        return (
            f'method {settings.method!r} has no dense output of its own (covered: the '
            'adaptive Runge-Kutta methods)'
        )
    if settings.adjoint_method not in ADAPTIVE_METHODS:
        return (
            f'adjoint_method {settings.adjoint_method!r} cannot step onto the output '
            'times (covered: the adaptive Runge-Kutta methods)'
        )
    if settings.custom_adjoint_norm:
        return "a callable adjoint norm expects the restart method's [z, a] state"
    return None


def _padded(value: Union[float, torch.Tensor], extra: int) -> Union[float, torch.Tensor]:
    """A flat tolerance (number or ``(n,)`` tensor) for a state with ``extra`` more entries
    (the parameter integral's: its largest entry)."""
    if extra == 0 or not torch.is_tensor(value):
        return value
    return torch.cat([value, value.max().expand(extra)])


def _with_jumps(options: dict[str, Any], jump_times: torch.Tensor) -> dict[str, Any]:
    """The backward options with ``jump_times`` added to ``jump_t`` (and taken out of
    ``step_t``: torchdiffeq refuses a time in both)."""
    options = dict(options)
    if len(jump_times) == 0:
        return options
    jumps = jump_times.to(torch.float64)
    if options.get('jump_t') is not None:
        jumps = torch.cat(
            [
                torch.as_tensor(
                    options['jump_t'], dtype=torch.float64, device=jumps.device
                ).reshape(-1),
                jumps,
            ]
        )
    jumps = torch.unique(jumps)
    options['jump_t'] = jumps
    if options.get('step_t') is not None:
        step_t = torch.as_tensor(
            options['step_t'], dtype=torch.float64, device=jumps.device
        ).reshape(-1)
        options['step_t'] = step_t[~torch.isin(step_t, jumps)]
    return options
