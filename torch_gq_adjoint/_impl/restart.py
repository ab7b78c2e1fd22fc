"""The paper's backward pass: ``[z, a]`` solved backwards one interval at a time.

From the last output time, each interval ``[t_{i-1}, t_i]`` is solved backwards from
``z(t_i)`` of the forward solution and ``a(t_i⁻)``; ``z`` and ``a`` are read at the
interval's Gauss–Legendre nodes off the solver's dense output (adaptive and scipy
methods, every candidate rule in one solve) or off a cubic Hermite interpolant of the
backward grid (fixed-grid methods, whose own output between grid points is linear); the
loss gradient at ``t_{i-1}`` is added to ``a`` and the next interval restarts ``z`` from
the forward solution. The parameter integral is then done over all intervals at once
(:func:`~.backward_solves.integrate_intervals`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

import torch

from .backward_solves import BackwardSolves, integrate_intervals
from .dynamics import AdjointDynamics
from .error_control import Interval, Rule
from .interpolation import hermite
from .quadrature import grid_node_count
from .record import BackwardResult, ForwardRecord

if TYPE_CHECKING:
    from .gq_adjoint import Settings


class RestartBackward:
    """The restart method (``backward='restart'``).

    Args:
        record: :class:`~.record.ForwardRecord`.
    """

    name = 'restart'

    @staticmethod
    def records(settings: Settings) -> tuple[str, ...]:
        """What the forward pass must record for this pass: nothing."""
        return ()

    @staticmethod
    def problem(record: ForwardRecord) -> Optional[str]:
        """None: the restart method serves every solve (the others fall back to it)."""
        return None

    def __init__(self, record: ForwardRecord) -> None:
        self.solves = solves = BackwardSolves(record)
        method = record.settings.adjoint_method
        self.dynamics = AdjointDynamics(
            record.settings.field,
            solves.size,
            solves.direction,
            record_steps=solves.carry,
            record_grid=solves.grid,
        )
        self.method = method

    def __call__(self, grad_solution: torch.Tensor) -> BackwardResult:
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        return integrate_intervals(
            self.solves,
            self.intervals(grad_solution),
            grad_solution,
            self.name,
            lambda: self.dynamics.nfe,
        )

    def intervals(self, grad_solution: torch.Tensor) -> Iterator[Interval]:
        """The intervals from the last to the first, solved one at a time."""
        adjoint = grad_solution[-1]
        for index in range(len(self.solves.time_values) - 1, 0, -1):
            interval = self.solve(index, adjoint)
            yield interval
            adjoint = interval.adjoint_end + grad_solution[index - 1]

    def solve(self, index: int, adjoint: torch.Tensor) -> Interval:
        """Solve ``[t_{index-1}, t_index]`` backwards from ``a(t_index⁻) = adjoint``."""
        solves = self.solves
        endpoints = solves.times[[index, index - 1]]
        start_state = torch.cat([solves.solution[index], adjoint])
        if solves.grid:
            return self._solve_grid(index, endpoints, start_state, adjoint)
        rules = solves.rules_of(index)
        # Every candidate node in one solve, as increasing solver times. On a very short
        # interval a node can round onto an end point (float32): unique() merges them.
        node_times = torch.cat([endpoints[:1]] + [nodes for nodes, _ in rules] + [endpoints[1:]])
        solve_times, position = torch.unique(
            solves.direction * node_times, sorted=True, return_inverse=True
        )
        path = solves.odeint(self.dynamics, start_state, solve_times, index)[position]
        inner = path[1:-1]
        result, offset = [], 0
        for nodes, weights in rules:
            at = inner[offset : offset + len(nodes)]
            offset += len(nodes)
            result.append(Rule(nodes, weights, at[:, : solves.size], at[:, solves.size :]))
        return self._interval(index, result, adjoint, path)

    def _solve_grid(
        self,
        index: int,
        endpoints: torch.Tensor,
        start_state: torch.Tensor,
        adjoint: torch.Tensor,
    ) -> Interval:
        solves, dynamics = self.solves, self.dynamics
        end, start = solves.time_values[index], solves.time_values[index - 1]
        dynamics.start_interval()
        solve_times = solves.direction * endpoints
        path = solves.odeint(dynamics, start_state, solve_times, index)
        if not dynamics.grid:
            raise RuntimeError(
                'odeint_adjoint_gq: no grid was recorded in the backward solve '
                f'of {self.method}; the torchdiffeq version differs from the '
                'pinned one (see requirements.txt).'
            )
        grid_s = torch.stack(
            [item[0].to(solve_times.dtype) for item in dynamics.grid] + [solve_times[-1]]
        )
        grid_y = torch.stack([item[1] for item in dynamics.grid] + [path[-1]])
        final_slope = dynamics(solve_times[-1], path[-1])
        grid_f = torch.stack([item[2] for item in dynamics.grid] + [final_slope])
        counts = None
        if solves.settings.gtol is None:
            steps = len(dynamics.grid)

            def counts(length: float) -> list[int]:
                share = round(steps * abs(length / (end - start)))
                return [grid_node_count(self.method, share)]

        ((nodes, weights),) = solves.rules(end, start, counts)
        at = hermite(grid_s, grid_y, grid_f, solves.direction * nodes)
        rule = Rule(nodes, weights, at[:, : solves.size], at[:, solves.size :])
        return self._interval(index, [rule], adjoint, path)

    def _interval(
        self, index: int, rules: list[Rule], adjoint: torch.Tensor, path: torch.Tensor
    ) -> Interval:
        size = self.solves.size
        return self.solves.interval(index, rules, adjoint, path[-1, size:], path[-1, :size])
