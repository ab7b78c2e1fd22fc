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

The gradient is the continuous adjoint's, as the restart method's: its error follows the
backward solve's tolerance, not the forward discretisation's (unlike the checkpoint).
Memory: the tape, O(steps × stages × state), within ``checkpoint_memory``.

What this relies on in torchdiffeq (private, pinned in requirements.txt and checked by
``tests/library/test_torchdiffeq_contract.py``): the solver classes' ``mid`` and
``tableau.c_sol`` and ``torchdiffeq._impl.interp._interp_fit``.
"""

import bisect

import torch
from torch.func import vmap
from torchdiffeq._impl.interp import _interp_fit
from torchdiffeq._impl.odeint import SOLVERS

from .backward_options import flat_state_norm
from .backward_solves import BackwardSolves, integrate_intervals
from .checks import ADAPTIVE_METHODS
from .error_control import Rule


class DenseForward:
    """The forward solve's dense output, rebuilt from its recorded steps.

    Args:
        tape: :class:`~.checkpoint.ForwardTape` recorded with ``keep_stages``.
        layout: :class:`~.state.StateLayout` of the state.
        method: the forward method (its tableau's ``mid`` and ``c_sol``).

    The forward solver's time is ``u = t`` (``-t`` when ``t`` decreases); the pieces are
    fitted all at once: coefficients ``(5, S, n)`` for ``S`` steps.
    """

    def __init__(self, tape, layout, method):
        sign = -1.0 if tape.reversed_time else 1.0
        flat = layout.flatten
        solver = SOLVERS[method]
        starts = tape.starts
        y0 = torch.stack([flat(start[1]) for start in starts])
        dtype, device = y0.dtype, y0.device
        firsts = [tape.first_derivative] + tape.ends[:-1]
        # Stage derivatives in the solver's frame: k_0 (the step's first derivative,
        # after a jump_t the one on its far side) and each stage's output.
        k = torch.stack([torch.stack([flat(first)] + [flat(stage) for stage in stages], dim=-1)
                         for first, stages in zip(firsts, tape.stages)])
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
        begins = torch.tensor([sign * float(start[0]) for start in starts], dtype=torch.float64,
                              device=device)
        ends = torch.cat([begins[1:], (begins[-1] + steps[-1].to(device)).reshape(1)])
        self.begins, self.ends = begins, ends
        self.starts, self.sign = y0, sign
        self._begin_values = begins.tolist()
        self._end_values = ends.tolist()

    def at(self, u):
        """States ``(K, n)`` at forward solver times ``u`` ``(K,)``."""
        u = u.to(torch.float64)
        step = (torch.searchsorted(self.begins, u, right=True) - 1).clamp(0, len(self.begins) - 1)
        begin, end = self.begins[step], self.ends[step]
        x = ((u - begin) / (end - begin)).to(self.coefficients.dtype).unsqueeze(-1)
        return _horner(self.coefficients[:, step], x)

    def refined(self, u, field):
        """States ``(K, n)`` at forward solver times ``u`` ``(K,)``, one order more accurate
        than :meth:`at`: ``z(u) = y(u_j) + ∫ f(s, p(s)) ds`` from the start ``u_j`` of the
        step holding ``u``, with the polynomial ``p`` inside ``f`` and a 3-point
        Gauss–Legendre rule (a Picard step). The dense output's error, a power of the step
        size above the step's own, becomes one power smaller. ``f`` is evaluated at 3K
        points in one ``vmap`` batch; where ``vmap`` cannot batch ``field``, :meth:`at`'s
        states are returned unchanged (3K separate evaluations would cost more than the
        whole backward solve).
        """
        u = u.to(torch.float64)
        step = (torch.searchsorted(self.begins, u, right=True) - 1).clamp(0, len(self.begins) - 1)
        begin = self.begins[step]
        half = (u - begin) / 2
        points = (begin + half).unsqueeze(-1) + half.unsqueeze(-1) * _PICARD_NODES.to(u.device)
        states = self.at(points.reshape(-1))
        times = (self.sign * points.reshape(-1)).to(states.dtype)
        try:
            with torch.no_grad():
                slopes = vmap(field)(times, states)
        except RuntimeError:
            return self.at(u)
        weights = (half.unsqueeze(-1) * _PICARD_WEIGHTS.to(u.device)).to(states.dtype)
        increments = (slopes.reshape(len(u), len(_PICARD_WEIGHTS), -1)
                      * weights.unsqueeze(-1)).sum(1)
        return self.starts[step] + self.sign * increments

    def at_value(self, u):
        """The state ``(n,)`` at one forward solver time ``u`` (a float)."""
        step = min(max(bisect.bisect_right(self._begin_values, u) - 1, 0),
                   len(self._begin_values) - 1)
        begin, end = self._begin_values[step], self._end_values[step]
        return _horner(self.coefficients[:, step], (u - begin) / (end - begin))


#: The 3-point Gauss–Legendre rule on [-1, 1] of :meth:`DenseForward.refined`.
_PICARD_NODES = torch.tensor([-(0.6 ** 0.5), 0.0, 0.6 ** 0.5], dtype=torch.float64)
_PICARD_WEIGHTS = torch.tensor([5 / 9, 8 / 9, 5 / 9], dtype=torch.float64)


def _horner(coefficients, x):
    """``Σ_j coefficients[j] x^j`` (five coefficients, lowest power first)."""
    total = coefficients[4]
    for coefficient in (coefficients[3], coefficients[2], coefficients[1], coefficients[0]):
        total = total * x + coefficient
    return total


class JumpedAdjointDynamics:
    """``db/ds`` of the interpolating pass (see the module docstring).

    Args:
        field: :class:`~.state.FlatField`.
        dense: :class:`DenseForward`.
        direction: +1.0 or -1.0, the sign of ``dt/ds``.
        jump_values: increasing floats, the solver times of the jumps, as the solver's
            evaluations see them (in the state's dtype).
        totals: ``(J + 1, n)``, ``G`` after passing 0, 1, ..., J jumps.
    """

    def __init__(self, field, dense, direction, jump_values, totals):
        self.field, self.dense, self.direction = field, dense, direction
        self.jump_values, self.totals = jump_values, totals
        self.nfe = 0

    def __call__(self, s, b):
        self.nfe += 1
        value = float(s)
        # torchdiffeq evaluates just past a jump (and just before one) by one ulp of the
        # state's dtype: the jumps passed are those strictly before s.
        adjoint = b + self.totals[bisect.bisect_left(self.jump_values, value)]
        t = s.detach() * self.direction
        with torch.enable_grad():
            z = self.dense.at_value(-value).detach().requires_grad_(True)
            derivative = self.field(t, z)
            vjp = None
            if derivative.requires_grad:
                (vjp,) = torch.autograd.grad(derivative, z, adjoint, allow_unused=True)
        if vjp is None:
            return torch.zeros_like(b)
        return vjp if self.direction < 0 else -vjp


class InterpolatedBackward:
    """The interpolating backward pass (``backward='interpolated'``).

    Args:
        record: :class:`~.record.ForwardRecord` whose tape holds the steps and stages.
    """

    name = 'interpolated'

    @staticmethod
    def records(settings):
        """What the forward pass must record for this pass: its accepted steps and their
        stages (where the methods are covered)."""
        return () if _settings_problem(settings) else ('steps', 'stages')

    @staticmethod
    def problem(record):
        """Why this pass cannot serve the solve (None if it can)."""
        settings, tape = record.settings, record.tape
        reason = _settings_problem(settings)
        if reason is None and (tape is None or not tape.keep_stages):
            reason = 'the forward pass did not record its steps'
        if reason is None and tape.overflow:
            reason = (f'the recorded steps passed checkpoint_memory={settings.checkpoint_memory} '
                      'bytes')
        return reason

    def __init__(self, record):
        self.record = record
        self.solves = BackwardSolves(record)
        settings = record.settings
        self.dense = DenseForward(record.tape, settings.layout, settings.method)
        # The solve carries b alone: the forward's norm, as for the state.
        self.norm = flat_state_norm(settings.options.get('norm'), settings.layout)
        self.dynamics = None

    def __call__(self, grad_solution):
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        return integrate_intervals(self.solves, self._intervals(grad_solution), grad_solution,
                                   self.name, lambda: 0 if self.dynamics is None
                                   else self.dynamics.nfe)

    def _intervals(self, grad_solution):
        solves = self.solves
        count = len(solves.time_values)
        if count < 2:
            return []
        direction = solves.direction
        solver_times = direction * solves.times  # increasing, s_{T-1} first
        state_dtype = grad_solution.dtype
        # Interior output times with a loss gradient are jumps; from the last one back.
        interior = grad_solution[1:-1].ne(0).any(dim=-1).tolist()
        jumps = [index for index in range(count - 2, 0, -1) if interior[index - 1]]
        totals = [grad_solution[-1]]
        for index in jumps:
            totals.append(totals[-1] + grad_solution[index])
        totals = torch.stack(totals)
        jump_times = solver_times[jumps] if jumps else solver_times[:0]
        jump_values = jump_times.to(state_dtype).tolist()
        self.dynamics = JumpedAdjointDynamics(solves.settings.field, self.dense, direction,
                                              jump_values, totals)

        rules = {index: solves.rules_of(index) for index in range(count - 1, 0, -1)}
        nodes = torch.cat([solves.times] + [node_times for index in rules
                                            for node_times, _ in rules[index]])
        grid, position = torch.unique(direction * nodes, sorted=True, return_inverse=True)
        options = _with_jumps(solves.options, jump_times)
        if 'first_step' not in options and self.record.forward_step is not None:
            # The forward's last step suits the first backward step: same dynamics, same
            # place. Starting warm saves the initial step selection.
            options['first_step'] = self.record.forward_step
        path = solves.odeint(self.dynamics, torch.zeros_like(grad_solution[-1]), grid,
                             count - 1, norm=self.norm, options=options)[position]
        outputs, inner = path[:count], path[count:]
        # G just after (in s) each output time: jumps at or before it; at the node times
        # (strictly between output times) the same count as strictly before.
        passed_after = torch.searchsorted(jump_times.contiguous(), solver_times, right=True)
        passed_before = torch.searchsorted(jump_times.contiguous(), solver_times, right=False)
        node_list = torch.cat([node_times for index in rules for node_times, _ in rules[index]])
        node_passed = torch.searchsorted(jump_times.contiguous(), direction * node_list)
        node_states = self.dense.refined(-direction * node_list, solves.settings.field)
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
            intervals.append(solves.interval(index, found, start, end,
                                             solves.solution[index - 1]))
        return intervals


def _settings_problem(settings):
    """Why the arguments rule this pass out (None if they do not)."""
    if settings.method not in ADAPTIVE_METHODS:
        return (f'method {settings.method!r} has no dense output of its own (covered: the '
                'adaptive Runge-Kutta methods)')
    if settings.adjoint_method not in ADAPTIVE_METHODS:
        return (f'adjoint_method {settings.adjoint_method!r} cannot step onto the output '
                'times (covered: the adaptive Runge-Kutta methods)')
    if settings.custom_adjoint_norm:
        return "a callable adjoint norm expects the restart method's [z, a] state"
    return None


def _with_jumps(options, jump_times):
    """The backward options with ``jump_times`` added to ``jump_t`` (and taken out of
    ``step_t``: torchdiffeq refuses a time in both)."""
    options = dict(options)
    if len(jump_times) == 0:
        return options
    jumps = jump_times.to(torch.float64)
    if options.get('jump_t') is not None:
        jumps = torch.cat([torch.as_tensor(options['jump_t'], dtype=torch.float64,
                                           device=jumps.device).reshape(-1), jumps])
    jumps = torch.unique(jumps)
    options['jump_t'] = jumps
    if options.get('step_t') is not None:
        step_t = torch.as_tensor(options['step_t'], dtype=torch.float64,
                                 device=jumps.device).reshape(-1)
        options['step_t'] = step_t[~torch.isin(step_t, jumps)]
    return options
