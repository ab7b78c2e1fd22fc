"""The checkpointed backward pass: discretise-then-optimise, one solver step at a time.

The forward solve is :func:`torchdiffeq.odeint` itself, without a graph. A
:class:`ForwardTape` listens to it through torchdiffeq's step callbacks and keeps the
state at the start of every accepted step (and, for the adaptive Runge–Kutta methods,
the derivative that step started from: FSAL, so no evaluation is repeated). Memory:
O(steps × state).

The backward pass walks the steps from the last to the first. Each step is recomputed
with a graph by torchdiffeq's own step function, on the same inputs, so it takes exactly
the forward's values; the outputs interpolated inside the step are recomputed with the
same dense-output polynomial; then one vector–Jacobian product carries the cotangents of
``(y, f)`` at the step's end, plus the loss gradients of its outputs, back to its start
and into the parameters. One step's graph is alive at a time.

Where the forward's graph is small, the forward keeps it instead and the backward pass
backpropagates through it, with the step-size controller's norm detached: the same
gradient, nothing recomputed (:mod:`.kept_graph`).

The result is the exact gradient of the forward discretisation with the step sizes held
fixed, as the ACA method (Zhuang et al., 2020) computes it. Direct backpropagation
through :func:`torchdiffeq.odeint` also differentiates the step-size controller (the
accepted step sizes depend on the state through the error estimate, and the first step
on ``f(t0, y0)``); those terms are of the order of the local error, and leaving them out
is what makes the gradient that of the discrete map the forward took.

What this relies on in torchdiffeq (private, pinned in requirements.txt and checked by
``tests/library/test_torchdiffeq_contract.py``): ``_check_inputs`` and ``SOLVERS`` to
build the very solver object ``odeint`` builds, ``_runge_kutta_step`` with the solver's
``tableau`` and its ``_interp_fit``, ``_interp_evaluate``, the fixed-grid solvers'
``_step_func``, ``_linear_interp`` and ``_cubic_hermite_interp``.
"""

from __future__ import annotations

import bisect
import warnings
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
from torchdiffeq._impl.interp import _interp_evaluate
from torchdiffeq._impl.misc import Perturb, _check_inputs
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import _runge_kutta_step

from .checks import ADAPTIVE_METHODS
from .kept_graph import KeptGraph, backpropagate
from .record import BackwardResult, ForwardRecord

if TYPE_CHECKING:
    from .gq_adjoint import Settings

#: Fixed-grid methods whose steps depend only on the state at their start (the Adams
#: methods carry a history of derivatives, and scipy's solvers are not torch code).
ONE_STEP_GRID_METHODS = frozenset({'euler', 'midpoint', 'heun2', 'heun3', 'rk4'})

#: Every method the checkpointed backward covers.
CHECKPOINT_METHODS = ADAPTIVE_METHODS | ONE_STEP_GRID_METHODS

#: Default of ``checkpoint_memory``: bytes the tape may hold (256 MiB).
DEFAULT_CHECKPOINT_MEMORY = 2**28


def checkpoint_problem(method: Optional[str], event_mode: bool) -> Optional[str]:
    """Why the checkpointed backward cannot serve this solve (None if it can)."""
    if method not in CHECKPOINT_METHODS:
        return (
            f'method {method!r} is not a one-step method (covered: adaptive Runge-Kutta '
            'methods and euler, midpoint, heun2, heun3, rk4)'
        )
    if event_mode and method not in ADAPTIVE_METHODS:
        return 'fixed-grid event handling steps outside the grid'
    return None


def tape_problem(record: ForwardRecord, stages: bool) -> Optional[str]:
    """Why the record's tape cannot serve a pass that reads it (None if it can): none was
    recorded (or, with ``stages``, none with the stages), or it passed the budget."""
    tape = record.tape
    if tape is None or (stages and not tape.keep_stages):
        return 'the forward pass did not record its steps'
    if tape.overflow:
        return (
            f'the recorded steps passed checkpoint_memory={record.settings.checkpoint_memory} bytes'
        )
    return None


def _usable(graph: Optional[KeptGraph]) -> bool:
    """Whether the forward kept its graph, and no backward pass has used it yet."""
    return graph is not None and not graph.used


