"""The GQ adjoint's pieces and promises beyond gradient accuracy."""

import linecache
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import torch_gq_adjoint
from gradient_tests.problems import (
    CountingMixin,
    LinearField,
    SineField,
    exact_gradients,
    gradients,
    loss_of,
)
from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl import dynamics, parameter_integral
from torch_gq_adjoint._impl.quadrature import gauss_legendre, node_count

# Calls repeat at one line here: the passes 'auto' takes must not depend on timings.
pytestmark = pytest.mark.usefixtures('estimate_planning')


def test_public_face():
    import torchdiffeq

    assert set(torch_gq_adjoint.__all__) == {
        'odeint',
        'odeint_adjoint',
        'odeint_adjoint_gq',
        'MAX_NODES',
        'CosineBrownian',
        'WongZakaiODE',
        'StratonovichSDE',
        'cosine_brownian_variance',
        'plans',
        'reset_plans',
        'set_planning',
        'planning',
        'CallSitePlan',
    }
    for name in torch_gq_adjoint.__all__:
        value = getattr(torch_gq_adjoint, name)
        ours = getattr(value, '__module__', '').startswith('torch_gq_adjoint')
        assert isinstance(value, int) or not ours or value.__doc__, f'{name}: no docstring'
    assert torch_gq_adjoint.odeint is torchdiffeq.odeint
    assert torch_gq_adjoint.odeint_adjoint is torchdiffeq.odeint_adjoint


@pytest.mark.parametrize('count', [1, 2, 5, 17, 64])
def test_gauss_legendre_is_exact_to_degree_2n_minus_1(count):
    start, end = 0.3, -1.7  # a backwards interval: weights carry the sign
    nodes, weights = gauss_legendre(start, end, count, torch.float64, 'cpu')
    assert nodes.shape == weights.shape == (count,)
    assert torch.all(torch.diff(nodes) < 0)  # ordered from start to end
    rng = np.random.default_rng(count)
    coefficients = rng.normal(size=2 * count)  # degree 2n - 1
    polynomial = np.polynomial.Polynomial(coefficients)
    exact = polynomial.integ()(end) - polynomial.integ()(start)
    quadrature = float((weights * torch.as_tensor(polynomial(nodes.numpy()))).sum())
    assert quadrature == pytest.approx(exact, rel=1e-9, abs=1e-9)


def test_node_count_rule():
    # ceil(gtol * NFE * share), at least 1, at most 64
    assert node_count(0.1, 26, 1.0, 1.0) == 3
    assert node_count(0.1, 26, -0.5, -1.0) == 2
    assert node_count(0.1, 5, 0.01, 1.0) == 1
    assert node_count(10.0, 1000, 1.0, 1.0) == 64  # the paper's cap
    assert node_count(0.4, 100, 0.25, 1.0) == 10


