"""The checkpointed backward: the exact gradient of the forward discretisation.

Direct backpropagation through ``torchdiffeq.odeint`` also differentiates the step-size
controller. Passing it a norm whose value is detached freezes the step sizes (and the
first step) without changing a single value of the solve: that is the gradient
``backward='checkpoint'`` computes, and it must agree to float64 rounding.
"""

import warnings
from functools import partial

import pytest
import torch
import torchdiffeq
from torch import nn

from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl import checks, notices
from torch_gq_adjoint._impl.checkpoint import CHECKPOINT_METHODS
from torch_gq_adjoint._impl.graph_recorder import GraphRecorder

ADAPTIVE = sorted(checks.ADAPTIVE_METHODS)
GRID = sorted(CHECKPOINT_METHODS - checks.ADAPTIVE_METHODS)


@pytest.fixture(autouse=True)
def _recomputing(monkeypatch):
    """These tests are of the checkpoint that recomputes its steps: the forward keeps no
    graph here (tests/library/test_kept_graph.py tests the other way)."""
    monkeypatch.setattr(GraphRecorder, 'wanted', staticmethod(lambda needs: False))


class _Field(nn.Module):
    def __init__(self, dim=3, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim))
        self.net.double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


class _TupleField(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.first = nn.Linear(2, 2).double()
        self.second = nn.Linear(3, 1).double()

    def forward(self, t, state):
        x, y = state
        return torch.tanh(self.first(x)) * y, self.second(torch.cat([x, y], -1)) * t


def _frozen_norm(tensor):
    return tensor.pow(2).mean().sqrt().detach()


def _frozen_mixed_norm(parts):
    return max(part.pow(2).mean().sqrt() for part in parts).detach()


def _options(method, options, frozen, tuple_state=False):
    options = dict(options)
    if frozen and method in checks.ADAPTIVE_METHODS:
        options['norm'] = _frozen_mixed_norm if tuple_state else _frozen_norm
    return options


def _solve_and_grad(solve, func, y0, t, weights, inputs, **kwargs):
    solution = solve(func, y0, t, **kwargs)
    parts = solution if isinstance(solution, tuple) else (solution,)
    loss = sum((part * weight).sum() for part, weight in zip(parts, weights))
    return parts, torch.autograd.grad(loss, inputs)


def _relative(got, expected):
    return max(((a - b).norm() / b.norm().clamp_min(1e-300)).item() for a, b in zip(got, expected))


def _compare(method, options, t, func=None, y0=None, tolerance=1e-12):
    func = func or _Field()
    tuple_state = isinstance(y0, tuple)
    if y0 is None:
        y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    parts = y0 if tuple_state else (y0,)
    parts = tuple(part.clone().requires_grad_(True) for part in parts)
    y0 = parts if tuple_state else parts[0]
    generator = torch.Generator().manual_seed(3)
    weights = [
        torch.randn(len(t), *part.shape, dtype=part.dtype, generator=generator) for part in parts
    ]
    inputs = list(parts) + list(func.parameters())
    kwargs = dict(method=method, rtol=1e-6, atol=1e-8)
    info = {}
    got_solution, got = _solve_and_grad(
        partial(odeint_adjoint_gq, backward='checkpoint', info=info),
        func,
        y0,
        t,
        weights,
        inputs,
        options=dict(options),
        **kwargs,
    )
    ref_solution, expected = _solve_and_grad(
        torchdiffeq.odeint,
        func,
        y0,
        t,
        weights,
        inputs,
        options=_options(method, options, True, tuple_state),
        **kwargs,
    )
    for mine, theirs in zip(got_solution, ref_solution):
        assert torch.equal(mine, theirs)  # the forward is torchdiffeq's, bit for bit
    assert info['backward'] == 'checkpoint'
    assert _relative(got, expected) < tolerance, (method, _relative(got, expected))
    return info


@pytest.mark.parametrize('method', ADAPTIVE + GRID)
@pytest.mark.parametrize('increasing', [True, False])
def test_gradients_equal_direct_backprop_through_the_same_steps(method, increasing):
    t = torch.linspace(0.0, 2.0, 7, dtype=torch.float64)
    t = t if increasing else t.flip(0)
    options = {} if method in checks.ADAPTIVE_METHODS else dict(step_size=0.13)
    info = _compare(method, options, t)
    # One backward evaluation per forward evaluation of an accepted step, and no more.
    assert 0 < info['backward_nfe'] <= info['forward_nfe']
    assert info['checkpoint_bytes'] == info['checkpoint_steps'] * 12 * 8 * (
        2 if method in checks.ADAPTIVE_METHODS else 1
    )


@pytest.mark.parametrize(
    'options',
    [
        dict(jump_t=torch.tensor([0.55, 1.3])),
        dict(step_t=torch.tensor([0.55, 1.3])),
        dict(first_step=0.01, max_step=0.2),
    ],
)
@pytest.mark.parametrize('increasing', [True, False])
def test_jump_and_step_times_and_step_options(options, increasing):
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    _compare('dopri5', options, t if increasing else t.flip(0))


def test_cubic_interpolation_of_fixed_grids():
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    _compare('rk4', dict(step_size=0.15, interp='cubic'), t)
    _compare('euler', dict(step_size=0.15, perturb=True), t)


@pytest.mark.parametrize('method', ['dopri5', 'bosh3', 'rk4'])
def test_tuple_states(method):
    y0 = (torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64))
    options = {} if method in checks.ADAPTIVE_METHODS else dict(step_size=0.1)
    for t in (
        torch.linspace(0, 1.5, 4, dtype=torch.float64),
        torch.linspace(1.5, 0, 4, dtype=torch.float64),
    ):
        _compare(method, options, t, func=_TupleField(), y0=y0)


