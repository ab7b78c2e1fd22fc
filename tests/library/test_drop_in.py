"""odeint_adjoint_gq as a drop-in for torchdiffeq's odeint_adjoint.

Each test is a report of something third-party neural-ODE code does with
``odeint_adjoint``: the same call must work under ``odeint_adjoint_gq``, the forward
pass must return exactly what ``torchdiffeq.odeint`` returns, and the backward pass must
honour the same options and callbacks.
"""

import math

import pytest
import torch
import torchdiffeq
from torch import nn

from gradient_tests.problems import LinearField, SineField, loss_of
from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq
from torch_gq_adjoint._impl import checks


class _Scalar(nn.Module):
    """``dy/dt = a · y`` on whatever state it is given."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(-0.7, dtype=torch.float64))

    def forward(self, t, y):
        return self.a * y


class _Counted(nn.Module):
    def __init__(self, func):
        super().__init__()
        self.func = func
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.func(t, y)


def test_zero_dimensional_state():
    func = _Scalar()
    y0 = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-10, atol=1e-10)
    assert solution.shape == (3,)
    solution[-1].backward()
    # y(2) = y0 exp(2a): d/dy0 = exp(2a), d/da = 2 y0 exp(2a)
    assert y0.grad.item() == pytest.approx(math.exp(-1.4), rel=1e-8)
    assert func.a.grad.item() == pytest.approx(2 * 1.5 * math.exp(-1.4), rel=1e-8)


def test_tuple_state_with_a_zero_dimensional_part():
    func = _Scalar()
    scalar = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    vector = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    first, second = odeint_adjoint_gq(
        lambda time, y: (func(time, y[0]), func(time, y[1])),
        (scalar, vector),
        t,
        rtol=1e-10,
        atol=1e-10,
        adjoint_params=tuple(func.parameters()),
    )
    assert first.shape == (2,) and second.shape == (2, 2)
    (first[-1] + second[-1].sum()).backward()
    assert scalar.grad.item() == pytest.approx(math.exp(-0.7), rel=1e-8)
    # d/da of exp(a) (2 + 1 - 1)
    assert func.a.grad.item() == pytest.approx(2.0 * math.exp(-0.7), rel=1e-8)


class _Oscillating(nn.Module):
    """A tuple state ``(z, l)``: z = 0 stays 0, ``l' = cos(10 t) l``."""

    def forward(self, t, state):
        zeros, level = state
        return torch.zeros_like(zeros), torch.cos(10 * t) * level


def _forward_cases():
    float64 = dict(dtype=torch.float64)
    t = torch.linspace(0, 1, 5, **float64)
    every = set(checks.METHODS)
    yield 'tensor', every, LinearField(), torch.tensor([[1.0, -0.5, 0.3]], **float64), t, {}
    yield 'zero-dim', every, _Scalar(), torch.tensor(1.5, **float64), t, {}
    yield (
        'tuple',
        every,
        lambda time, y: (-y[0], torch.cos(time) * y[1]),
        (torch.ones(3, **float64), torch.tensor(2.0, **float64)),
        t,
        {},
    )
    yield 'decreasing', every, SineField(), torch.ones(2, 3, **float64), t.flip(0), {}
    yield (
        'jump_t',
        checks.ADAPTIVE_METHODS,
        SineField(),
        torch.ones(2, 3, **float64),
        t,
        dict(jump_t=torch.tensor([0.33], **float64)),
    )
    yield (
        'grid_constructor',
        checks.GRID_METHODS,
        SineField(),
        torch.ones(2, 3, **float64),
        t,
        dict(
            grid_constructor=lambda f, y, times: torch.linspace(times[0], times[-1], 8, **float64)
        ),
    )