def _sine_problem(dtype=torch.float64, device='cpu'):
    func = SineField().to(device=device, dtype=dtype)
    y0 = torch.tensor(
        [[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], dtype=dtype, device=device, requires_grad=True
    )
    t = torch.linspace(0, 1, 5, dtype=dtype, device=device, requires_grad=True)
    return func, y0, t


def test_float32_matches_closed_form():
    func, y0, t = _sine_problem(torch.float32)
    gq = gradients(odeint_adjoint_gq, func, y0, t, rtol=1e-6, atol=1e-6, gtol=1.0)
    exact = exact_gradients(func, y0, t)
    assert all(gq[key].dtype == torch.float32 for key in gq)
    for key in gq:
        assert (gq[key] - exact[key]).abs().max().item() < 1e-3, key


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu():
    cpu = gradients(odeint_adjoint_gq, *_sine_problem(), rtol=1e-9, atol=1e-9)
    cuda = gradients(odeint_adjoint_gq, *_sine_problem(device='cuda'), rtol=1e-9, atol=1e-9)
    for key in cpu:
        assert cuda[key].device.type == 'cuda'
        assert (cuda[key].cpu() - cpu[key]).abs().max().item() < 1e-7, key


class _NotVectorisable(SineField):
    """Calls .item(), which torch.func.vmap cannot batch."""

    def forward(self, t, z):
        if t.item() > 10.0:  # never true here; only forces the fallback
            return z
        return super().forward(t, z)


def test_fallback_for_functions_vmap_cannot_handle():
    func, y0, t = _sine_problem()
    settings = dict(rtol=1e-9, atol=1e-9, backward='restart')
    vectorised = gradients(odeint_adjoint_gq, func, y0, t, **settings)
    fallback_func = _NotVectorisable()
    fallback_func.load_state_dict(func.state_dict())
    with pytest.warns(RuntimeWarning, match='its own vector-Jacobian product') as caught:
        fallback = gradients(odeint_adjoint_gq, fallback_func, y0, t, **settings)
    # A training loop calls it again and again: the warning is shown once.
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter('always')
        gradients(odeint_adjoint_gq, fallback_func, y0, t, **settings)
    assert not again
    for key in vectorised:
        assert (vectorised[key] - fallback[key]).abs().max().item() < 1e-12, key
    # The warning points at the line of func that vmap cannot batch, and says the fix.
    (warning,) = caught.list
    assert warning.filename == __file__
    assert 't.item() > 10.0' in linecache.getline(warning.filename, warning.lineno)
    assert '.item()' in str(warning.message) and 'use t itself' in str(warning.message)


class _TensorOfTime(SineField):
    """``torch.tensor(t)`` inside forward, as many published models write it."""

    def forward(self, t, z):
        return super().forward(torch.tensor(t), z)


class _Buggy(SineField):
    """A genuine bug that vmap also trips over: it must surface, not become a warning."""

    def forward(self, t, z):
        if z.dim() == 2 and self.training:
            return super().forward(t, z)
        raise RuntimeError('genuine bug in func')


# torch warns on every torch.tensor(tensor) the field makes (hundreds per solve): the
# point of this test is what the library says, once.
@pytest.mark.filterwarnings('ignore:To copy construct from a tensor:UserWarning')
def test_torch_tensor_of_time_falls_back_with_the_same_gradient():
    func, y0, t = _sine_problem()
    # One pass ('auto' prices unbatched nodes higher) and the paper's rule: the same nodes
    # either way (torch.tensor(t) detaches t, which would hide ∂f/∂t from the
    # error-controlled rule's time check).
    settings = dict(rtol=1e-9, atol=1e-9, gtol=1.0, backward='interpolated')
    reference = gradients(odeint_adjoint_gq, func, y0, t, **settings)
    tensor_func = _TensorOfTime()
    tensor_func.load_state_dict(func.state_dict())
    with pytest.warns(RuntimeWarning, match='torch.tensor') as caught:
        fallback = gradients(odeint_adjoint_gq, tensor_func, y0, t, **settings)
    assert caught.list[0].filename == __file__
    for key in reference:
        assert (reference[key] - fallback[key]).abs().max().item() < 1e-12, key


def test_a_genuine_error_in_func_is_raised_not_hidden():
    func, y0, t = _sine_problem()
    buggy = _Buggy()
    solution = odeint_adjoint_gq(buggy, y0, t, rtol=1e-6, atol=1e-6)
    buggy.train(False)  # the next call of forward fails, batched or not
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no fallback warning either
        with pytest.raises(RuntimeError, match='genuine bug in func'):
            loss_of(solution).backward()


def test_node_batches_split_without_changing_the_result(monkeypatch):
    func, y0, t = _sine_problem()
    whole = gradients(odeint_adjoint_gq, func, y0, t, rtol=1e-9, atol=1e-9, gtol=2.0)
    # Six state numbers per node: a budget of 18 gives batches of three nodes.
    monkeypatch.setattr(parameter_integral, 'BATCH_STATE_ELEMENTS', 18)
    batched = gradients(odeint_adjoint_gq, func, y0, t, rtol=1e-9, atol=1e-9, gtol=2.0)
    for key in whole:
        assert (whole[key] - batched[key]).abs().max().item() < 1e-12, key


def test_seminorm_and_custom_adjoint_norm_are_accepted():
    func, y0, t = _sine_problem()
    plain = gradients(odeint_adjoint_gq, func, y0, t, rtol=1e-8, atol=1e-8)
    seminorm = gradients(
        odeint_adjoint_gq, func, y0, t, rtol=1e-8, atol=1e-8, adjoint_options=dict(norm='seminorm')
    )
    for key in plain:
        assert torch.equal(plain[key], seminorm[key]), key
    seen = []

    def max_norm(state):
        seen.append(len(state))
        return max(part.abs().max() for part in state)

    custom = gradients(
        odeint_adjoint_gq,
        func,
        y0,
        t,
        rtol=1e-8,
        atol=1e-8,
        gtol=2.0,
        adjoint_options=dict(norm=max_norm),
    )
    assert seen and set(seen) == {3}  # (t placeholder, y, adj_y) as torchdiffeq's adjoint
    exact = exact_gradients(func, y0, t)
    for key in custom:
        assert (custom[key] - exact[key]).abs().max().item() < 1e-5, key


def test_forward_norm_on_tuple_state_receives_the_tuple():
    func = LinearField()
    y0 = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    seen = []

    def norm(state):
        seen.append(tuple(part.shape for part in state))
        return max(part.abs().max() for part in state)

    def tuple_field(t, state):
        derivative = func(t, torch.cat(state, dim=-1))
        return derivative[:, :1], derivative[:, 1:]

    solution = odeint_adjoint_gq(
        tuple_field,
        (y0[:, :1], y0[:, 1:]),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        options=dict(norm=norm),
        adjoint_params=tuple(func.parameters()),
    )
    assert seen and set(seen) == {((1, 1), (1, 2))}
    loss_of(torch.cat(solution, dim=-1)).backward()
    assert torch.isfinite(func.matrix.grad).all()


class _Counting(CountingMixin, SineField):
    pass


def _backward_calls(func, y0, t):
    # The paper's rule carries steps between intervals (the default mode starts each
    # interval as torchdiffeq's adjoint does); only the restart method has intervals to
    # carry them between.
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-6, atol=1e-6, gtol=0.1, backward='restart')
    before = func.calls
    loss_of(solution).backward()
    return func.calls - before


