"""The interpolating backward pass (``backward='interpolated'``): the adjoint alone, the
state read off the forward's steps, against closed forms, direct backprop and
torchdiffeq's adjoint."""

import math
import warnings

import pytest
import torch
import torchdiffeq
from torch import nn

from gradient_tests.problems import (
    PROBLEMS,
    SecondOrderField,
    exact_gradients,
    exact_solution,
    gradients,
    loss_of,
    problem,
    sine_series,
)
from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq
from torch_gq_adjoint._impl import backward_solves, interpolated
from torch_gq_adjoint._impl.checkpoint import ForwardTape
from torch_gq_adjoint._impl.checks import ADAPTIVE_METHODS
from torch_gq_adjoint._impl.dynamics import CountedField
from torch_gq_adjoint._impl.state import FlatField, StateLayout

FLOAT64 = dict(dtype=torch.float64)


def _relative(found, expected):
    found = torch.cat([value.reshape(-1) for value in found.values()])
    expected = torch.cat([value.reshape(-1) for value in expected.values()])
    return ((found - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize('name', sorted(PROBLEMS))
@pytest.mark.parametrize('times', [(0.0, 0.4, 1.1, 2.0), (2.0, 1.5, 0.0)])
def test_gradients_match_the_closed_form(name, times):
    func = PROBLEMS[name]()
    y0 = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], **FLOAT64, requires_grad=True)
    t = torch.tensor(times, **FLOAT64, requires_grad=True)
    info = {}
    found = gradients(
        odeint_adjoint_gq, func, y0, t, rtol=1e-9, atol=1e-9, backward='interpolated', info=info
    )
    assert info['backward'] == 'interpolated'
    exact = exact_gradients(func, y0, t)
    for key in exact:
        scale = exact[key].abs().max().item() + 1e-12
        assert (found[key] - exact[key]).abs().max().item() < 1e-7 * scale, key


