"""The right-hand sides handed to torchdiffeq: the counted forward field and the
backward ``[z, a]`` dynamics.

Both count their evaluations (so ``func`` needs no ``nfe`` attribute) and, for
adaptive methods, remember the last accepted step through torchdiffeq's
``callback_accept_step`` hook, so that the next solve can start with that step
instead of paying for a cold step-size selection. Both pass the user's step
callbacks on: ``callback_*`` in the forward solve, ``callback_*_adjoint`` in the
backward solves, with the arguments torchdiffeq's own adjoint gives them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

if TYPE_CHECKING:
    from .state import FlatField, StateLayout

#: A step callback: ``(t0, y0, dt)``.
Callback = Callable[[Any, Any, Any], Any]

#: torchdiffeq's step callbacks (the adjoint's carry the suffix ``_adjoint``).
CALLBACKS = ('callback_step', 'callback_accept_step', 'callback_reject_step')


class StepRecorder:
    """Counts evaluations; optionally records the last accepted step size and counts the
    accepted steps (:attr:`accepted`)."""

    def __init__(self, record_steps: bool) -> None:
        self.nfe = 0
        self.accepted = 0
        self.last_step: Optional[torch.Tensor] = None
        self._record_steps = record_steps

    def _record_step(self, t0: Any, y0: Any, dt: torch.Tensor) -> None:
        self.accepted += 1
        self.last_step = dt.detach().abs()

    def _install_callbacks(
        self, user_callbacks: dict[str, Callback], wrap: Callable[[Callback], Callback]
    ) -> None:
        """Set ``callback_*`` attributes: ours (step recording) chained with the user's.

        Attributes are set per instance and only where needed: torchdiffeq warns when a
        solver is given a callback it never calls (fixed-grid solvers call only
        ``callback_step``).
        """
        own: dict[str, Optional[Callback]] = (
            {'callback_accept_step': self._record_step} if self._record_steps else {}
        )
        for name, callback in self._own_callbacks().items():
            own[name] = _chain(own.get(name), callback)
        for name in CALLBACKS:
            mine, theirs = own.get(name), user_callbacks.get(name)
            if mine is None and theirs is None:
                continue
            setattr(self, name, _chain(mine, None if theirs is None else wrap(theirs)))

    def _own_callbacks(self) -> dict[str, Callback]:
        return {}


def _chain(first: Optional[Callback], second: Optional[Callback]) -> Optional[Callback]:
    if second is None:
        return first
    if first is None:
        return second

    def callback(t0: Any, y0: Any, dt: Any) -> None:
        first(t0, y0, dt)
        second(t0, y0, dt)

    return callback


class CountedField(StepRecorder):
    """The forward vector field: the user's ``func`` unchanged, with its calls counted.

    torchdiffeq sees the user's state structure (tensor or tuple) and calls this exactly
    as it would call ``func``, so the forward solve takes the same steps as
    :func:`torchdiffeq.odeint` and returns the same values, bit for bit.

    Args:
        func: the user's ``func(t, y)``.
        record_steps: bool, record the last accepted step (adaptive methods only).
        tape: optional :class:`~torch_gq_adjoint._impl.checkpoint.ForwardTape` that
            records the steps for the checkpointed backward pass.
        layout: optional :class:`~torch_gq_adjoint._impl.state.StateLayout`; the first
            evaluation's output is checked against it (a clear error instead of
            torchdiffeq's broadcasting failure a few operations later).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        record_steps: bool,
        tape: Any = None,
        layout: Optional[StateLayout] = None,
    ) -> None:
        super().__init__(record_steps)
        self.func = func
        self.tape = tape
        self.layout = layout
        callbacks = {
            name: getattr(func, name) for name in CALLBACKS if getattr(func, name, None) is not None
        }
        # torchdiffeq already hands callbacks the user's time and state structure.
        self._install_callbacks(callbacks, wrap=lambda callback: callback)

    def _own_callbacks(self) -> dict[str, Callback]:
        if self.tape is None:
            return {}
        own = {'callback_step': self.tape.on_step}
        if self.tape.adaptive:
            own['callback_accept_step'] = self.tape.on_accept
        return own

    def __call__(self, t: torch.Tensor, y: Any) -> Any:
        self.nfe += 1
        output = self.func(t, y)
        if self.nfe == 1 and self.layout is not None:
            self.layout.check(output, 'func(t, y)')
        if self.tape is not None:
            self.tape.on_evaluation(output)
        return output


