"""What the two quadrature backward passes share: backward solves and the parameter
integral over their intervals.

The restart method (:mod:`.restart`) and the per-sample propagator (:mod:`.propagator`)
both solve backwards from the last output time in the solver's time
``s = direction · t`` (always increasing), read states at Gauss–Legendre nodes of each
interval ``[t_{i-1}, t_i]`` and hand :class:`~.error_control.Interval` records to the
parameter integral: one batched quadrature with the paper's rule (a number ``gtol``), or
the error-controlled quadrature (``gtol=None``). :class:`BackwardSolves` holds the
geometry (times, direction, rules, tolerances, options) and runs one solve;
:func:`integrate_intervals` turns the intervals into a :class:`~.record.BackwardResult`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import torch
import torchdiffeq

from . import checks
from .backward_options import backward_options, flat_tolerance
from .error_control import ControlledQuadrature, Interval
from .parameter_integral import NodeEvaluator, ParameterIntegral
from .quadrature import FIRST_GTOL, candidate_counts, gauss_legendre, node_count
from .record import BackwardResult, ForwardRecord

#: A Gauss–Legendre rule: its nodes and weights.
NodesWeights = tuple[torch.Tensor, torch.Tensor]
#: Node counts to try on a piece of an interval, given its length.
Counts = Callable[[float], list[int]]


class BackwardSolves:
    """Backward solves against ``t``'s direction and the quadrature rules of each interval.

    Args:
        record: :class:`~.record.ForwardRecord`.

    Attributes:
        settings, times, solution: from the record; ``time_values`` the times as floats.
        size: int, ``n``.
        direction: +1.0 or -1.0, the sign of ``dt/ds`` of the backward solves.
        controlled: bool, error-controlled quadrature (``gtol=None``, adaptive or scipy
            methods).
        grid: bool, a fixed-grid backward method.
        tolerances: ``(rtol, atol)`` of the backward solve, flat (numbers or ``(n,)``).
        jumps: list of ``jump_t`` values (real time), where rules are split.
    """

    def __init__(self, record: ForwardRecord) -> None:
        settings = record.settings
        self.record = record
        self.settings = settings
        self.times = record.times
        self.solution = record.solution
        self.size = record.solution.shape[-1]
        self.forward_nfe = record.forward_nfe
        method = settings.adjoint_method
        self.grid = method in checks.GRID_METHODS
        self.controlled = settings.gtol is None and not self.grid
        # One host transfer for all times: node counts and positions are host-side.
        self.time_values = record.times.tolist()
        self.total_length = self.time_values[-1] - self.time_values[0]
        # The backward solves run against t's direction; the solver's own time
        # s = direction·t increases.
        self.direction = -1.0 if self.total_length > 0 else 1.0
        self.carry = method in checks.ADAPTIVE_METHODS and settings.gtol is not None
        self.options = backward_options(settings.adjoint_options, self.direction)
        # The paper's rule (a number gtol) favours speed: a step chosen by the user wins for
        # the first interval; after that, and when the user chose none, each solve starts
        # with the last accepted step of the previous one. The default mode starts every
        # solve as torchdiffeq's adjoint does (its own initial step selection, or the
        # user's first_step): carried steps are as large as the error estimate allows,
        # and on coarse tolerances that costs accuracy the adjoint has.
        self.step = self.options.get('first_step', record.forward_step) if self.carry else None
        jumps = settings.adjoint_options.get('jump_t')
        self.jumps = [] if jumps is None else torch.as_tensor(jumps).reshape(-1).tolist()
        self.tolerances = tuple(
            flat_tolerance(value, settings.layout, record.solution)
            for value in (settings.adjoint_rtol, settings.adjoint_atol)
        )

    def counts(self, length: float) -> list[int]:
        """Node counts to try on a piece of length ``length`` (adaptive and scipy methods)."""
        if self.controlled:
            return candidate_counts(
                node_count(FIRST_GTOL, self.forward_nfe, length, self.total_length)
            )
        gtol = self.settings.gtol
        if gtol is None:  # fixed-grid methods count their nodes from the grid (restart)
            raise RuntimeError('odeint_adjoint_gq: no node count for gtol=None on this method')
        return [node_count(gtol, self.forward_nfe, length, self.total_length)]

    def rules_of(self, index: int, counts: Optional[Counts] = None) -> list[NodesWeights]:
        """The candidate rules of interval ``[t_{index-1}, t_index]`` (see :meth:`rules`)."""
        return self.rules(self.time_values[index], self.time_values[index - 1], counts)

    def rules(
        self, end: float, start: float, counts: Optional[Counts] = None
    ) -> list[NodesWeights]:
        """Gauss–Legendre rules on ``[start, end]``, composite across ``jump_t``.

        A discontinuity of ``f`` inside an interval would ruin a Gauss rule's accuracy;
        the pieces between the jump times get a rule each. ``counts(length)`` (default
        :meth:`counts`) gives the node counts of a piece, one per candidate rule.
        Returns ``[(nodes, weights)]``, one pair per candidate, nodes running from
        ``end`` to ``start``.
        """
        counts = self.counts if counts is None else counts
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
                piece_nodes, piece_weights = gauss_legendre(
                    piece_end, piece_start, count, self.times.dtype, self.times.device
                )
                nodes.append(piece_nodes)
                # Nodes run backwards from `end`; the integral itself runs forwards in time.
                weights.append(-piece_weights)
            rules.append((torch.cat(nodes), torch.cat(weights)))
        return rules

    def interval(
        self,
        index: int,
        rules: list[Any],
        adjoint_start: torch.Tensor,
        adjoint_end: torch.Tensor,
        state_end: torch.Tensor,
    ) -> Interval:
        """The :class:`~.error_control.Interval` ``[t_{index-1}, t_index]``."""
        end, start = self.time_values[index], self.time_values[index - 1]
        # Across a jump of f, a·f jumps too: the time check's reference does not hold.
        smooth = not any(min(start, end) < value < max(start, end) for value in self.jumps)
        return Interval(
            index,
            rules,
            adjoint_start,
            adjoint_end,
            self.solution[index],
            state_end,
            abs(end - start),
            time_check=smooth,
        )

    def odeint(
        self,
        dynamics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        start_state: torch.Tensor,
        solve_times: torch.Tensor,
        index: int,
        rtol: Union[float, torch.Tensor, None] = None,
        atol: Union[float, torch.Tensor, None] = None,
        norm: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        options: Optional[dict[str, Any]] = None,
    ) -> torch.Tensor:
        """One backward solve of ``dynamics`` from observation ``index``.

        Args:
            dynamics: callable ``(s, state)``; its ``last_step`` (if any) is carried to
                the next solve under the paper's rule.
            start_state: flat state at ``solve_times[0]``.
            solve_times: increasing solver times ``s``.
            index: int, the observation the solve starts from (for messages).
            rtol, atol: tolerances (default: the adjoint tolerances).
            norm: the solver's norm (default: the backward options').
            options: the solver's options (default: the backward options).

        Raises:
            FloatingPointError: non-finite or vanishing values in the solve.
        """
        options = self.options if options is None else options
        if self.step is not None:
            options = dict(options, first_step=self.step)
        if norm is not None:
            options = dict(options, norm=norm)
        rtol = _fitted(self.tolerances[0] if rtol is None else rtol, start_state)
        atol = _fitted(self.tolerances[1] if atol is None else atol, start_state)
        settings = self.settings
        try:
            path = torchdiffeq.odeint(
                dynamics,
                start_state,
                solve_times,
                rtol=rtol,
                atol=atol,
                method=settings.adjoint_method,
                options=options,
            )
        except AssertionError as error:
            if 'non-finite' in str(error) or 'underflow' in str(error):
                raise FloatingPointError(
                    f'odeint_adjoint_gq: the backward solve over [t[{index - 1}], t[{index}]] '
                    f'failed with non-finite or vanishing values ({error}). Check func for '
                    'overflow, or lower rtol/atol.'
                ) from error
            raise
        last_step = getattr(dynamics, 'last_step', None)
        if self.carry and last_step is not None:
            self.step = last_step
        return path


def integrate_intervals(
    solves: BackwardSolves,
    found: Iterable[Interval],
    grad_solution: torch.Tensor,
    name: str,
    backward_nfe: Callable[[], int],
) -> BackwardResult:
    """The parameter integral over the intervals ``found`` (from the last to the first).

    Args:
        solves: :class:`BackwardSolves`.
        found: iterable of :class:`~.error_control.Interval`, consumed in order.
        grad_solution: ``(T, n)`` output cotangents.
        name: str, the pass's name for the costs.
        backward_nfe: callable returning the evaluations the pass made (read after
            ``found`` is consumed).

    Returns:
        :class:`~.record.BackwardResult`.
    """
    record = solves.record
    evaluator = NodeEvaluator(
        solves.settings.field, record.params, solves.size, call_site=solves.settings.call_site
    )
    integral = None if solves.controlled else ParameterIntegral(evaluator)
    # a(t_0^+): the adjoint arriving at t_0 from later times (none if t has one entry).
    adjoint_after_start = torch.zeros_like(grad_solution[-1])
    intervals = []
    for interval in found:
        if integral is not None:
            rule = interval.rules[0]
            integral.add(rule.times, rule.weights, rule.states, rule.adjoints)
        elif record.params:
            intervals.append(interval)
        adjoint_after_start = interval.adjoint_end
    if integral is not None:
        param_grads = integral.result()
    else:
        rtol, atol = solves.tolerances
        param_grads = ControlledQuadrature(evaluator, rtol, atol, record.field_values).integrate(
            intervals
        )
    return BackwardResult(
        adjoint_after_start + grad_solution[0],
        adjoint_after_start,
        param_grads,
        dict(backward=name, backward_nfe=backward_nfe(), nodes=evaluator.nodes),
    )


def _fitted(
    tolerance: Union[float, torch.Tensor], state: torch.Tensor
) -> Union[float, torch.Tensor]:
    """A per-element tolerance of the forward's flat state ``(n,)``, repeated over a flat
    backward state made of blocks of that size (``[z, a]``); anything else as it is."""
    if (
        torch.is_tensor(tolerance)
        and tolerance.dim() == 1
        and state.dim() == 1
        and tolerance.numel() != state.numel()
        and state.numel() % tolerance.numel() == 0
    ):
        return tolerance.repeat(state.numel() // tolerance.numel())
    return tolerance