def _tight_reference(func, y0, t):
    return gradients(odeint, func, y0, t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('tolerance', [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize('name', ['linear', 'sine'])
@pytest.mark.parametrize('count', [2, 8])
def test_error_is_at_most_twice_the_adjoints_at_every_tolerance(tolerance, name, count):
    func = PROBLEMS[name]()
    torch.manual_seed(count)
    y0 = torch.randn(4, 3, **FLOAT64, requires_grad=True)
    t = torch.linspace(0, 2, count, **FLOAT64)
    reference = _tight_reference(func, y0, t)
    settings = dict(rtol=tolerance, atol=tolerance)
    found = _relative(
        gradients(odeint_adjoint_gq, func, y0, t, backward='interpolated', **settings), reference
    )
    adjoint = _relative(gradients(odeint_adjoint, func, y0, t, **settings), reference)
    assert found <= 2 * adjoint + 1e-14, (found, adjoint)


@pytest.mark.parametrize('name', ['sine', 'linear system', 'tanh MLP 1e-8'])
def test_error_is_at_most_twice_the_adjoints_on_the_accuracy_problems(name):
    case = problem(name)
    reference = case.reference()

    def error(solve):
        found = case.gradient(solve, **case.tolerances)
        return ((found - reference).norm() / reference.norm()).item()

    found = error(
        lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, backward='interpolated', **kw)
    )
    assert found <= 2 * error(odeint_adjoint) + 1e-14


class _Coupled(nn.Module):
    """A tuple state whose parts drive each other, time dependent, mixing the samples
    (the mean over the batch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    def forward(self, t, state):
        z, w = state
        return (
            self.net(z) * torch.cos(t) + z.mean(0) * 0.1,
            (z**2).sum(-1, keepdim=True) * w * 0.1,
        )


@pytest.mark.parametrize('method', sorted(ADAPTIVE_METHODS))
def test_tuple_states_time_gradients_and_every_adaptive_method(method):
    func = _Coupled()
    torch.manual_seed(1)
    y0 = (
        torch.randn(5, 3, **FLOAT64, requires_grad=True),
        torch.randn(5, 1, **FLOAT64, requires_grad=True),
    )
    t = torch.tensor([0.0, 0.3, 1.1, 1.2, 2.0], **FLOAT64, requires_grad=True)
    inputs = list(y0) + [t] + list(func.parameters())

    def grads(solve, **kwargs):
        z, w = solve(func, y0, t, **kwargs)
        loss = (z**2).sum() + w[2:].sum()  # t[1] carries no loss gradient
        return torch.autograd.grad(loss, inputs)

    direct = grads(odeint, rtol=1e-11, atol=1e-11, method='dopri5')
    settings = dict(rtol=1e-7, atol=1e-7, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no fall back
        found = grads(odeint_adjoint_gq, backward='interpolated', **settings)
    adjoint = grads(odeint_adjoint, **settings)

    def error(values):
        return max(
            ((value - expected).norm() / expected.norm()).item()
            for value, expected in zip(values, direct)
        )

    assert error(found) < 1e-3
    assert error(found) <= 2 * error(adjoint)


class _Ball(nn.Module):
    def __init__(self):
        super().__init__()
        self.gravity = nn.Parameter(torch.tensor(9.8, **FLOAT64))
        self.drag = nn.Parameter(torch.tensor(0.1, **FLOAT64))

    def forward(self, t, state):
        return torch.stack([state[1], -self.gravity - self.drag * state[1]])


def test_gradients_through_an_event_time_equal_direct_backprop():
    ball = _Ball()

    def grads(solve, **kwargs):
        y0 = torch.tensor([10.0, 0.0], **FLOAT64, requires_grad=True)
        event_t, solution = torchdiffeq.odeint_event(
            ball,
            y0,
            torch.tensor(0.0, **FLOAT64),
            event_fn=lambda t, y: y[0],
            odeint_interface=solve,
            **kwargs,
        )
        loss = event_t + solution[-1, 1] ** 2
        return torch.autograd.grad(loss, [y0, ball.gravity, ball.drag])

    direct = grads(odeint, rtol=1e-11, atol=1e-11)
    found = grads(odeint_adjoint_gq, rtol=1e-8, atol=1e-8, backward='interpolated')
    for value, expected in zip(found, direct):
        assert (value - expected).abs().max() < 1e-6 * (expected.abs().max() + 1)


def test_one_backward_solve_without_restarts(monkeypatch):
    calls = []
    original = backward_solves.torchdiffeq.odeint

    def counting(func, y0, t, **kwargs):
        calls.append(kwargs.get('options', {}).get('jump_t'))
        return original(func, y0, t, **kwargs)

    field = SecondOrderField(32)
    initial, times, values = sine_series(6, 20, seed=0)
    y0 = initial.requires_grad_(True)
    solution = odeint_adjoint_gq(field, y0, times, rtol=1e-4, atol=1e-4, backward='interpolated')
    monkeypatch.setattr(backward_solves.torchdiffeq, 'odeint', counting)
    loss = (solution[..., 0].T - values).pow(2).mean()
    loss.backward()
    # One solve, and each of the 18 interior times with a loss gradient is a jump.
    assert len(calls) == 1 and len(calls[0]) == 18


def test_output_times_without_a_loss_gradient_are_not_jumps(monkeypatch):
    seen = []
    original = interpolated._with_jumps

    def spying(options, jump_times):
        seen.append(len(jump_times))
        return original(options, jump_times)

    monkeypatch.setattr(interpolated, '_with_jumps', spying)
    func = PROBLEMS['linear']()
    y0 = torch.ones(1, 3, **FLOAT64, requires_grad=True)
    t = torch.linspace(0, 1, 7, **FLOAT64)
    solution = odeint_adjoint_gq(func, y0, t, backward='interpolated')
    (solution[3].sum() + solution[-1].sum()).backward()
    assert seen == [1]  # t[3] only; t[-1] starts the solve


def test_fewer_backward_evaluations_than_restarting_with_many_times():
    field = SecondOrderField(32)
    initial, times, values = sine_series(6, 30, seed=1)
    counts = {}
    for backward in ('interpolated', 'restart'):
        info = {}
        solution = odeint_adjoint_gq(
            field, initial, times, rtol=1e-3, atol=1e-3, backward=backward, info=info
        )
        (solution[..., 0].T - values).pow(2).mean().backward()
        counts[backward] = info['backward_nfe']
    assert counts['interpolated'] < 0.6 * counts['restart'], counts


def _tape(func, y0, t, method='dopri5', **kwargs):
    layout = StateLayout((y0,), False)
    tape = ForwardTape(True, bool(t[0] > t[-1]), 2**30, keep_stages=True)
    counted = CountedField(func, True, tape, layout)
    solution = torchdiffeq.odeint(counted, y0, t, method=method, **kwargs)
    return tape, layout, solution


@pytest.mark.parametrize('method', sorted(ADAPTIVE_METHODS))
@pytest.mark.parametrize('decreasing', [False, True])
def test_the_dense_output_is_the_solvers_own(method, decreasing):
    func = PROBLEMS['sine']()
    y0 = torch.tensor([[1.0, -0.5, 0.3]], **FLOAT64)
    t = torch.tensor([0.0, 0.17, 0.5, 0.93, 1.4, 2.0], **FLOAT64)
    t = t.flip(0) if decreasing else t
    with torch.no_grad():
        tape, layout, solution = _tape(func, y0, t, method=method, rtol=1e-4, atol=1e-4)
    dense = interpolated.DenseForward(tape, layout, method)
    forward_time = -t if decreasing else t
    # The rebuilt polynomials reproduce what odeint interpolated at its output times.
    assert torch.allclose(dense.at(forward_time), solution.reshape(len(t), -1), rtol=0, atol=1e-13)
    assert torch.allclose(
        dense.at_value(float(forward_time[2])), solution[2].reshape(-1), rtol=0, atol=1e-13
    )


def test_the_refined_dense_output_is_more_accurate_than_the_solvers():
    func = PROBLEMS['sine']()
    y0 = torch.tensor([[1.0, -0.5, 0.3]], **FLOAT64)
    t = torch.tensor([0.0, 1.0], **FLOAT64)
    with torch.no_grad():
        tape, layout, solution = _tape(func, y0, t, rtol=1e-6, atol=1e-6)
        dense = interpolated.DenseForward(tape, layout, 'dopri5')
        between = torch.linspace(0.05, 0.95, 19, **FLOAT64)
        exact = exact_solution(func, y0, torch.cat([t[:1], between]))[1:].reshape(19, -1)
        plain = (dense.at(between) - exact).abs().max()
        dense.refine(FlatField(func, layout))
        refined = (dense.at(between) - exact).abs().max()
        # Still the solver's values where it stepped.
        assert torch.allclose(
            dense.at(dense.ends[-1:]), dense.at(dense.ends[-1:] - 1e-15), rtol=0, atol=1e-12
        )
        assert torch.allclose(dense.at(dense.begins), dense.starts, rtol=0, atol=1e-14)
    assert refined < 0.3 * plain


class _Wide(nn.Module):
    """Eight numbers per sample: the propagator would carry an 8 × 8 matrix per sample."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 8))

    def forward(self, t, z):
        return self.net(z)


def test_auto_takes_it_at_loose_tolerances_with_many_times():
    func = _Wide()
    y0 = torch.randn(16, 8)
    t = torch.linspace(0, 2, 20)
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-3, atol=1e-3, info=info)
    solution.pow(2).mean().backward()
    assert info['backward'] == 'interpolated'
    # At a tight tolerance the checkpoint costs less than half as much, and is as accurate.
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-7, info=info)
    solution.pow(2).mean().backward()
    assert info['backward'] == 'checkpoint'