def step_evaluations(record: ForwardRecord) -> int:
    """Evaluations the recomputing checkpoint repeats: those of the accepted steps
    (adaptive methods), all of the forward's otherwise."""
    counted = record.tape if record.tape is not None else record.graph
    adaptive = record.settings.method in ADAPTIVE_METHODS
    return counted.step_evaluations if adaptive and counted is not None else record.forward_nfe


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _parts(value: Any) -> tuple[torch.Tensor, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class ForwardTape:
    """What the checkpointed backward needs of the forward solve, recorded by callbacks.

    :class:`~torch_gq_adjoint._impl.dynamics.CountedField` calls :meth:`on_step`,
    :meth:`on_accept` and :meth:`on_evaluation` (torchdiffeq's ``callback_step``,
    ``callback_accept_step`` and each evaluation of ``func``). References to the
    solver's own tensors are kept (torchdiffeq makes a new tensor every step), so
    recording copies nothing.

    Args:
        adaptive: bool, an adaptive Runge–Kutta method (else a fixed-grid one).
        reversed_time: bool, ``t`` decreases (the callbacks receive ``-s`` for the
            solver's time ``s``).
        limit_bytes: int, the memory the tape may hold; past it the tape is dropped
            (:attr:`overflow` is set) and another backward pass is used.
        keep_stages: bool, also keep every stage derivative of each accepted step and
            the first evaluation of the solve (adaptive methods): what the solver's dense
            output needs (:mod:`.interpolated`). Default False.

    Attributes:
        starts: list of ``(t0, y0, dt, attempted_dt)`` per accepted step, ``t0`` in the
            user's time, ``y0`` in the user's structure.
        ends: list of the derivative each accepted step ends with (the next one's f0).
        jumps: list of bool, whether ``f`` was evaluated anew after the step (``jump_t``).
        nbytes: int, memory held.
        step_evaluations: int, evaluations made by the accepted steps (adaptive methods):
            what the checkpointed backward repeats.
        stages: list of tuples, per accepted step the derivatives its stages evaluated,
            in order, as ``func`` returned them (with ``keep_stages``).
        first_derivative: ``func(t0, y0)``, the solve's first evaluation (with
            ``keep_stages``).
    """

    def __init__(
        self, adaptive: bool, reversed_time: bool, limit_bytes: float, keep_stages: bool = False
    ) -> None:
        self.adaptive = adaptive
        self.reversed_time = reversed_time
        self.limit_bytes = limit_bytes
        self.keep_stages = keep_stages and adaptive
        self.starts: list[tuple[Any, Any, torch.Tensor, Any]] = []
        self.ends: list[Any] = []
        self.jumps: list[bool] = []
        self.stages: list[tuple[Any, ...]] = []
        self.first_derivative: Any = None
        self._attempt_outputs: list[Any] = []
        self.overflow = False
        self.nbytes = 0
        self.step_evaluations = 0
        self._attempt_evaluations = 0
        self._last_output: Any = None
        self._attempted: Any = None
        self._after_accept = False

    def on_evaluation(self, output: Any) -> None:
        self._attempt_evaluations += 1
        if self.overflow:
            return
        if self.keep_stages:
            if self.first_derivative is None:
                self.first_derivative = output
                self._add_bytes(_parts(output))
            self._attempt_outputs.append(output)
        if self._after_accept:
            # The only evaluation between an accepted step and the next step's start is
            # the one torchdiffeq makes after passing a jump_t, on the far side of it.
            self.ends[-1] = output
            self.jumps[-1] = True
            self._after_accept = False
        self._last_output = output

    def on_step(self, t0: Any, y0: Any, dt: torch.Tensor) -> None:
        self._after_accept = False
        self._attempt_evaluations = 0
        self._attempt_outputs = []
        self._attempted = dt
        if not self.adaptive:
            self._keep(t0, y0, dt, None)

    def on_accept(self, t0: Any, y0: Any, dt: torch.Tensor) -> None:
        self.step_evaluations += self._attempt_evaluations
        self._keep(t0, y0, dt, self._last_output)
        self._after_accept = True

    def _keep(self, t0: Any, y0: Any, dt: torch.Tensor, end_derivative: Any) -> None:
        if self.overflow:
            return
        tensors = _parts(y0) + (_parts(end_derivative) if end_derivative is not None else ())
        stages = tuple(self._attempt_outputs) if self.keep_stages else ()
        for stage in stages[:-1]:  # the last stage is the end derivative, counted above
            tensors += _parts(stage)
        if not self._add_bytes(tensors):
            return
        self.starts.append((t0, y0, dt, self._attempted))
        self.ends.append(end_derivative)
        self.jumps.append(False)
        if self.keep_stages:
            self.stages.append(stages)

    def _add_bytes(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Count ``tensors`` against the budget; drop the tape past it (returns False)."""
        self.nbytes += _nbytes(tensors)
        if self.nbytes > self.limit_bytes:
            self.drop()
            return False
        return True

    def drop(self) -> None:
        """Forget everything (over budget, or not needed)."""
        self.overflow = True
        self.starts, self.ends, self.jumps, self.stages = [], [], [], []
        self.first_derivative = None
        self._attempt_outputs = []
        self._last_output = None
        self.nbytes = 0


class CheckpointBackward:
    """The checkpointed backward pass (``backward='checkpoint'``) over a recorded solve.

    Args:
        record: :class:`~.record.ForwardRecord` whose ``tape`` holds the steps.

    Attributes:
        nfe: int, evaluations of ``func`` made by the backward pass.
    """

    name = 'checkpoint'

    @staticmethod
    def records(settings: Settings) -> tuple[str, ...]:
        """What the forward pass must record for this pass (where the method is covered):
        its graph where it fits (:mod:`.kept_graph`), and its accepted steps."""
        if checkpoint_problem(settings.method, settings.event_fn is not None) is not None:
            return ()
        return ('graph', 'steps')

    @staticmethod
    def problem(record: ForwardRecord) -> Optional[str]:
        """Why this pass cannot serve the solve (None if it can)."""
        settings = record.settings
        covered = checkpoint_problem(settings.method, settings.event_fn is not None)
        if covered is not None or _usable(record.graph):
            return covered
        return tape_problem(record, stages=False)

    def __init__(self, record: ForwardRecord) -> None:
        settings = record.settings
        self.settings, self.params = settings, record.params
        self.nfe = 0
        self.graph = record.graph if _usable(record.graph) else None
        if self.graph is not None:
            return  # nothing is recomputed
        tape = record.tape
        if tape is None:  # problem() names this before the pass is built
            raise RuntimeError('odeint_adjoint_gq: the forward pass did not record its steps')
        self.tape: ForwardTape = tape
        with warnings.catch_warnings():
            # The forward solve already warned about anything in the options.
            warnings.simplefilter('ignore')
            state = settings.layout.unflatten(record.solution[0])
            checked = _check_inputs(
                self._counted,
                state,
                record.t,
                settings.rtol,
                settings.atol,
                settings.method,
                settings.options,
                None,
                SOLVERS,
            )
            _, func, flat_y0, _, rtol, atol, method, options, _, _ = checked
            self.solver = SOLVERS[method](func=func, y0=flat_y0, rtol=rtol, atol=atol, **options)
        self.func = func
        self.shape = flat_y0.shape  # the state as the solver holds it
        self.sign = -1.0 if tape.reversed_time else 1.0
        # The times as the solver saw them: negated for decreasing t; float64 (the
        # solver's time dtype) for the adaptive methods.
        output_times = record.times
        solver_times = -output_times if tape.reversed_time else output_times
        self.solver_times = solver_times.to(self.solver.dtype) if tape.adaptive else solver_times

    def _counted(self, t: torch.Tensor, y: Any) -> Any:
        self.nfe += 1
        return self.settings.func(t, y)

    def _solver_form(self, value: Any) -> torch.Tensor:
        """A state (or derivative) as the solver holds it: the user's tensor as is, a
        tuple concatenated flat (as torchdiffeq's tuple wrapper does)."""
        if isinstance(value, (tuple, list)):
            return torch.cat([part.reshape(-1) for part in value])
        return value

    def __call__(self, grad_solution: torch.Tensor) -> BackwardResult:
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        if self.graph is not None:
            layout = self.settings.layout
            grad_y0, grads = backpropagate(self.graph, layout, self.params, grad_solution)
            return BackwardResult(
                grad_y0,
                # a(t0+): what reaches t0 from later times, less the loss gradient at t0.
                grad_y0 - grad_solution[0],
                grads,
                dict(backward=self.name, backward_nfe=0, nodes=0, graph_bytes=self.graph.nbytes),
            )
        tape = self.tape
        steps = len(tape.starts)
        starts = [self.sign * float(start[0]) for start in tape.starts]
        # Each step ends where the next one starts; the last one where the grid ends, or
        # (adaptive) at t0 + dt unless jump_t/step_t clipped it.
        ends = starts[1:] + [self._last_end(starts[-1])] if steps else []
        outputs: list[list[int]] = [[] for _ in range(steps)]
        grad_solution = grad_solution.reshape(len(grad_solution), *self.shape)
        for index, time in enumerate(self.solver_times.tolist()[1:], start=1):
            # torchdiffeq steps while the output time lies beyond the step's end.
            outputs[min(bisect.bisect_left(ends, time), steps - 1)].append(index)

        grads = [torch.zeros_like(param) for param in self.params]
        adjoint = torch.zeros_like(grad_solution[0])
        derivative_adjoint: Optional[torch.Tensor] = torch.zeros_like(grad_solution[0])
        for step in range(steps - 1, -1, -1):
            adjoint, derivative_adjoint = self._step_backward(
                step,
                starts[step],
                ends[step],
                outputs[step],
                grad_solution,
                adjoint,
                derivative_adjoint,
                grads,
            )
        after_start = adjoint.reshape(-1)
        return BackwardResult(
            after_start + grad_solution[0].reshape(-1),
            after_start,
            grads,
            dict(backward=self.name, backward_nfe=self.nfe, nodes=0),
        )

    def _last_end(self, start: float) -> float:
        t0, _, dt, attempted = self.tape.starts[-1]
        if not self.tape.adaptive:
            return float(self.solver_times[-1])
        if attempted is not None and bool(dt != attempted):
            # Clipped to a step_t or jump_t value c (in the solver's time), dt = c - t0.
            for values in (self.solver.step_t, self.solver.jump_t):
                for value in [] if values is None else values.reshape(-1).tolist():
                    if value > start and value - start == float(dt):
                        return value
        return float(torch.as_tensor(start, dtype=dt.dtype) + dt)

    def _step_backward(
        self,
        step: int,
        start: float,
        end: float,
        output_indices: list[int],
        grad_solution: torch.Tensor,
        adjoint: torch.Tensor,
        derivative_adjoint: Optional[torch.Tensor],
        grads: list[torch.Tensor],
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        tape, solver = self.tape, self.solver
        time_dtype = tape.starts[step][2].dtype
        t0 = torch.tensor(start, dtype=time_dtype, device=grad_solution.device)
        t1 = torch.tensor(end, dtype=time_dtype, device=grad_solution.device)
        first = step == 0
        with torch.enable_grad():
            y0 = self._solver_form(tape.starts[step][1]).detach().requires_grad_(True)
            inputs = [y0]
            if tape.adaptive:
                if first:
                    f0 = self.func(t0, y0)
                else:
                    # Recorded as func returned it; the solver's field is negated when t decreases.
                    f0 = self._solver_form(tape.ends[step - 1]).detach()
                    f0 = (-f0 if tape.reversed_time else f0).requires_grad_(True)
                    inputs.append(f0)
                y1, f1, _, stages = _runge_kutta_step(
                    self.func, y0, f0, t0, t1 - t0, t1, tableau=solver.tableau
                )
                interp = solver._interp_fit(y0, y1, stages, t1 - t0) if output_indices else None
                if tape.jumps[step]:
                    f1 = self.func(t1, y1, perturb=Perturb.NEXT)
                values = [
                    _interp_evaluate(interp, t0, t1, self.solver_times[index])
                    for index in output_indices
                ]
                ends = [y1, f1]
            else:
                dt = t1 - t0
                increment, f0 = solver._step_func(self.func, t0, dt, t1, y0)
                y1 = y0 + increment
                values = []
                if output_indices and solver.interp == 'cubic':
                    f1 = self.func(t1, y1)
                for index in output_indices:
                    time = self.solver_times[index]
                    if solver.interp == 'linear':
                        values.append(solver._linear_interp(t0, t1, y0, y1, time))
                    else:
                        values.append(solver._cubic_hermite_interp(t0, y0, f0, t1, y1, f1, time))
                ends = [y1]
            outputs = ends + values
            cotangents = [adjoint, derivative_adjoint] if tape.adaptive else [adjoint]
            cotangents += [grad_solution[index] for index in output_indices]
            pairs = [
                (output, cotangent)
                for output, cotangent in zip(outputs, cotangents)
                if output.requires_grad
            ]
            found: Sequence[torch.Tensor | None] = [None] * (len(inputs) + len(self.params))
            if pairs:
                found = torch.autograd.grad(
                    [pair[0] for pair in pairs],
                    inputs + list(self.params),
                    [pair[1] for pair in pairs],
                    allow_unused=True,
                )
        for total, grad in zip(grads, found[len(inputs) :]):
            if grad is not None:
                total.add_(grad)
        grad_y0 = found[0] if found[0] is not None else torch.zeros_like(adjoint)
        if tape.adaptive and not first:
            grad_f0 = found[1] if found[1] is not None else torch.zeros_like(adjoint)
        else:
            grad_f0 = None
        return grad_y0.detach(), None if grad_f0 is None else grad_f0.detach()
