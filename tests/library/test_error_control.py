"""Accuracy users need not tune: the default quadrature and fixed-grid interpolation.

With default arguments GQ's parameter gradient must be about as accurate as
torchdiffeq's adjoint at the same tolerances or step size; the paper's rule
(``gtol=C``) stays available unchanged.
"""

import math
import warnings

import pytest
import torch
import torchdiffeq
from torch import nn

from gradient_tests.problems import LinearField, SineField, gradients, measure, problem
from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl import checks, error_control
from torch_gq_adjoint._impl.interpolation import hermite

# Calls repeat at one line here: the passes 'auto' takes must not depend on timings.
pytestmark = pytest.mark.usefixtures('estimate_planning')


def test_hermite_interpolation_is_exact_for_cubics():
    grid = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    coefficients = torch.tensor([[0.5, -1.0, 2.0, 0.7], [1.0, 0.0, -3.0, 1.5]], dtype=torch.float64)

    def cubic(times):
        powers = torch.stack([times**k for k in range(4)], dim=-1)
        return powers @ coefficients.T

    def slope(times):
        powers = torch.stack(
            [k * times ** (k - 1) if k else torch.zeros_like(times) for k in range(4)], dim=-1
        )
        return powers @ coefficients.T

    query = torch.tensor([0.0, 0.05, 0.31, 0.69, 0.99, 1.0], dtype=torch.float64)
    got = hermite(grid, cubic(grid), slope(grid), query)
    assert torch.allclose(got, cubic(query), atol=1e-13)


class _SmallMLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


def _parameter_error(solve, func, reference, **kwargs):
    y0 = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], dtype=torch.float64, requires_grad=True)
    # Output times on the grid: the forward solution itself is then of the method's order.
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    got = gradients(solve, func, y0, t, **kwargs)
    keys = [key for key in reference if key not in ('y0', 'unused')]
    flat = torch.cat([got[key].reshape(-1) for key in keys])
    expected = torch.cat([reference[key].reshape(-1) for key in keys])
    return ((flat - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize(
    'method, step',
    [(method, 0.1) for method in sorted(checks.GRID_METHODS)] + [('rk4', 0.01), ('rk4', 0.002)],
)
def test_fixed_grid_gradients_are_as_accurate_as_the_adjoint(method, step):
    for func in (LinearField(), _SmallMLP()):
        y0 = torch.tensor(
            [[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], dtype=torch.float64, requires_grad=True
        )
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        reference = gradients(odeint, func, y0, t, rtol=1e-12, atol=1e-12)
        settings = dict(method=method, options=dict(step_size=step))
        gq = _parameter_error(odeint_adjoint_gq, func, reference, **settings)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # implicit Adams' convergence warnings
            adjoint = _parameter_error(torchdiffeq.odeint_adjoint, func, reference, **settings)
        assert gq <= 3 * adjoint + 1e-12, (type(func).__name__, gq, adjoint)


@pytest.mark.parametrize('name', ['constant', 'linear', 'sine', 'linear system', 'tanh MLP 1e-8'])
def test_the_estimated_default_is_as_accurate_as_the_adjoint(name, estimate_planning):
    # By estimate the checkpoint is taken only at under half the quadrature's price: on
    # these small problems 'auto' takes a quadrature pass, of the adjoint's accuracy.
    ran = {}
    errors = measure(problem(name), ran=ran)
    assert ran['gq default'] != 'checkpoint'
    assert errors['gq default'] <= 2 * errors['adjoint'] + 1e-14, errors


@pytest.mark.parametrize('name', ['linear', 'sine', 'tanh MLP 1e-8'])
def test_a_settled_default_is_as_accurate_as_direct_backprop_or_the_adjoint(name):
    # Measured, the plan may settle on the checkpoint (tolerances at most 1e-5 admit it):
    # then its gradient is direct backprop's, error and all; otherwise the adjoint's.
    task = problem(name)
    ran = {}
    errors = measure(task, settle=True, ran=ran)
    reference = task.reference().to(task.dtype)
    direct = task.gradient(torchdiffeq.odeint, **task.tolerances)
    direct_error = float((direct - reference).norm() / reference.norm())
    if ran['gq default'] == 'checkpoint':
        assert errors['gq default'] == pytest.approx(direct_error, rel=0.05), errors
    else:
        assert errors['gq default'] <= 2 * errors['adjoint'] + 1e-14, (ran, errors)


def test_the_papers_rule_is_unchanged_and_can_be_far_less_accurate():
    errors = measure(problem('sine'))
    # gtol = 0.1 gives one node per interval here: the paper's rule, not a tolerance.
    assert errors['gq gtol=0.1'] > 100 * errors['gq default']


def _chosen_counts(monkeypatch, func):
    counts = []
    original = error_control.ControlledQuadrature._correct

    def record(self, intervals):
        counts.extend(len(interval.rules[interval.chosen].times) for interval in intervals)
        return original(self, intervals)

    monkeypatch.setattr(error_control.ControlledQuadrature, '_correct', record)
    y0 = torch.ones(1, 3, dtype=torch.float64)
    odeint_adjoint_gq(
        func, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), rtol=1e-8, atol=1e-8
    )[-1].sum().backward()
    return counts


def test_rougher_integrands_get_more_nodes(monkeypatch):
    smooth, rough = SineField(), SineField()
    with torch.no_grad():
        smooth.omega.fill_(0.5)
        rough.omega.fill_(8.0)
    (smooth_count,) = _chosen_counts(monkeypatch, smooth)
    (rough_count,) = _chosen_counts(monkeypatch, rough)
    assert rough_count >= 2 * smooth_count


class _FloatTime(nn.Module):
    """A field that reads ``t`` as a Python number, as many users' fields do."""

    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor([-0.5, 0.3], dtype=torch.float64))

    def forward(self, t, z):
        return self.rate * z * (1.0 + 0.1 * math.sin(float(t)))


def test_float_t_in_func_gets_one_warning_that_says_what_it_means():
    func = _FloatTime()
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(2):
            loss = odeint_adjoint_gq(func, y0, t, backward='restart').sum()
            torch.autograd.grad(loss, list(func.parameters()))
    messages = [str(warning.message) for warning in caught]
    assert not any('requires_grad=True to a scalar' in message for message in messages)
    ours = [w for w in caught if 'func turns t into a Python number' in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__
