"""Gradient problems of the library tests (and of ``benchmarks.gradient_accuracy``).

- Small ODEs with known solutions (float64): each is an ``nn.Module`` ``f(t, z)`` on a
  state of shape ``(batch, 3)``, without any ``nfe`` attribute, holding one extra
  parameter it never uses (whose gradient must be 0).
- :func:`problem` and :func:`measure`: named problems with their data, loss and
  tolerances, and each way of computing the gradient's error against a tight reference.
"""

import copy

import torch
from torch import nn

import torch_gq_adjoint
from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq


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
        matrix = torch.tensor(
            [[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.1, 0.0, -0.8]], dtype=torch.float64
        )
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


class CoupledField(_Problem):
    """``dz_b/dt = A z_b + κ z_{b-1}`` (indices cyclic): each sample is driven by the one
    before it, so the batch is one coupled linear system, whose closed form is the
    exponential of its whole matrix. No per-sample backward pass may take it."""

    def __init__(self):
        super().__init__()
        matrix = torch.tensor(
            [[-0.4, 0.8, 0.0], [-0.8, -0.3, 0.2], [0.0, 0.1, -0.6]], dtype=torch.float64
        )
        self.matrix = nn.Parameter(matrix)
        self.coupling = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, t, z):
        return z @ self.matrix.T + self.coupling * torch.roll(z, 1, dims=0)

    def operator(self, batch):
        """The matrix of the whole batch's linear system, on ``z`` flattened row by row."""
        eye = torch.eye(batch, dtype=torch.float64)
        shift = torch.roll(eye, 1, dims=0)  # row b picks sample b - 1
        return torch.kron(eye, self.matrix) + self.coupling * torch.kron(
            shift, torch.eye(3, dtype=torch.float64)
        )


PROBLEMS = {
    'constant': ConstantField,
    'linear': LinearField,
    'sine': SineField,
    'coupled': CoupledField,
}


def loss_of(solution):
    """A loss that reads every output time and every state entry, nonlinearly."""
    steps = torch.arange(1, solution.shape[0] + 1, dtype=solution.dtype, device=solution.device)
    weights = steps.reshape(-1, *([1] * (solution.dim() - 1)))
    return (weights * solution).sum() + 0.1 * (solution**2).sum()


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
    return {
        name: torch.zeros_like(value) if grad is None else grad
        for (name, value), grad in zip(inputs.items(), grads)
    }


def exact_solution(func, y0, t):
    """Closed-form solution of ``func``'s ODE at times ``t``, differentiable by autograd."""
    elapsed = (t - t[0]).reshape(-1, 1, 1)
    if isinstance(func, ConstantField):
        return y0 + elapsed * func.theta
    if isinstance(func, LinearField):
        propagators = torch.linalg.matrix_exp(func.matrix * elapsed)  # (T, 3, 3)
        return torch.einsum('tij,bj->tbi', propagators, y0)
    if isinstance(func, CoupledField):
        propagators = torch.linalg.matrix_exp(func.operator(y0.shape[0]) * elapsed)
        return torch.einsum('tij,j->ti', propagators, y0.reshape(-1)).reshape(-1, *y0.shape)
    if isinstance(func, SineField):
        rate, omega = func.rate, func.omega

        def antiderivative(s):  # of exp(-rate s) sin(omega s)
            s = s.reshape(-1, 1, 1)
            phase = -rate * torch.sin(omega * s) - omega * torch.cos(omega * s)
            return torch.exp(-rate * s) * phase / (rate**2 + omega**2)

        times = t.reshape(-1, 1, 1)
        integral = antiderivative(t) - antiderivative(t[:1])
        forced = func.amplitude * torch.exp(rate * times) * integral
        return torch.exp(rate * elapsed) * y0 + forced
    raise TypeError(f'no closed form for {type(func).__name__}')


def exact_gradients(func, y0, t):
    """:func:`gradients` of the closed-form solution."""
    return gradients(lambda f, y, times: exact_solution(f, y, times), func, y0, t)


#: The ways of computing a gradient that :func:`measure` compares.
VARIANTS = {
    'gq default': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, **kw),
    'gq restart': lambda func, y0, t, **kw: odeint_adjoint_gq(
        func, y0, t, backward='restart', **kw
    ),
    'gq interp': lambda func, y0, t, **kw: odeint_adjoint_gq(
        func, y0, t, backward='interpolated', **kw
    ),
    'gq gtol=0.1': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, gtol=0.1, **kw),
    'gq gtol=1': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, gtol=1.0, **kw),
    'adjoint': lambda func, y0, t, **kw: odeint_adjoint(func, y0, t, **kw),
}
#: Tolerances of the reference gradient (direct backprop of a float64 copy).
REFERENCE = dict(rtol=1e-11, atol=1e-11)


