"""Bad arguments to odeint_adjoint_gq raise a clear error naming them, before any solve."""

import math
import re

import pytest
import torch
from torch import nn

from torch_gq_adjoint import odeint_adjoint_gq


class _MustNotRun(nn.Module):
    """A field that fails the test if a solve ever calls it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, t, z):
        raise AssertionError('a solve started before the arguments were checked')


def _call(**overrides):
    arguments = dict(func=_MustNotRun(), y0=torch.ones(3, 2), t=torch.tensor([0.0, 1.0]))
    arguments.update(overrides)
    func, y0, t = arguments.pop('func'), arguments.pop('y0'), arguments.pop('t')
    return odeint_adjoint_gq(func, y0, t, **arguments)


@pytest.mark.parametrize(
    'overrides, error, words',
    [
        (dict(t=torch.zeros(2, 2)), ValueError, 't must be a non-empty 1-D'),
        (dict(t=torch.tensor([])), ValueError, 't must be a non-empty 1-D'),
        (dict(t=torch.tensor([0.0, 1.0, 1.0])), ValueError, 't must be strictly'),
        (
            dict(y0=torch.ones(3, 2, dtype=torch.float16)),
            TypeError,
            'y0 must be a float32 or float64 tensor; got dtype torch.float16',
        ),
        (
            dict(y0=torch.ones(3, 2, dtype=torch.bfloat16)),
            TypeError,
            'y0 must be a float32 or float64 tensor',
        ),
        (dict(y0=torch.empty(3, 2, device='meta')), ValueError, 'y0 is a meta tensor'),
        (
            dict(method='euler', options=dict(step_size=-0.1)),
            ValueError,
            "options['step_size'] must be a positive finite number",
        ),
        (
            dict(method='euler', options=dict(step_size=0)),
            ValueError,
            "options['step_size'] must be a positive finite number",
        ),
        (
            dict(method='rk4', adjoint_options=dict(step_size=math.inf)),
            ValueError,
            "adjoint_options['step_size'] must be a positive finite number",
        ),
        (dict(t=torch.tensor([0.0, 1.0, 0.5])), ValueError, 't must be strictly'),
        (dict(t=torch.tensor([0, 1])), TypeError, 't must be a floating point'),
        (dict(t=[0.0, 1.0]), TypeError, 't must be a 1-D torch.Tensor'),
        (dict(t=torch.tensor([0.0, math.nan])), ValueError, 't must hold finite'),
        (dict(gtol=0), ValueError, 'gtol must be a positive finite number'),
        (dict(gtol=-0.1), ValueError, 'gtol must be a positive finite number'),
        (dict(gtol=math.inf), ValueError, 'gtol must be a positive finite number'),
        (dict(gtol=math.nan), ValueError, 'gtol must be a positive finite number'),
        (dict(gtol=1e308), ValueError, 'gtol must be at most 10000'),
        (
            dict(gtol='0.1'),
            TypeError,
            'gtol must be None (error-controlled quadrature) or a positive',
        ),
        (
            dict(gtol=True),
            TypeError,
            'gtol must be None (error-controlled quadrature) or a positive',
        ),
        (dict(rtol=-1e-3), ValueError, 'rtol must be finite and non-negative'),
        (dict(atol=-1e-3), ValueError, 'atol must be finite and non-negative'),
        (dict(rtol=math.nan), ValueError, 'rtol must be finite and non-negative'),
        (dict(atol=math.inf), ValueError, 'atol must be finite and non-negative'),
        (dict(atol=0.0), ValueError, "atol must be positive for method 'dopri5'"),
        (dict(rtol=torch.tensor([1e-3, -1.0])), ValueError, 'rtol must be finite and non-negative'),
        (dict(rtol='tight'), TypeError, 'rtol must be a non-negative number or tensor'),
        (dict(adjoint_rtol=-1e-6), ValueError, 'adjoint_rtol must be finite and non-negative'),
        (dict(adjoint_atol=math.nan), ValueError, 'adjoint_atol must be finite and non-negative'),
        (dict(adjoint_atol=0.0), ValueError, "adjoint_atol must be positive for method 'dopri5'"),
        (dict(y0=torch.tensor([[1.0, math.nan]])), ValueError, 'y0 must hold finite values'),
        (
            dict(y0=(torch.ones(2), torch.tensor([math.inf]))),
            ValueError,
            'y0[1] must hold finite values',
        ),
        (dict(event_fn=3), TypeError, 'event_fn must be callable'),
        (
            dict(event_fn=lambda t, y: y.sum(), t=torch.tensor([0.0, 1.0, 2.0])),
            ValueError,
            'with event_fn, t must hold exactly 2 times',
        ),
        (dict(func=lambda t, z: z), TypeError, 'func must be an nn.Module'),
        (dict(func=3), TypeError, 'func must be callable'),
        (dict(method='rk45'), ValueError, 'method must be one of'),
        (dict(adjoint_method='leapfrog'), ValueError, 'adjoint_method must be one of'),
        (dict(y0=torch.ones(3, dtype=torch.int64)), TypeError, 'y0 must be a float32 or float64'),
        (dict(y0=[[1.0, 2.0]]), TypeError, 'y0[0] must be a torch.Tensor'),
        (dict(y0=()), TypeError, 'non-empty tuple'),
        (dict(y0=(torch.ones(2), torch.ones(2, dtype=torch.float64))), ValueError, 'y0[1] is'),
        (dict(t=torch.tensor([0.0, 1.0], device='meta')), ValueError, 'put both on one device'),
        (dict(options=[('step_size', 0.1)]), TypeError, 'options must be a dict'),
        (dict(adjoint_options=dict(norm='max')), ValueError, "adjoint_options['norm']"),
        (
            dict(method='rk4', adjoint_method='euler', options=dict(step_size=0.1)),
            ValueError,
            'adjoint_options must be given',
        ),
        (dict(adjoint_params=[1.0]), TypeError, 'adjoint_params[0] must be a torch.Tensor'),
        # Tolerances that do not fit the state as torchdiffeq applies them.
        (dict(rtol=(1e-6, 1e-6)), ValueError, 'rtol: one tolerance per part is for a tuple y0'),
        (
            dict(atol=torch.full((3,), 1e-6)),
            ValueError,
            'atol of shape (3,) does not broadcast to y0 of shape (3, 2)',
        ),
        (
            dict(y0=(torch.ones(2), torch.ones(2, 3)), rtol=(1e-6,)),
            ValueError,
            'rtol must be a number or one tolerance per part of y0 (2 parts); got 1',
        ),
        (
            dict(y0=(torch.ones(2), torch.ones(2, 3)), atol=(1e-6, torch.full((5,), 1e-6))),
            ValueError,
            'atol[1] of shape (5,) does not broadcast to the 6 entries of y0[1]',
        ),
    ],
)
def test_bad_argument_is_named(overrides, error, words):
    with pytest.raises(error) as raised:
        _call(**overrides)
    assert words in str(raised.value)


def test_zero_atol_is_accepted_where_no_step_size_control_reads_it():
    weight = torch.tensor(-0.5, requires_grad=True)
    solution = odeint_adjoint_gq(
        lambda t, z: weight * z,
        torch.ones(2),
        torch.tensor([0.0, 1.0]),
        method='rk4',
        options=dict(step_size=0.1),
        atol=0.0,
        adjoint_params=(weight,),
    )
    assert solution.shape == (2, 2)


def test_plain_function_with_adjoint_params_is_accepted():
    weight = torch.tensor(-0.5, requires_grad=True)
    solution = odeint_adjoint_gq(
        lambda t, z: weight * z, torch.ones(2), torch.tensor([0.0, 1.0]), adjoint_params=(weight,)
    )
    solution[-1].sum().backward()
    # d/dw of 2 exp(w) at w = -0.5
    assert abs(weight.grad.item() - 2 * math.exp(-0.5)) < 1e-5


def test_non_finite_backward_values_raise():
    class Blowup(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def forward(self, t, z):
            return self.scale * z

    func = Blowup()
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    solution = odeint_adjoint_gq(func, y0, torch.tensor([0.0, 1.0], dtype=torch.float64))
    with pytest.raises(FloatingPointError, match='non-finite'):
        (solution[-1] * torch.tensor([math.inf, 1.0], dtype=torch.float64)).sum().backward()


class _Returns(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def forward(self, t, z):
        return self.make(z)


@pytest.mark.parametrize(
    'make, got',
    [
        (lambda z: z[:, :1], 'got shape (3, 1)'),
        (lambda z: None, 'got NoneType'),
        (lambda z: (z,), 'got tuple'),
        (lambda z: 1.0, 'got float'),
    ],
)
def test_a_func_returning_the_wrong_structure_is_named_at_its_first_evaluation(make, got):
    with pytest.raises(
        ValueError,
        match=r'func\(t, y\) must return a tensor of shape '
        r'\(3, 2\) \(that of y0\); ' + re.escape(got),
    ):
        odeint_adjoint_gq(_Returns(make), torch.ones(3, 2), torch.tensor([0.0, 1.0]))


def test_a_tuple_state_names_the_part_of_the_wrong_shape():
    func = _Returns(lambda state: (state[0], state[1][:, :1]))
    with pytest.raises(
        ValueError,
        match=r'tuple of 2 tensors .* got shape \(3, 1\) '
        r'\(part 1\)',
    ):
        odeint_adjoint_gq(func, (torch.ones(3, 2), torch.ones(3, 2)), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    'overrides, error, words',
    [
        (dict(adjoint_params=5), TypeError, 'adjoint_params must be an iterable of tensors'),
        (dict(adjoint_params=torch.ones(2)), TypeError, 'adjoint_params must be an iterable'),
        (dict(y0=torch.ones(4, 0)), ValueError, 'y0 has no entries (shape (4, 0))'),
        (dict(y0=torch.ones(0, 3)), ValueError, 'y0 has no entries (shape (0, 3))'),
        (
            dict(adjoint_params=(nn.Parameter(torch.ones(2, device='meta')),)),
            ValueError,
            'parameter 0 of func is on the meta device',
        ),
        (
            dict(method='rk4', options=dict(step_size=0.1, grid_constructor=5)),
            TypeError,
            "options['grid_constructor'] must be callable",
        ),
        (dict(options=dict(norm='l3')), TypeError, "options['norm'] must be callable"),
        (
            dict(adjoint_options=dict(grid_constructor='fine')),
            TypeError,
            "adjoint_options['grid_constructor'] must be callable",
        ),
    ],
)
def test_odd_inputs_are_named_before_any_solve(overrides, error, words):
    with pytest.raises(error) as raised:
        _call(**overrides)
    assert words in str(raised.value)


def _linear(weight):
    return lambda t, y: y @ weight.T


@pytest.mark.parametrize(
    'make, words',
    [
        (lambda: nn.Parameter(torch.full((2, 2), math.nan)), 'parameter 0 of func holds NaN'),
        (lambda: nn.Parameter(torch.full((2, 2), math.inf)), 'parameter 0 of func holds NaN'),
    ],
)
def test_non_finite_parameters_are_named(make, words):
    weight = make()
    with pytest.raises(FloatingPointError) as raised:
        odeint_adjoint_gq(
            _linear(weight), torch.ones(3, 2), torch.tensor([0.0, 1.0]), adjoint_params=(weight,)
        )
    assert words in str(raised.value)


def test_a_func_returning_nan_is_named():
    with pytest.raises(FloatingPointError) as raised:
        odeint_adjoint_gq(
            lambda t, y: y * math.nan, torch.ones(3, 2), torch.tensor([0.0, 1.0]), adjoint_params=()
        )
    assert 'func returned NaN or inf at t = 0 for the initial state' in str(raised.value)


@pytest.mark.parametrize(
    'tolerances',
    [
        dict(atol=torch.full((4,), 1e-8, dtype=torch.float64)),  # one per column
        dict(rtol=torch.full((8, 1), 1e-6, dtype=torch.float64)),  # one per sample
    ],
)
@pytest.mark.parametrize('backward', ['restart', 'interpolated', 'propagator', 'checkpoint'])
def test_tensor_tolerances_of_the_states_shape_give_direct_backprops_gradient(tolerances, backward):
    import warnings

    from torch_gq_adjoint import odeint

    torch.manual_seed(0)
    func = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    params = list(func.parameters())
    y0 = torch.randn(8, 4, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    reference = odeint(lambda t, z: func(z), y0, t, rtol=1e-11, atol=1e-11)
    wanted = torch.autograd.grad(reference.pow(2).sum(), params)
    info = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        solution = odeint_adjoint_gq(
            lambda t, z: func(z),
            y0,
            t,
            adjoint_params=tuple(params),
            backward=backward,
            info=info,
            **tolerances,
        )
        found = torch.autograd.grad(solution.pow(2).sum(), params)
    error = max(((a - b).norm() / b.norm()).item() for a, b in zip(found, wanted))
    assert error < 1e-5, (backward, error)
    # The propagator's [z, Ψ] state takes no per-entry tolerance: the restart pass serves.
    assert info['backward'] == ('restart' if backward == 'propagator' else backward)
    assert (backward == 'propagator') == any('per-entry' in str(w.message) for w in caught)