def test_forced_past_the_memory_budget_it_restarts_with_one_warning():
    func = PROBLEMS['linear']()
    y0 = torch.ones(2, 3, **FLOAT64, requires_grad=True)
    t = torch.linspace(0, 1, 4, **FLOAT64)
    info = {}
    with pytest.warns(RuntimeWarning, match="backward='interpolated' cannot be used"):
        solution = odeint_adjoint_gq(
            func, y0, t, backward='interpolated', checkpoint_memory=64, info=info
        )
        loss_of(solution).backward()
    assert info['backward'] == 'restart'
    with pytest.warns(RuntimeWarning, match='has no dense output'):
        solution = odeint_adjoint_gq(
            func, y0, t, backward='interpolated', method='rk4', options=dict(step_size=0.1)
        )
        loss_of(solution).backward()


class _ExactTrace(nn.Module):
    """A small CNF: ``dz/dt = tanh(W z + b t)``, ``d log p/dt = -tr ∂f/∂z`` by autograd
    inside ``f``, which ``vmap`` cannot batch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.linear = nn.Linear(2, 2).double()
        self.time = nn.Parameter(torch.tensor([0.5, -0.3], **FLOAT64))

    def forward(self, t, state):
        z, _ = state
        with torch.enable_grad():
            z = z.requires_grad_(True) if not z.requires_grad else z
            dz = torch.tanh(self.linear(z) + self.time * t)
            trace = sum(
                torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(2)
            )
        return dz, -trace.reshape(-1, 1)


def test_an_unbatchable_func_carries_the_integral_in_the_solve():
    func = _ExactTrace()
    x = torch.randn(6, 2, **FLOAT64)
    y0 = (x, torch.zeros(6, 1, **FLOAT64))
    t = torch.tensor([0.0, 1.5], **FLOAT64)
    params = list(func.parameters())

    def grads(solve, **kwargs):
        z, logp = solve(func, y0, t, **kwargs)
        loss = (z[-1] ** 2).sum() + logp[-1].sum()
        return torch.cat([grad.reshape(-1) for grad in torch.autograd.grad(loss, params)])

    reference = grads(odeint, rtol=1e-12, atol=1e-12)

    def error(found):
        return ((found - reference).norm() / reference.norm()).item()

    ratios = []
    for tolerance in (1e-3, 1e-5, 1e-7, 1e-9):
        settings = dict(rtol=tolerance, atol=tolerance)
        info = {}
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the vmap notice
            found = grads(odeint_adjoint_gq, backward='interpolated', info=info, **settings)
        assert info['backward'] == 'interpolated' and info['nodes'] == 0
        ratios.append(error(found) / error(grads(odeint_adjoint, **settings)))
    # The solver's own weights integrate the parameter part: about the adjoint's accuracy
    # (between 0.9 and 2.2 times its error here), never far off.
    assert max(ratios) < 3 and math.prod(ratios) ** (1 / len(ratios)) < 2, ratios


class _Switched(nn.Module):
    """``dz/dt = -θ z`` before t = 0.5 and ``-2 θ z`` after: a jump of f at an output time."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(0.7, **FLOAT64))

    def forward(self, t, z):
        return torch.where(t < 0.5, -self.theta * z, -2 * self.theta * z)


