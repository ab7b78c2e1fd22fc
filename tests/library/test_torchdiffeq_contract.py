"""The torchdiffeq details the GQ adjoint leans on; these fail if an upgrade changes them.

requirements.txt pins torchdiffeq==0.2.5; before raising the pin, run these.
"""

import torch
import torchdiffeq
from torchdiffeq._impl.odeint import SOLVERS

from torch_gq_adjoint._impl import checks


def test_method_table_matches_torchdiffeq():
    assert set(checks.METHODS) == set(SOLVERS)


def test_adaptive_methods_are_those_with_step_size_control():
    from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver

    adaptive = {
        name for name, solver in SOLVERS.items() if issubclass(solver, RKAdaptiveStepsizeODESolver)
    }
    assert adaptive == set(checks.ADAPTIVE_METHODS)


class _Recorder:
    def __init__(self):
        self.accepted = []
        self.attempted = []

    def __call__(self, t, y):
        return -y

    def callback_step(self, t0, y0, dt):
        self.attempted.append(float(dt))

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append(float(dt))


def test_accept_step_callback_reports_positive_step_sizes_both_ways():
    for t in (torch.tensor([0.0, 2.0]), torch.tensor([2.0, 0.0])):
        recorder = _Recorder()
        torchdiffeq.odeint(recorder, torch.ones(2), t, method='dopri5', rtol=1e-6, atol=1e-6)
        assert recorder.accepted and all(dt > 0 for dt in recorder.accepted)
        # the accepted steps cover the interval
        assert sum(recorder.accepted) >= 2.0


def test_first_step_option_sets_the_first_attempted_step():
    recorder = _Recorder()
    torchdiffeq.odeint(
        recorder,
        torch.ones(2),
        torch.tensor([0.0, 1.0]),
        method='dopri5',
        options=dict(first_step=0.125),
    )
    assert recorder.attempted[0] == 0.125


def test_dense_output_between_steps_is_accurate():
    # GQ reads z and a at quadrature nodes off the solver's interpolant.
    t = torch.tensor([0.0, 0.1234, 0.5, 0.91, 1.0], dtype=torch.float64)
    solution = torchdiffeq.odeint(
        lambda time, y: -y,
        torch.ones(1, dtype=torch.float64),
        t,
        method='dopri5',
        rtol=1e-10,
        atol=1e-10,
    )
    assert torch.allclose(solution[:, 0], torch.exp(-t), atol=1e-8)


class _GridRecorder:
    """Checks that each fixed-grid step evaluates f at its very start state first."""

    def __init__(self):
        self.starts = []
        self.first_calls_at_start = 0
        self._pending = None

    def __call__(self, t, y):
        if self._pending is not None:
            self.first_calls_at_start += int(y is self._pending)
            self._pending = None
        return -y

    def callback_step(self, t0, y0, dt):
        self.starts.append(float(t0))
        self._pending = y0


