"""Small ODEs with known solutions, used to check gradients (float64).

Each is an ``nn.Module`` ``f(t, z)`` on a state of shape ``(batch, 3)``, without any
``nfe`` attribute, holding one extra parameter it never uses (whose gradient must be 0).
"""

import torch
from torch import nn


class _Problem(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.ones(2, dtype=torch.float64))


class ConstantField(_Problem):
    """``dz/dt = θ``: ``z(t) = z0 + θ (t - t0)``; every method is exact."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))

    def forward(self, t, z):
        return self.theta.expand_as(z)


class LinearField(_Problem):
    """``dz/dt = z Aᵀ``: ``z(t) = z0 exp(A (t - t0))ᵀ``."""

    def __init__(self):
        super().__init__()
        matrix = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.1, 0.0, -0.8]],
                              dtype=torch.float64)
        self.matrix = nn.Parameter(matrix)

    def forward(self, t, z):
        return z @ self.matrix.T


class SineField(_Problem):
    """``dz/dt = amplitude · sin(ω t) + rate · z`` (time dependent), elementwise."""

    def __init__(self):
        super().__init__()
        self.amplitude = nn.Parameter(torch.tensor([1.0, -0.5, 0.8], dtype=torch.float64))
        self.omega = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.rate = nn.Parameter(torch.tensor([-0.3, 0.2, -0.1], dtype=torch.float64))

    def forward(self, t, z):
        return self.amplitude * torch.sin(self.omega * t) + self.rate * z


class CountingMixin:
    """Counts ``forward`` calls in ``calls``, as a user's own counter in a module would."""

    calls = 0

    def forward(self, t, z):
        self.calls += 1
        return super().forward(t, z)


PROBLEMS = {'constant': ConstantField, 'linear': LinearField, 'sine': SineField}


def loss_of(solution):
    """A loss that reads every output time and every state entry, nonlinearly."""
    steps = torch.arange(1, solution.shape[0] + 1, dtype=solution.dtype, device=solution.device)
    weights = steps.reshape(-1, *([1] * (solution.dim() - 1)))
    return (weights * solution).sum() + 0.1 * (solution ** 2).sum()


def gradients(solve, func, y0, t, **kwargs):
    """Loss gradients of ``y0``, ``t`` (if it requires grad) and every parameter of ``func``.

    Returns a dict name -> tensor; unused parameters read as zeros, never None.
    """
    named = dict(func.named_parameters())
    inputs = {'y0': y0, **named}
    if t.requires_grad:
        inputs['t'] = t
    loss = loss_of(solve(func, y0, t, **kwargs))
    grads = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    return {name: torch.zeros_like(value) if grad is None else grad
            for (name, value), grad in zip(inputs.items(), grads)}


def exact_solution(func, y0, t):
    """Closed-form solution of ``func``'s ODE at times ``t``, differentiable by autograd."""
    elapsed = (t - t[0]).reshape(-1, 1, 1)
    if isinstance(func, ConstantField):
        return y0 + elapsed * func.theta
    if isinstance(func, LinearField):
        propagators = torch.linalg.matrix_exp(func.matrix * elapsed)  # (T, 3, 3)
        return torch.einsum('tij,bj->tbi', propagators, y0)
    if isinstance(func, SineField):
        rate, omega = func.rate, func.omega

        def antiderivative(s):  # of exp(-rate s) sin(omega s)
            s = s.reshape(-1, 1, 1)
            phase = -rate * torch.sin(omega * s) - omega * torch.cos(omega * s)
            return torch.exp(-rate * s) * phase / (rate ** 2 + omega ** 2)
        times = t.reshape(-1, 1, 1)
        integral = antiderivative(t) - antiderivative(t[:1])
        forced = func.amplitude * torch.exp(rate * times) * integral
        return torch.exp(rate * elapsed) * y0 + forced
    raise TypeError(f'no closed form for {type(func).__name__}')


def exact_gradients(func, y0, t):
    """:func:`gradients` of the closed-form solution."""
    return gradients(lambda f, y, times: exact_solution(f, y, times), func, y0, t)
