"""Cases a fault round found: each once a wrong gradient without a word or a raw
traceback, now an exact gradient or one clear error."""

import pytest
import torch
from torch import nn

from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl.func_state import FuncState

PASSES = ('auto', 'restart', 'checkpoint', 'interpolated', 'propagator')


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.register_buffer('scale', torch.tensor(1.0))
        self.shift = torch.tensor(0.1)

    def forward(self, t, z):
        return self.scale * torch.tanh(self.linear(z)) + self.shift


def _solve_and_change(change, backward):
    torch.manual_seed(0)
    func = Field().double()
    func.shift = func.shift.double()
    y0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-8, backward=backward)
    change(func)
    return solution.pow(2).sum()


def _in_place_weight(func):
    with torch.no_grad():
        func.linear.weight.mul_(1.5)


def _new_buffer(func):
    func.scale = torch.tensor(2.0, dtype=torch.float64)


def _in_place_attribute(func):
    func.shift.add_(1.0)


def _new_parameter(func):
    func.linear.bias = nn.Parameter(func.linear.bias.detach() + 1)


@pytest.mark.parametrize('backward', PASSES)
@pytest.mark.parametrize(
    'change, label',
    [
        (_in_place_weight, "'linear.weight' was changed in place"),
        (_new_buffer, "'scale' was set anew"),
        (_in_place_attribute, "'shift' was changed in place"),
        (_new_parameter, "'linear.bias' was set anew"),
    ],
)
def test_a_func_changed_before_backward_is_an_error(backward, change, label):
    loss = _solve_and_change(change, backward)
    with pytest.raises(RuntimeError, match='between the forward pass and backward') as raised:
        loss.backward()
    assert label in str(raised.value)


def test_a_cache_func_sets_anew_is_not_a_change():
    class Caching(Field):
        def forward(self, t, z):
            self.last = z  # set anew by every evaluation
            return super().forward(t, z)

    func = Caching()
    y0 = torch.randn(3, 2)
    t = torch.linspace(0, 1, 3)
    first = odeint_adjoint_gq(func, y0, t)
    second = odeint_adjoint_gq(func, y0 + 1, t)  # a second solve before the backward
    (first.sum() + second.sum()).backward()
    assert func.linear.weight.grad is not None


def test_running_statistics_and_unchanged_funcs_pass():
    batch_norm = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    state = FuncState(batch_norm)
    batch_norm(torch.randn(8, 2))  # training mode: the running statistics move
    assert state.changed() is None
    assert FuncState(lambda t, z: z).changed() is None


def _direct_gradients(func, y0, t, **tolerances):
    solution = odeint(func, y0, t, **tolerances)
    loss = solution[0].pow(2).sum() + solution[1].sum()
    return torch.autograd.grad(loss, list(func.parameters()))


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, t, z):
        return torch.tanh(self.linear(z[0])), torch.tanh(self.linear(z[1])) * z[0]


@pytest.mark.parametrize('backward', PASSES)
def test_per_part_tolerances_give_direct_backprops_gradient(backward):
    torch.manual_seed(0)
    func = Pair().double()
    y0 = tuple(torch.randn(4, 2, dtype=torch.float64) for _ in range(2))
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    tolerances = dict(rtol=(1e-8, 1e-6), atol=(1e-9, 1e-7))
    expected = _direct_gradients(func, y0, t, **tolerances)
    # The propagator cannot take per-part tolerances: it says so and restarts.
    with pytest.warns(RuntimeWarning, match='per-part') if backward == 'propagator' else _nothing():
        solution = odeint_adjoint_gq(func, y0, t, backward=backward, **tolerances)
        loss = solution[0].pow(2).sum() + solution[1].sum()
        found = torch.autograd.grad(loss, list(func.parameters()))
    for mine, theirs in zip(found, expected):
        assert ((mine - theirs).norm() / theirs.norm()).item() < 1e-6


class _nothing:  # noqa: N801 (a context manager that checks nothing)
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


@pytest.mark.parametrize('backward', PASSES)
def test_a_single_output_time_gives_the_identity(backward):
    func = Field()
    y0 = torch.randn(3, 2, requires_grad=True)
    solution = odeint_adjoint_gq(func, y0, torch.tensor([0.0]), backward=backward)
    (solution * 2).sum().backward()
    assert torch.equal(y0.grad, torch.full_like(y0, 2.0))


def test_an_inference_tensor_as_y0():
    torch.manual_seed(0)
    func = Field()
    with torch.inference_mode():
        y0 = torch.randn(4, 2)
    t = torch.linspace(0, 1, 4)
    expected = torch.autograd.grad(odeint(func, y0.clone(), t).sum(), list(func.parameters()))
    found = torch.autograd.grad(
        odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-8).sum(), list(func.parameters())
    )
    for mine, theirs in zip(found, expected):
        assert torch.allclose(mine, theirs, rtol=1e-3, atol=1e-5)


def test_a_graph_that_grows_as_the_solve_goes_is_caught():
    from torch_gq_adjoint._impl.kept_graph import GraphGuard, GraphTooLargeError

    torch.manual_seed(0)
    weight = torch.randn(1000, requires_grad=True)
    evaluations = []

    def field(t, y):
        # Each evaluation saves more than the last (a func that reads its own history).
        count = len(evaluations) + 1
        grown = y.repeat(count)
        evaluations.append(2 * grown.numel() * grown.element_size())  # grown and weights
        return y + 0 * (grown * weight.repeat(count)).sum()

    limit = 2**20
    y = torch.randn(1000, requires_grad=True)
    guard = GraphGuard(field, [weight], y.numel() * y.element_size(), limit)
    with pytest.raises(GraphTooLargeError):
        for _ in range(10_000):
            guard(0.0, y)
    # Measured at evaluations 1, 2, 4, ...: the attempt stops within twice the budget
    # (measuring the first evaluation alone let it grow to 64 times it).
    assert sum(evaluations) < 2.5 * limit


@pytest.mark.parametrize('backward', PASSES)
def test_a_tensor_named_twice_in_adjoint_params_is_one_parameter(backward):
    torch.manual_seed(0)
    func = Field().double()
    func.shift = func.shift.double()
    y0 = torch.randn(5, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 6, dtype=torch.float64)
    wanted = [func.linear.weight, func.linear.bias]
    expected = torch.autograd.grad(odeint(func, y0, t, rtol=1e-10, atol=1e-10).pow(2).sum(), wanted)
    twice = (func.linear.weight, func.linear.weight, func.linear.bias)
    solution = odeint_adjoint_gq(
        func, y0, t, rtol=1e-8, atol=1e-8, backward=backward, adjoint_params=twice
    )
    found = torch.autograd.grad(solution.pow(2).sum(), wanted)
    for mine, theirs in zip(found, expected):
        assert ((mine - theirs).norm() / theirs.norm()).item() < 1e-6
