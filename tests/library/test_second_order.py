"""Second derivatives through the solve (``create_graph=True``): the checkpoint pass
records its own graph and gives direct backprop's first and second derivatives; every
other pass refuses with one message naming the way."""

import pytest
import torch
from torch import nn

from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl.checkpoint import CHECKPOINT_METHODS

SETTINGS = {
    'dopri5': dict(rtol=1e-8, atol=1e-8),
    'bosh3': dict(rtol=1e-6, atol=1e-6),
    'dopri8': dict(rtol=1e-8, atol=1e-8),
    'fehlberg2': dict(rtol=1e-6, atol=1e-6),
    'adaptive_heun': dict(rtol=1e-6, atol=1e-6),
}
FIXED = dict(options=dict(step_size=0.05))


class _Field(nn.Module):
    """A small tanh MLP on ``[z, t]``: second derivatives that are not trivially zero."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


def _penalty_and_hvp(solve, method):
    """The gradient penalty's gradient and a Hessian-vector product, by ``solve``."""
    func = _Field()
    params = list(func.parameters())
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    settings = SETTINGS.get(method, FIXED)
    loss = (solve(func, y0, t, method=method, **settings) ** 2).sum()
    grads = torch.autograd.grad(loss, params + [y0], create_graph=True)
    penalty = sum((grad**2).sum() for grad in grads)
    penalty_grads = torch.autograd.grad(penalty, params + [y0], retain_graph=True)
    vectors = [torch.ones_like(param) for param in params]
    hvp = torch.autograd.grad(grads[: len(params)], params, vectors)
    return [grad.detach() for grad in grads], penalty_grads, hvp


def _checkpoint(func, y0, t, **kwargs):
    return odeint_adjoint_gq(func, y0, t, backward='checkpoint', **kwargs)


def _relative(found, wanted):
    return max(((a - b).norm() / b.norm().clamp_min(1e-300)).item() for a, b in zip(found, wanted))


@pytest.mark.parametrize('method', sorted(CHECKPOINT_METHODS))
def test_second_derivatives_equal_direct_backprop(method):
    found = _penalty_and_hvp(_checkpoint, method)
    wanted = _penalty_and_hvp(odeint, method)
    for mine, direct in zip(found, wanted):
        assert _relative(mine, direct) < 1e-8


def test_auto_takes_the_checkpoint_and_says_so():
    info = {}

    def solve(func, y0, t, **kwargs):
        return odeint_adjoint_gq(func, y0, t, info=info, **kwargs)

    found = _penalty_and_hvp(solve, 'dopri5')
    assert _relative(found[1], _penalty_and_hvp(odeint, 'dopri5')[1]) < 1e-8
    assert info['backward'] == 'checkpoint (with its graph)' and info['backward_nfe'] > 0
    # Where the call site's plan stands (it learns nothing from such a call).
    assert info['plan'] in ('new', 'exploring', 'settled', 'estimated'), info


def test_tuple_states_and_time_gradients():
    func = _Field()
    first = torch.tensor([[0.5], [0.1]], dtype=torch.float64, requires_grad=True)
    second = torch.tensor([[-0.3], [0.8]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64, requires_grad=True)

    def field(time, state):
        derivative = func(time, torch.cat(state, dim=-1))
        return derivative[:, :1], derivative[:, 1:]

    def penalty(solve, **kwargs):
        solution = solve(field, (first, second), t, rtol=1e-8, atol=1e-8, **kwargs)
        loss = sum((part**2).sum() for part in solution)
        inputs = [first, second, t, *func.parameters()]
        grads = torch.autograd.grad(loss, inputs, create_graph=True)
        return torch.autograd.grad(sum((grad**2).sum() for grad in grads), inputs)

    found = penalty(
        odeint_adjoint_gq, backward='checkpoint', adjoint_params=tuple(func.parameters())
    )
    assert _relative(found, penalty(odeint)) < 1e-8


@pytest.mark.parametrize(
    'arguments, words',
    [
        (dict(backward='restart'), "backward='restart' computes its gradients outside autograd"),
        (dict(backward='interpolated'), "backward='interpolated'"),
        (dict(method='implicit_adams', options=dict(step_size=0.1)), 'not a one-step method'),
    ],
)
def test_other_passes_refuse_with_one_clear_message(arguments, words):
    func = _Field()
    y0 = torch.tensor([[0.5, -0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    loss = odeint_adjoint_gq(func, y0, t, **arguments).sum()
    with pytest.raises(RuntimeError) as raised:
        torch.autograd.grad(loss, list(func.parameters()), create_graph=True)
    message = str(raised.value)
    assert words in message and "backward='checkpoint'" in message
    # Without create_graph the same solve differentiates as always.
    loss = odeint_adjoint_gq(func, y0, t, **arguments).sum()
    assert all(grad is not None for grad in torch.autograd.grad(loss, list(func.parameters())))


@pytest.mark.parametrize('backward', ['checkpoint', 'auto'])
def test_hessian_vector_product_when_y0_is_a_data_batch(backward):
    """y0 does not require grad (a data batch): the Hessian-vector product with respect to
    the parameters is direct backprop's (float64, dopri5 at rtol 1e-9)."""

    def hvp(solve, **kwargs):
        func = _Field()
        params = list(func.parameters())
        y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-0.7, 0.2]], dtype=torch.float64)
        t = torch.linspace(0, 1, 4, dtype=torch.float64)
        loss = (solve(func, y0, t, rtol=1e-9, atol=1e-9, **kwargs) ** 2).sum()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        vectors = [torch.full_like(param, 0.5) for param in params]
        return torch.autograd.grad(grads, params, vectors)

    found = hvp(odeint_adjoint_gq, backward=backward)
    wanted = hvp(odeint)
    assert _relative(found, wanted) < 1e-6