class AdjointDynamics(StepRecorder):
    """Backward dynamics of ``y = [z, a]`` (one flat vector) in the solver's time ``s``.

    In real time ``dz/dt = f(t, z)`` and ``da/dt = -aᵀ ∂f/∂z``. The solver integrates
    in ``s = direction · t``, always increasing, so that torchdiffeq needs neither its
    tuple nor its time-reversal wrappers around every evaluation (the backward pass
    makes hundreds of them when there are many observation times).

    The user's ``callback_step_adjoint``, ``callback_accept_step_adjoint`` and
    ``callback_reject_step_adjoint`` are called as torchdiffeq's adjoint calls them:
    ``(time, (t_placeholder, z, a), dt)``, with ``time = -s`` (real time for increasing
    ``t``), ``z`` and ``a`` in ``y0``'s shape (flat for a tuple ``y0``), and no parameter
    entries (GQ has none in its state).

    Args:
        field: :class:`~torch_gq_adjoint._impl.state.FlatField`.
        state_size: int, ``n``, the length of ``z`` (and of ``a``).
        direction: +1.0 or -1.0, the sign of ``dt/ds``.
        record_steps: bool, record the last accepted step (adaptive methods only).
        record_grid: bool, record ``(s, y, dy/ds)`` at the start of every step
            (fixed-grid methods: the data of a cubic Hermite interpolant).
    """

    def __init__(
        self,
        field: FlatField,
        state_size: int,
        direction: float,
        record_steps: bool,
        record_grid: bool = False,
    ) -> None:
        super().__init__(record_steps)
        self.field = field
        self.state_size = state_size
        self.direction = direction
        self._record_grid = record_grid
        self._step_start: Optional[torch.Tensor] = None
        self._step_time: Optional[torch.Tensor] = None
        self.grid: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
        user = field.func
        callbacks = {
            name: getattr(user, name + '_adjoint')
            for name in CALLBACKS
            if getattr(user, name + '_adjoint', None) is not None
        }
        self._install_callbacks(callbacks, wrap=self._adjoint_callback)

    def _own_callbacks(self) -> dict[str, Callback]:
        return {'callback_step': self._mark_step_start} if self._record_grid else {}

    def _mark_step_start(self, s0: torch.Tensor, y0: torch.Tensor, ds: Any) -> None:
        # Every fixed-grid step evaluates f at its start state first; that evaluation
        # (recognised by the very tensor torchdiffeq passes here) is recorded in __call__.
        self._step_start, self._step_time = y0, s0.detach()

    def _adjoint_callback(self, callback: Callback) -> Callback:
        size = self.state_size
        layout = self.field.layout
        # torchdiffeq's adjoint state holds y in y0's shape, or flat for a tuple y0.
        shape: Callable[[torch.Tensor], Any] = (
            (lambda flat: flat) if layout.is_tuple else layout.unflatten
        )

        def adjoint_callback(s0: torch.Tensor, y0: torch.Tensor, ds: Any) -> None:
            placeholder = torch.zeros((), dtype=y0.dtype, device=y0.device)
            callback(-s0, (placeholder, shape(y0[:size]), shape(y0[size:])), ds)

        return adjoint_callback

    def start_interval(self) -> None:
        """Forget the grid recorded for the previous interval."""
        self.grid = []
        self._step_start = None

    def __call__(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        z, adjoint = state[: self.state_size], state[self.state_size :]
        t = s.detach() * self.direction
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            derivative = self.field(t, z)
            if derivative.requires_grad:
                (vjp,) = torch.autograd.grad(derivative, z, adjoint, allow_unused=True)
            else:
                vjp = None
        derivative = derivative.detach()
        if vjp is None:
            # f does not depend on z (or on anything that requires grad).
            vjp = torch.zeros_like(adjoint)
        if self.direction > 0:
            result = torch.cat([derivative, -vjp])
        else:
            result = torch.cat([-derivative, vjp])
        if self._step_start is not None and state is self._step_start:
            self.grid.append((self._step_time, state, result))
            self._step_start = None
        return result