def test_float32_state_with_float64_solver_time():
    func = _Field().float()
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    t = torch.linspace(0.0, 2.0, 5)
    _compare('dopri5', {}, t, func=func, y0=y0, tolerance=1e-5)


class _Ball(nn.Module):
    def __init__(self):
        super().__init__()
        self.gravity = nn.Parameter(torch.tensor(9.8, dtype=torch.float64))
        self.drag = nn.Parameter(torch.tensor(0.1, dtype=torch.float64))

    def forward(self, t, state):
        return torch.stack([state[1], -self.gravity - self.drag * state[1]])


def test_event_times_and_states_through_odeint_event():
    def run(interface, **kwargs):
        ball = _Ball()
        height = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
        state = torch.stack([height, torch.zeros_like(height)])
        event_t, solution = torchdiffeq.odeint_event(
            ball,
            state,
            torch.tensor(0.0, dtype=torch.float64),
            event_fn=lambda t, y: y[0],
            odeint_interface=interface,
            rtol=1e-8,
            atol=1e-10,
            **kwargs,
        )
        loss = event_t + 0.3 * solution[-1, 1]
        return loss, torch.autograd.grad(loss, [height, *ball.parameters()])

    info = {}
    loss, got = run(partial(odeint_adjoint_gq, backward='checkpoint', info=info))
    reference_loss, expected = run(torchdiffeq.odeint, options=dict(norm=_frozen_norm))
    assert info['backward'] == 'checkpoint'
    assert loss.item() == reference_loss.item()
    assert _relative(got, expected) < 1e-10


