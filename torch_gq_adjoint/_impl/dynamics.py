"""The right-hand sides handed to torchdiffeq: the counted forward field and the
backward ``[z, a]`` dynamics.

Both count their evaluations (so ``func`` needs no ``nfe`` attribute) and, for
adaptive methods, remember the last accepted step through torchdiffeq's
``callback_accept_step`` hook, so that the next solve can start with that step
instead of paying for a cold step-size selection.
"""

import torch

_USER_CALLBACKS = ('callback_step', 'callback_accept_step', 'callback_reject_step')


class _StepRecorder:
    """Counts evaluations; optionally records the last accepted step size."""

    def __init__(self, record_steps):
        self.nfe = 0
        self.last_step = None
        if record_steps:
            # Set per instance: torchdiffeq warns when a fixed-grid solver is given
            # a callback it never calls, so only adaptive solves get this one.
            self.callback_accept_step = self._record_step

    def _record_step(self, t0, y0, dt):
        self.last_step = dt.detach().abs()


class CountedField(_StepRecorder):
    """The forward vector field: counts calls and forwards the user's callbacks.

    Args:
        field: :class:`~torch_gq_adjoint._impl.state.FlatField`.
        record_steps: bool, record the last accepted step (adaptive methods only).
    """

    def __init__(self, field, record_steps):
        super().__init__(record_steps)
        self.field = field
        user_func = field.func
        for name in _USER_CALLBACKS:
            callback = getattr(user_func, name, None)
            if callback is None:
                continue
            if name == 'callback_accept_step' and record_steps:
                self.callback_accept_step = self._chain(self._record_step, callback)
            else:
                setattr(self, name, self._chain(None, callback))

    def _chain(self, own, user_callback):
        layout = self.field.layout

        def callback(t0, y0, dt):
            if own is not None:
                own(t0, y0, dt)
            user_callback(t0, layout.unflatten(y0), dt)
        return callback

    def __call__(self, t, y):
        self.nfe += 1
        return self.field(t, y)


class AdjointDynamics(_StepRecorder):
    """Backward dynamics of ``y = [z, a]`` (one flat vector) in the solver's time ``s``.

    In real time ``dz/dt = f(t, z)`` and ``da/dt = -aᵀ ∂f/∂z``. The solver integrates
    in ``s = direction · t``, always increasing, so that torchdiffeq needs neither its
    tuple nor its time-reversal wrappers around every evaluation (the backward pass
    makes hundreds of them when there are many observation times).

    Args:
        field: :class:`~torch_gq_adjoint._impl.state.FlatField`.
        state_size: int, ``n``, the length of ``z`` (and of ``a``).
        direction: +1.0 or -1.0, the sign of ``dt/ds``.
        record_steps: bool, record the last accepted step (adaptive methods only).
    """

    def __init__(self, field, state_size, direction, record_steps):
        super().__init__(record_steps)
        self.field = field
        self.state_size = state_size
        self.direction = direction

    def __call__(self, s, state):
        self.nfe += 1
        z, adjoint = state[:self.state_size], state[self.state_size:]
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
            return torch.cat([derivative, -vjp])
        return torch.cat([-derivative, vjp])