class Problem:
    """A vector field, its data and loss; ``gradient(solve, **tolerances)`` → flat grads."""

    def __init__(self, func, y0, t, loss, tolerances, dtype):
        self.func, self.y0, self.t, self.loss = func, y0, t, loss
        self.tolerances = tolerances
        self.dtype = dtype

    def gradient(self, solve, func=None, y0=None, **tolerances):
        func = self.func if func is None else func
        y0 = self.y0 if y0 is None else y0
        params = list(func.parameters())
        solution = solve(func, y0, self.t.to(y0.dtype), **tolerances)
        return flat_gradient(self.loss(solution), params)

    def reference(self):
        """Direct backprop of a float64 copy at tight tolerances."""
        func = copy.deepcopy(self.func).double()
        return self.gradient(odeint, func=func, y0=self.y0.double(), **REFERENCE)


def flat_gradient(loss, params):
    """The gradients of ``loss`` with respect to ``params``, concatenated (zeros if unused)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [
            torch.zeros_like(param).reshape(-1) if grad is None else grad.reshape(-1)
            for param, grad in zip(params, grads)
        ]
    )


class _TanhMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2)
        )

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.matrix = nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, t, y):
        return y @ self.matrix.T


#: The problems of :func:`problem`.
PROBLEM_NAMES = ('constant', 'linear', 'sine', 'linear system', 'tanh MLP 1e-8')


def problem(name):
    """The :class:`Problem` called ``name`` (one of :data:`PROBLEM_NAMES`), fixed seed."""
    float64 = dict(dtype=torch.float64)
    if name in PROBLEMS:
        y0 = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], **float64)
        return Problem(
            PROBLEMS[name](),
            y0,
            torch.linspace(0, 1, 4, **float64),
            loss_of,
            dict(rtol=1e-6, atol=1e-6),
            torch.float64,
        )
    torch.manual_seed(0)
    if name == 'linear system':
        return Problem(
            _Linear().double(),
            torch.randn(16, 2, **float64),
            torch.linspace(0, 5, 10, **float64),
            lambda solution: (solution**2).mean(),
            {},
            torch.float64,
        )
    if name == 'tanh MLP 1e-8':
        return Problem(
            _TanhMLP().double(),
            torch.randn(8, 2, **float64),
            torch.linspace(0, 2, 5, **float64),
            lambda solution: (solution**2).mean() + solution.sum(),
            dict(rtol=1e-8, atol=1e-8),
            torch.float64,
        )
    raise ValueError(f'problem must be one of {", ".join(PROBLEM_NAMES)}; got {name!r}.')


def measure(problem, settle=False, ran=None):
    """``{variant: relative error}`` of each of :data:`VARIANTS` for one problem.

    Args:
        problem: a :class:`Problem`.
        settle: bool, call each variant that plans (``backward='auto'``) until its plan
            settles, from a fresh plan (at most :data:`SETTLE_CALLS` calls), so that its
            error is that of the pass a training run keeps rather than of its first,
            exploring call (default False: one call each).
        ran: optional dict, filled with ``{variant: the backward pass of its last call}``
            (None for torchdiffeq's adjoint).
    """
    reference = problem.reference().to(problem.dtype)
    errors = {}
    for variant, solve in VARIANTS.items():
        info = {}
        extra = dict(info=info) if variant.startswith('gq') else {}

        def call(solve=solve, extra=extra):
            return problem.gradient(
                lambda func, y0, t, **kwargs: solve(func, y0, t, **extra, **kwargs),
                **problem.tolerances,
            )

        if settle:
            torch_gq_adjoint.reset_plans()
        gradient = call()
        for _ in range(SETTLE_CALLS if settle else 0):
            # Only 'auto' plans (a forced pass leaves its plan uncalled). A plan settles
            # in the backward pass of its last exploring call, which ran the last pass
            # tried: one call more runs the pass it kept.
            planning = [plan for plan in torch_gq_adjoint.plans() if plan.calls]
            settled = all(plan.state in ('settled', 'pinned') for plan in planning)
            gradient = call() if planning else gradient
            if settled:
                break
        errors[variant] = ((gradient - reference).norm() / reference.norm()).item()
        if ran is not None:
            ran[variant] = info.get('backward')
    return errors


#: The most calls :func:`measure` makes to let a variant's plan settle.
SETTLE_CALLS = 30


class SecondOrderField(nn.Module):
    """``dx/dt = v``, ``dv/dt = MLP([x, v])`` (softplus, two hidden layers of ``width``):
    the paper's sines model on states ``(batch, 2)``."""

    def __init__(self, width):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, width),
            nn.Softplus(),
            nn.Linear(width, width),
            nn.Softplus(),
            nn.Linear(width, 1),
        )

    def forward(self, t, state):
        return torch.cat([state[..., 1:], self.net(state)], dim=-1)


def sine_series(series, ntimes, seed):
    """``series`` curves ``A sin t + B cos t``, (B, A) ~ U(-1, 1)², at ``ntimes`` times on
    [0, 2π]: ``(initial (S, 2) = [B, A], times (ntimes,), values (S, ntimes))``, float32."""
    generator = torch.Generator().manual_seed(seed)
    initial = 2 * torch.rand(series, 2, generator=generator, dtype=torch.float64) - 1
    times = torch.linspace(0, 2 * torch.pi, ntimes, dtype=torch.float64)
    values = initial[:, 1:] * torch.sin(times) + initial[:, :1] * torch.cos(times)
    return initial.float(), times.float(), values.float()