def test_time_gradients_match_direct_backprop_to_the_solvers_accuracy():
    func = _Field()
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.1, 2.0], dtype=torch.float64, requires_grad=True)

    def grad_t(solve, **kwargs):
        solution = solve(func, y0, t, rtol=1e-9, atol=1e-11, **kwargs)
        return torch.autograd.grad((solution**2).sum(), t)[0]

    got = grad_t(odeint_adjoint_gq, backward='checkpoint')
    expected = grad_t(torchdiffeq.odeint)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_the_step_size_terms_direct_backprop_adds_are_of_the_order_of_the_tolerance():
    # What the checkpoint leaves out on purpose: the derivative of the accepted step
    # sizes (and of the first step) with respect to the state and parameters.
    func = _Field()
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    weights = [torch.randn(5, 4, 3, dtype=torch.float64)]
    inputs = [y0, *func.parameters()]
    _, checkpointed = _solve_and_grad(
        partial(odeint_adjoint_gq, backward='checkpoint'),
        func,
        y0,
        t,
        weights,
        inputs,
        rtol=1e-6,
        atol=1e-8,
    )
    _, direct = _solve_and_grad(
        torchdiffeq.odeint, func, y0, t, weights, inputs, rtol=1e-6, atol=1e-8
    )
    difference = _relative(checkpointed, direct)
    assert 1e-15 < difference < 1e-5


def _latent_problem(points=40):
    func = _Field(dim=4, width=20)
    y0 = torch.randn(64, 4, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 3, points, dtype=torch.float64)
    return func, y0, t


def _default_gradients(func, y0, t, **kwargs):
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, info=info, **kwargs)
    grads = torch.autograd.grad(solution.pow(2).mean(), [y0, *func.parameters()])
    return grads, info


def test_auto_choice_is_deterministic_and_takes_the_checkpoint_with_many_times():
    func, y0, t = _latent_problem()
    first, info = _default_gradients(func, y0, t)
    second, again = _default_gradients(func, y0, t)
    assert info['backward'] == again['backward'] == 'checkpoint'
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_auto_stays_inside_the_memory_budget():
    func, y0, t = _latent_problem()
    _, unlimited = _default_gradients(func, y0, t)
    budget = unlimited['checkpoint_bytes'] // 2
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _, limited = _default_gradients(func, y0, t, checkpoint_memory=budget)
    assert limited['backward'] not in ('checkpoint', 'interpolated')
    # The tape was dropped once over budget, and info reports only what ran.
    assert 'checkpoint_bytes' not in limited and 'checkpoint_steps' not in limited
    assert 'graph_bytes' not in limited


def test_forced_checkpoint_over_budget_or_uncovered_falls_back_with_one_warning():
    notices.forget()
    func, y0, t = _latent_problem(points=5)
    caught = []
    for _ in range(3):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter('always')
            _, info = _default_gradients(func, y0, t, backward='checkpoint', checkpoint_memory=0)
        caught += [str(item.message) for item in record]
        assert info['backward'] == 'restart'
    assert len(caught) == 1 and 'checkpoint_memory=0' in caught[0]
    with pytest.warns(RuntimeWarning, match="'explicit_adams' is not a one-step method"):
        _default_gradients(
            func, y0, t, backward='checkpoint', method='explicit_adams', options=dict(step_size=0.1)
        )


@pytest.mark.parametrize(
    'kwargs, error, message',
    [
        (dict(checkpoint_memory=-1), ValueError, 'checkpoint_memory must be a non-negative'),
        (dict(checkpoint_memory='1GB'), TypeError, 'checkpoint_memory must be .* got str'),
        (dict(checkpoint_memory=True), TypeError, 'checkpoint_memory must be .* got bool'),
        (dict(info=[]), TypeError, 'info must be a dict'),
        (dict(batch_dim='0'), TypeError, 'batch_dim must be 0 .* got str'),
        (dict(batch_dim=1), ValueError, 'batch_dim must be 0 .* got 1'),
        (dict(backward='checkpointed'), ValueError, "backward must be one of 'auto', 'restart'"),
        (dict(backward='paper'), ValueError, r"the paper's rule: backward='restart', gtol=0\.1"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    func, y0, t = _latent_problem(points=3)
    info = dict(kept=True)
    with pytest.raises(error, match=message):
        odeint_adjoint_gq(func, y0, t, **{'info': info, **kwargs})
    assert info == dict(kept=True) or kwargs.get('info') is not None  # bad input: untouched