def test_fixed_grid_steps_evaluate_their_start_state_first():
    # The GQ backward pass records (s, y, dy/ds) at every grid point this way, for its
    # cubic Hermite interpolant of a fixed-grid solve.
    for method in sorted(checks.GRID_METHODS):
        recorder = _GridRecorder()
        torchdiffeq.odeint(
            recorder,
            torch.ones(2, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method=method,
            options=dict(step_size=0.125),
        )
        assert len(recorder.starts) == 8, method
        assert recorder.first_calls_at_start == 8, method


def test_fixed_grid_output_at_a_grid_point_is_the_grid_state():
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    solution = torchdiffeq.odeint(
        lambda time, y: -y,
        torch.ones(1, dtype=torch.float64),
        t,
        method='euler',
        options=dict(step_size=0.25),
    )
    assert solution[-1].item() == 0.75**2  # two Euler steps, no interpolation


def test_the_private_pieces_the_checkpointed_backward_rebuilds_steps_with():
    # backward='checkpoint' builds the very solver odeint builds and recomputes each
    # accepted step with these; tests/library/test_checkpoint.py checks the values bit for bit.
    import inspect

    from torchdiffeq._impl.fixed_grid import FixedGridODESolver
    from torchdiffeq._impl.interp import _interp_evaluate
    from torchdiffeq._impl.misc import Perturb, _check_inputs
    from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver, _runge_kutta_step

    assert list(inspect.signature(_check_inputs).parameters) == [
        'func',
        'y0',
        't',
        'rtol',
        'atol',
        'method',
        'options',
        'event_fn',
        'SOLVERS',
    ]
    assert (
        len(
            _check_inputs(
                lambda t, y: y,
                torch.ones(1),
                torch.tensor([0.0, 1.0]),
                1e-3,
                1e-3,
                'dopri5',
                None,
                None,
                SOLVERS,
            )
        )
        == 10
    )
    assert list(inspect.signature(_runge_kutta_step).parameters) == [
        'func',
        'y0',
        'f0',
        't0',
        'dt',
        't1',
        'tableau',
    ]
    assert list(inspect.signature(_interp_evaluate).parameters) == ['coefficients', 't0', 't1', 't']
    assert hasattr(Perturb, 'NEXT') and hasattr(Perturb, 'PREV')
    for name in ('_interp_fit', '_adaptive_step'):
        assert hasattr(RKAdaptiveStepsizeODESolver, name)
    for name in ('_step_func', '_linear_interp', '_cubic_hermite_interp'):
        assert hasattr(FixedGridODESolver, name)
    solver = SOLVERS['dopri5'](
        func=lambda t, y: y, y0=torch.ones(1), rtol=1e-3, atol=1e-3, norm=lambda x: x.abs().max()
    )
    assert hasattr(solver, 'tableau') and solver.step_t is None and solver.jump_t is None


class _StageRecorder:
    """Counts evaluations between each step's start and its acceptance."""

    def __init__(self):
        self.evaluations = 0
        self.first = None
        self.per_accepted_step = []
        self.after_jump = []

    def __call__(self, t, y):
        self.evaluations += 1
        if self.first is None:
            self.first = float(t)
        self.after_jump.append(float(t))
        return torch.where(t < 0.5, -y, -2 * y)

    def callback_step(self, t0, y0, dt):
        self.evaluations = 0

    def callback_accept_step(self, t0, y0, dt):
        self.per_accepted_step.append(self.evaluations)


def test_the_pieces_the_interpolating_backward_rebuilds_the_dense_output_with():
    # backward='interpolated' keeps the evaluations each accepted step makes between
    # callback_step and callback_accept_step (its stages, in order), and the solve's
    # first evaluation f(t0, y0), and fits the step's polynomial with the solver class's
    # mid and tableau.c_sol and _interp_fit; tests/library/test_interpolated.py checks the
    # result against odeint's outputs.
    import inspect

    from torchdiffeq._impl.interp import _interp_fit

    assert list(inspect.signature(_interp_fit).parameters) == [
        'y0',
        'y1',
        'y_mid',
        'f0',
        'f1',
        'dt',
    ]
    for method in sorted(checks.ADAPTIVE_METHODS):
        solver = SOLVERS[method]
        assert solver.mid.shape == solver.tableau.c_sol.shape, method
        recorder = _StageRecorder()
        torchdiffeq.odeint(
            recorder,
            torch.ones(2, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method=method,
            rtol=1e-6,
            atol=1e-6,
        )
        assert recorder.first == 0.0
        assert set(recorder.per_accepted_step) == {len(solver.tableau.alpha)}, method


def test_jump_t_ends_a_step_there_and_evaluates_its_far_side():
    # The interpolating backward hands the loss gradients' times to the solver as jump_t.
    recorder = _StageRecorder()
    accepted = []
    recorder.callback_accept_step = lambda t0, y0, dt: accepted.append(float(t0 + dt))
    torchdiffeq.odeint(
        recorder,
        torch.ones(2, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        method='dopri5',
        rtol=1e-6,
        atol=1e-6,
        options=dict(jump_t=torch.tensor([0.5])),
    )
    assert 0.5 in accepted
    after = [time for time in recorder.after_jump if time > 0.5]
    assert after and min(after) == torch.nextafter(
        torch.tensor(0.5, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    )