@pytest.mark.parametrize('method', checks.METHODS)
def test_forward_is_torchdiffeq_odeint_bit_for_bit(method):
    for name, methods, func, y0, t, options in _forward_cases():
        if method not in methods:
            continue
        if method in checks.GRID_METHODS and 'grid_constructor' not in options:
            options = dict(options, step_size=0.05)
        kwargs = dict(rtol=1e-6, atol=1e-8, method=method, options=options)
        params = () if not isinstance(func, nn.Module) else None
        counted_gq, counted_direct = _Counted(func), _Counted(func)
        expected = odeint(counted_direct, y0, t, **kwargs)
        got = odeint_adjoint_gq(counted_gq, y0, t, adjoint_params=params, **kwargs)
        assert counted_gq.calls == counted_direct.calls, (method, name)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        for first, second in zip(expected, got):
            assert torch.equal(first, second), (method, name)


def test_tuple_state_steps_like_torchdiffeq():
    """The mixed (max over parts) norm of torchdiffeq, not one RMS over everything."""
    y0 = (torch.zeros(1000, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    t = torch.linspace(0, 3, 2, dtype=torch.float64)
    direct, gq = _Counted(_Oscillating()), _Counted(_Oscillating())
    expected = odeint(direct, y0, t, rtol=1e-6, atol=1e-6)
    got = odeint_adjoint_gq(gq, y0, t, rtol=1e-6, atol=1e-6, adjoint_params=())
    assert gq.calls == direct.calls
    assert torch.equal(got[1], expected[1])
    exact = math.exp(math.sin(30.0) / 10)
    assert abs(got[1][-1].item() - exact) < 1e-5


class _Switched(nn.Module):
    """``dz/dt = θ₁ z`` before t = 0.5 and ``θ₂ z`` after: a jump of f in time."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([0.8, -1.3], dtype=torch.float64))
        self.calls = 0

    def forward(self, t, z):
        self.calls += 1
        rate = torch.where(t < 0.5, self.theta[0], self.theta[1])
        return rate * z


def _backward_calls_and_error(solve, **kwargs):
    func = _Switched()
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    options = dict(jump_t=torch.tensor([0.5], dtype=torch.float64))
    solution = solve(func, y0, t, rtol=1e-6, atol=1e-6, options=options, **kwargs)
    before = func.calls
    solution[-1].sum().backward()
    # z(1) = z0 exp((θ₁ + θ₂)/2): dL/dθ_k = (z0 · exp(...)).sum() / 2
    expected = 0.5 * (y0.detach() * torch.exp(func.theta.detach().sum() / 2)).sum()
    error = (func.theta.grad - expected).abs().max().item() / expected.abs().item()
    return func.calls - before, error


def test_jump_t_is_honoured_in_the_backward_pass():
    adjoint_calls, adjoint_error = _backward_calls_and_error(odeint_adjoint)
    gq_calls, gq_error = _backward_calls_and_error(odeint_adjoint_gq)
    # Without the mapping GQ ignored the jump: hundreds of evaluations, error ~5e-4.
    assert gq_calls <= adjoint_calls
    assert gq_error < 1e-6


def test_grid_constructor_gets_torchdiffeqs_convention_in_the_backward_pass():
    seen = {'adjoint': [], 'gq': []}

    def constructor(key):
        def build(func, y0, t):
            seen[key].append(t.tolist())
            return torch.linspace(float(t[0]), float(t[-1]), 6, dtype=t.dtype)

        return build

    results = {}
    for key, solve in (('adjoint', odeint_adjoint), ('gq', odeint_adjoint_gq)):
        func = LinearField()
        y0 = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        solution = solve(func, y0, t, method='rk4', options=dict(grid_constructor=constructor(key)))
        seen[key].clear()  # the forward call is torchdiffeq's own in both
        loss_of(solution).backward()
        results[key] = func.matrix.grad
    assert seen['gq'] == seen['adjoint'] == [[1.0, 0.5], [0.5, 0.0]]
    assert (results['gq'] - results['adjoint']).abs().max().item() < 1e-3


class _WithAdjointCallbacks(LinearField):
    def __init__(self):
        super().__init__()
        self.steps = []
        self.accepted = []

    def callback_step_adjoint(self, t0, y0, dt):
        self.steps.append((float(t0), tuple(part.shape for part in y0), float(dt)))

    def callback_accept_step_adjoint(self, t0, y0, dt):
        self.accepted.append(float(t0))


def _adjoint_callback_calls(solve, **kwargs):
    func = _WithAdjointCallbacks()
    y0 = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    loss_of(solve(func, y0, t, **kwargs)).backward()
    return func


def test_adjoint_step_callbacks_are_called_like_torchdiffeqs():
    settings = dict(method='rk4', options=dict(step_size=0.1))
    gq = _adjoint_callback_calls(odeint_adjoint_gq, **settings)
    with pytest.warns(UserWarning, match='does not support callbacks'):
        adjoint = _adjoint_callback_calls(odeint_adjoint, **settings)
    assert len(gq.steps) == len(adjoint.steps) == 10
    assert [step[0] for step in gq.steps] == pytest.approx([step[0] for step in adjoint.steps])
    assert [step[2] for step in gq.steps] == pytest.approx([step[2] for step in adjoint.steps])
    # (t placeholder, y, adj_y): torchdiffeq's adjoint adds its parameter entries after these.
    assert gq.steps[0][1] == ((), (1, 3), (1, 3))
    assert adjoint.steps[0][1][:3] == ((), (1, 3), (1, 3))
    adaptive = _adjoint_callback_calls(odeint_adjoint_gq, rtol=1e-8, atol=1e-8)
    assert adaptive.accepted and all(0.0 <= time <= 1.0 for time in adaptive.accepted)
    assert adaptive.accepted[0] == 1.0  # the backward solve starts at the end


class _Falling(nn.Module):
    """A ball: height and velocity, gravity and drag as parameters."""

    def __init__(self):
        super().__init__()
        self.gravity = nn.Parameter(torch.tensor(9.81, dtype=torch.float64))
        self.drag = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, t, state):
        velocity = state[..., 1]
        return torch.stack([velocity, -self.gravity - self.drag * velocity], dim=-1)


def _hits_ground(t, state):
    return state[..., 0]


def _event_gradients(interface):
    func = _Falling()
    y0 = torch.tensor([10.0, 2.0], dtype=torch.float64, requires_grad=True)
    t0 = torch.tensor(0.0, dtype=torch.float64)
    event_t, solution = torchdiffeq.odeint_event(
        func, y0, t0, event_fn=_hits_ground, odeint_interface=interface, rtol=1e-10, atol=1e-10
    )
    loss = event_t**2 + solution[-1, 1] ** 2
    grads = torch.autograd.grad(loss, [y0, func.gravity, func.drag])
    return event_t.detach(), grads


def test_gradients_through_the_event_time_match_direct_backprop():
    event_direct, direct = _event_gradients(odeint)
    event_gq, gq = _event_gradients(odeint_adjoint_gq)
    assert event_gq.item() == pytest.approx(event_direct.item(), abs=1e-9)
    for first, second in zip(direct, gq):
        assert torch.allclose(first, second, rtol=1e-6, atol=1e-7)


def test_event_fn_call_and_return_convention_match_odeint_adjoint():
    results = {}
    for name, solve in (('adjoint', odeint_adjoint), ('gq', odeint_adjoint_gq)):
        func = _Falling()
        y0 = torch.tensor([10.0, 2.0], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 5.0], dtype=torch.float64, requires_grad=True)
        event_t, solution = solve(func, y0, t, event_fn=_hits_ground, rtol=1e-10, atol=1e-10)
        assert solution.shape == (2, 2)
        loss = (solution[-1] ** 2).sum()
        results[name] = (
            event_t.detach(),
            solution.detach(),
            torch.autograd.grad(loss, [y0, t, func.gravity, func.drag]),
        )
    assert torch.equal(results['gq'][0], results['adjoint'][0])
    assert torch.equal(results['gq'][1], results['adjoint'][1])
    for first, second in zip(results['adjoint'][2], results['gq'][2]):
        assert torch.allclose(first, second, rtol=1e-6, atol=1e-8)