def test_the_users_jump_t_and_step_t_merge_with_the_loss_gradients_times():
    func = _Switched()
    y0 = torch.tensor([[1.0, 2.0]], **FLOAT64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 0.75, 1.0], **FLOAT64)
    options = dict(jump_t=torch.tensor([0.5]), step_t=torch.tensor([0.75]))

    def grads(solve, **kwargs):
        solution = solve(func, y0, t, rtol=1e-9, atol=1e-9, options=options, **kwargs)
        return torch.autograd.grad(loss_of(solution), [y0, func.theta])

    direct = grads(odeint)
    # 0.5 is both the user's jump and a loss gradient's time; 0.75 a step_t and one too.
    found = grads(odeint_adjoint_gq, backward='interpolated')
    for value, expected in zip(found, direct):
        assert (value - expected).abs().max() < 1e-7 * (expected.abs().max() + 1)


def test_float32_at_torchdiffeqs_default_tolerances_does_not_chase_rounding():
    # rtol 1e-7 is under float32's rounding for the state read off the forward's steps:
    # the backward solve's own tolerance is floored above it (unfloored, it took over
    # eight times the restart pass's evaluations, for an error tens of times larger).
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 10)
    found = {}
    for backward in ('restart', 'interpolated'):
        y0 = torch.randn(8, 4, requires_grad=True)
        info = {}
        solution = odeint_adjoint_gq(
            lambda t, z: -z, y0, t, adjoint_params=(), backward=backward, info=info
        )
        (grad,) = torch.autograd.grad(solution.pow(2).sum(), [y0])
        exact = (2 * solution.detach() * torch.exp(-t)[:, None, None]).sum(0)
        found[backward] = (info['backward_nfe'], ((grad - exact).norm() / exact.norm()).item())
    (restart_nfe, restart_error), (nfe, error) = found['restart'], found['interpolated']
    assert nfe <= restart_nfe, found
    assert error <= max(3 * restart_error, 1e-6), found
