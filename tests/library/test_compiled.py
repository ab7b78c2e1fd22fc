"""A ``func`` compiled with ``torch.compile`` (the default inductor backend) gives the same
gradients as the plain one through every backward pass."""

import pytest
import torch
from torch import nn

from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl.choice import BACKWARDS


class _Field(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, z):
        return self.net(z)


@pytest.fixture(scope='module')
def fields():
    plain = _Field()
    compiled = torch.compile(_Field())
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    return plain, compiled


@pytest.mark.parametrize('backward', BACKWARDS)
def test_compiled_func_gives_the_plain_gradient(fields, backward, estimate_planning):
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-1.0, 0.2]], dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    found = []
    for func in fields:
        info = {}
        loss = (
            odeint_adjoint_gq(func, y0, t, rtol=1e-8, atol=1e-8, backward=backward, info=info) ** 2
        ).sum()
        found.append((torch.autograd.grad(loss, list(func.parameters())), info['backward']))
    (plain, plain_pass), (compiled, compiled_pass) = found
    assert plain_pass == compiled_pass
    for mine, reference in zip(compiled, plain):
        assert reference.abs().max() > 0
        assert torch.allclose(mine, reference, rtol=1e-12, atol=1e-15)
