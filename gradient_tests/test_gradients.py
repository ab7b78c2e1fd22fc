"""The gradient checks of :mod:`gradient_tests.checks` as tests, and the gradient
properties beyond them: finite differences (gradcheck), unused parameters, tuple states,
decreasing and partial time gradients, and counting a user's own evaluations."""

import pytest
import torch
from torch import nn

from gradient_tests import checks
from gradient_tests.__main__ import main as gradient_tests_main
from gradient_tests.checks import all_checks, run
from gradient_tests.problems import (
    PROBLEMS,
    ConstantField,
    CountingMixin,
    LinearField,
    SineField,
    exact_gradients,
    gradients,
    loss_of,
)
from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl.checkpoint import CHECKPOINT_METHODS
from torch_gq_adjoint._impl.checks import METHODS
from torch_gq_adjoint._impl.choice import BACKWARDS

Y0 = [[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]]


def _initial_state():
    return torch.tensor(Y0, dtype=torch.float64, requires_grad=True)


def _max_difference(first, second, keys):
    return max((first[key] - second[key]).abs().max().item() for key in keys)


# gradcheck of the checkpointed backward, method by method (the one-step methods it
# covers; the Adams methods and scipy_solver restart, and are checked above and below).
# Fixed-grid methods are differentiated exactly; adaptive ones up to how the step sizes
# react to the inputs (finite differences see it, the checkpoint holds them fixed),
# which shrinks with the tolerance.
GRADCHECK_SETTINGS = {
    'dopri5': (dict(rtol=1e-10, atol=1e-10), 1e-6),
    'dopri8': (dict(rtol=1e-7, atol=1e-7), 1e-4),
    'bosh3': (dict(rtol=1e-10, atol=1e-10), 1e-4),
    'fehlberg2': (dict(rtol=1e-8, atol=1e-8), 1e-4),
    'adaptive_heun': (dict(rtol=1e-6, atol=1e-6), 1e-4),
    'euler': (dict(options=dict(step_size=0.05)), 1e-6),
    'midpoint': (dict(options=dict(step_size=0.05)), 1e-6),
    'heun2': (dict(options=dict(step_size=0.05)), 1e-6),
    'heun3': (dict(options=dict(step_size=0.05)), 1e-6),
    'rk4': (dict(options=dict(step_size=0.05)), 1e-6),
}


def test_gradcheck_covers_every_checkpoint_method():
    assert set(GRADCHECK_SETTINGS) == CHECKPOINT_METHODS


@pytest.mark.parametrize('method', sorted(GRADCHECK_SETTINGS))
def test_checkpoint_gradcheck(method):
    """The checkpointed gradient is the derivative of the forward map (finite differences)."""
    settings, tolerance = GRADCHECK_SETTINGS[method]
    t = torch.linspace(0, 0.5, 3, dtype=torch.float64)

    def solve(y0, matrix):
        # adjoint_params: the matrix itself, so that gradcheck differentiates it.
        return odeint_adjoint_gq(
            lambda time, z: z @ matrix.T,
            y0,
            t,
            method=method,
            backward='checkpoint',
            adjoint_params=(matrix,),
            **settings,
        )

    matrix = LinearField().matrix.detach().clone().requires_grad_(True)
    # fast_mode checks random projections of the Jacobian: the same check, far fewer solves.
    # gradcheck also runs the backward pass twice: the first goes through the forward's
    # kept graph and frees it, the second recomputes the steps (the same gradient, to
    # rounding), hence nondet_tol.
    assert torch.autograd.gradcheck(
        solve, (_initial_state(), matrix), atol=tolerance, fast_mode=True, nondet_tol=1e-12
    )


@pytest.mark.parametrize('check', all_checks(), ids=lambda check: check.name)
def test_check(check):
    """Each check of ``python -m gradient_tests``, one test each."""
    outcome = run(check)
    failing = {name: value for name, value in outcome.errors.items() if not value[0] <= value[1]}
    assert outcome.passed, failing
    assert set(outcome.errors) >= {'closed form', 'unused'}


def test_every_method_and_backward_pass_is_checked():
    checks = all_checks()
    assert {check.method for check in checks} == set(METHODS)
    assert {check.backward for check in checks} == set(BACKWARDS)
    assert len(checks) == len(set(checks))


def test_the_command_prints_a_row_per_check_and_fails_on_a_failure(capsys, monkeypatch):
    assert gradient_tests_main(['--method', 'dopri5', '--backward', 'interpolated']) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith('dopri5')]
    assert len(rows) == 2 * len(PROBLEMS) and all(row.endswith('pass') for row in rows)
    assert lines[-1] == f'{2 * len(PROBLEMS)} of {2 * len(PROBLEMS)} checks passed'
    # A bound no solver meets: the same command fails, and names the check.
    settings = dict(checks.METHOD_SETTINGS)
    settings['dopri5'] = (settings['dopri5'][0], 1e-30, 1e-30, 1e-30)
    monkeypatch.setattr(checks, 'METHOD_SETTINGS', settings)
    assert gradient_tests_main(['--method', 'dopri5', '--backward', 'interpolated']) == 1
    output = capsys.readouterr().out
    count = 2 * len(PROBLEMS)
    assert (
        'FAIL' in output and f'0 of {count} checks passed; failed: dopri5-constant-no_t' in output
    )