def test_step_size_carried_between_intervals_saves_evaluations(monkeypatch):
    y0 = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 4, 41, dtype=torch.float64)
    carried = _backward_calls(_Counting(), y0, t)
    # Without the recorded step every interval starts cold (torchdiffeq's initial step).
    monkeypatch.setattr(dynamics.StepRecorder, '_record_step', lambda self, t0, y0, dt: None)
    cold = _backward_calls(_Counting(), y0, t)
    assert carried < 0.85 * cold


def test_no_parameters_and_single_time():
    y0 = torch.ones(2, requires_grad=True)
    solution = odeint_adjoint_gq(lambda t, z: -z, y0, torch.tensor([0.0, 2.0]), adjoint_params=())
    solution[-1].sum().backward()
    assert y0.grad == pytest.approx([math.exp(-2.0)] * 2, rel=1e-5)
    y1 = torch.ones(1, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    single = odeint_adjoint_gq(LinearField(), y1, t)
    assert single.shape == (1, 1, 3)
    single.sum().backward()
    assert t.grad.item() == 0.0
    assert torch.equal(y1.grad, torch.ones(1, 3, dtype=torch.float64))


def test_matches_direct_on_a_neural_network():
    torch.manual_seed(0)
    func = nn.Sequential(nn.Linear(3, 32), nn.Softplus(), nn.Linear(32, 3)).double()
    field = lambda t, z: func(z)  # noqa: E731 - a plain function needs adjoint_params
    y0 = torch.randn(8, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    params = list(func.parameters())
    direct = torch.autograd.grad(loss_of(odeint(field, y0, t, rtol=1e-9, atol=1e-9)), params)
    gq = torch.autograd.grad(
        loss_of(
            odeint_adjoint_gq(field, y0, t, rtol=1e-9, atol=1e-9, gtol=1.0, adjoint_params=params)
        ),
        params,
    )
    for first, second in zip(direct, gq):
        assert (first - second).abs().max().item() < 1e-6 * first.abs().max().item()


class _WithCallbacks(LinearField):
    """A field with torchdiffeq's step callbacks, as a user may write."""

    def __init__(self):
        super().__init__()
        self.accepted = []

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append((float(t0.detach()), tuple(y0.shape), float(dt.detach())))


def test_user_step_callbacks_still_run_in_the_forward_solve():
    func = _WithCallbacks()
    y0 = torch.ones(2, 3, dtype=torch.float64)
    odeint_adjoint_gq(func, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-6, atol=1e-6)
    direct = _WithCallbacks()
    odeint(direct, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-6, atol=1e-6)
    # same steps, and the state reaches the callback in the user's shape
    assert func.accepted == direct.accepted and func.accepted[0][1] == (2, 3)