def test_the_command_refuses_a_selection_with_no_check(capsys):
    with pytest.raises(SystemExit) as raised:
        gradient_tests_main(['--method', 'rk4', '--backward', 'checkpoint'])
    assert raised.value.code == 2
    assert 'no check has that method and backward pass' in capsys.readouterr().err


def test_gq_gradcheck_dopri5():
    """The GQ gradient is the derivative of the (tightly solved) forward map."""
    func = SineField()
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64, requires_grad=True)

    def solve(y0, times):
        return odeint_adjoint_gq(func, y0, times, rtol=1e-10, atol=1e-10, gtol=2.0)

    assert torch.autograd.gradcheck(
        solve, (_initial_state(), t), atol=1e-6, rtol=1e-5, fast_mode=True
    )


def test_unused_parameter_gets_a_zero_tensor():
    func = ConstantField()
    y0 = _initial_state()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    loss = loss_of(odeint_adjoint_gq(func, y0, t))
    # allow_unused is not needed: GQ returns a tensor of zeros, not None.
    (grad_unused,) = torch.autograd.grad(loss, [func.unused])
    assert torch.equal(grad_unused, torch.zeros_like(func.unused))


class _TupleLinear(nn.Module):
    """The linear problem with its state split into a (2, 2) and a (2, 1) tensor."""

    def __init__(self):
        super().__init__()
        self.inner = LinearField()

    def forward(self, t, state):
        first, second = state
        derivative = self.inner(t, torch.cat([first, second], dim=-1))
        return derivative[:, :2], derivative[:, 2:]


def test_tuple_state_matches_flat_state():
    tuple_func = _TupleLinear()
    y0 = _initial_state()
    t = torch.linspace(0, 1, 4, dtype=torch.float64, requires_grad=True)
    parts = (y0[:, :2], y0[:, 2:])
    solution = odeint_adjoint_gq(tuple_func, parts, t, rtol=1e-10, atol=1e-10, gtol=1.0)
    assert isinstance(solution, tuple) and len(solution) == 2
    assert solution[0].shape == (4, 2, 2) and solution[1].shape == (4, 2, 1)
    loss = loss_of(torch.cat(solution, dim=-1))
    grads = torch.autograd.grad(loss, [y0, t, tuple_func.inner.matrix])
    exact = exact_gradients(tuple_func.inner, y0, t)
    for grad, key in zip(grads, ['y0', 't', 'matrix']):
        assert (grad - exact[key]).abs().max().item() < 1e-7


def test_decreasing_times():
    func = SineField()
    y0 = _initial_state()
    t = torch.tensor([1.0, 0.6, 0.1, -0.3], dtype=torch.float64, requires_grad=True)
    gq = gradients(odeint_adjoint_gq, func, y0, t, rtol=1e-10, atol=1e-10, gtol=1.0)
    exact = exact_gradients(func, y0, t)
    assert _max_difference(gq, exact, gq) < 1e-7


def test_partial_time_gradients():
    """Only some entries of t need a gradient: t built from a leaf that does."""
    func = LinearField()
    y0 = _initial_state()
    end = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    t = torch.stack(
        [torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), end]
    )
    loss = loss_of(odeint_adjoint_gq(func, y0, t, rtol=1e-10, atol=1e-10, gtol=1.0))
    (grad_end,) = torch.autograd.grad(loss, [end])
    reference_loss = loss_of(odeint(func, y0, t, rtol=1e-10, atol=1e-10))
    (reference,) = torch.autograd.grad(reference_loss, [end])
    assert abs(grad_end.item() - reference.item()) < 1e-5 * max(1.0, abs(reference.item()))


class _CountingLinear(CountingMixin, LinearField):
    """A user's own counter in forward, as the paper's code had."""


def test_module_without_nfe_and_user_counter_still_counts():
    plain = LinearField()
    assert not hasattr(plain, 'nfe')
    y0 = _initial_state()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    loss_of(odeint_adjoint_gq(plain, y0, t)).backward()
    assert plain.matrix.grad is not None and plain.matrix.grad.abs().sum() > 0

    counting = _CountingLinear()
    solution = odeint_adjoint_gq(counting, y0.detach(), t)
    forward_calls = counting.calls
    reference_calls = _CountingLinear()
    odeint(reference_calls, y0.detach(), t)
    assert forward_calls == reference_calls.calls > 0
    loss_of(solution).backward()
    assert counting.calls > forward_calls
