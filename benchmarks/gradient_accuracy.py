"""Parameter-gradient error of GQ's quadrature rules against torchdiffeq's adjoint.

``python -m benchmarks.gradient_accuracy`` computes, for each problem, the parameter
gradient of one loss with

- ``gq default``: :func:`odeint_adjoint_gq` with its defaults, ``gtol=None`` (nodes chosen
  from an error estimate) and ``backward='auto'`` (the per-sample propagator where valid
  and cheaper),
- ``gq restart``: the same with ``backward='restart'`` (restarting at every observation
  time, as the paper),
- ``gq gtol=0.1`` and ``gq gtol=1``: the paper's rule with ``C = 0.1`` and 1,
- ``adjoint``: torchdiffeq's ``odeint_adjoint``,

all at the same ``rtol``/``atol``, and prints each one's error
``‖g − g_ref‖ / ‖g_ref‖`` over all parameters, where ``g_ref`` is direct backprop through
a float64 solve at ``rtol = atol = 1e-11``. The column ``÷ adjoint`` is the default's
error over the adjoint's. Problems:

- ``constant``, ``linear``, ``sine``: the gradient tests' problems (float64, t on
  [0, 1] at 4 times), at ``rtol = atol = 1e-6``;
- ``linear system``: ``dy/dt = A y`` with a learnable 2×2 ``A`` (the spiral of
  torchdiffeq's ``ode_demo``), 16 initial states, 10 times on [0, 5], float64, dopri5
  at torchdiffeq's default tolerances (1e-7, 1e-9);
- ``tanh MLP 1e-8``: a small time-dependent MLP (``[z, t]`` → 32 → 32 → 2, tanh),
  5 times on [0, 2], float64, ``rtol = atol = 1e-8``;
- ``sines10``, ``sines50``, ``sines50irregular``, ``latent16``, ``spheres500``: the speed
  benchmark's cases of those names, float32, ``rtol = atol = 1e-3``.
"""

import argparse
import copy

import torch
from torch import nn

from benchmarks.gradient_speed import _Case
from gradient_tests.problems import PROBLEMS, loss_of
from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq

VARIANTS = {
    'gq default': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, **kw),
    'gq restart': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, backward='restart',
                                                               **kw),
    'gq gtol=0.1': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, gtol=0.1, **kw),
    'gq gtol=1': lambda func, y0, t, **kw: odeint_adjoint_gq(func, y0, t, gtol=1.0, **kw),
    'adjoint': lambda func, y0, t, **kw: odeint_adjoint(func, y0, t, **kw),
}
REFERENCE = dict(rtol=1e-11, atol=1e-11)


class _Problem:
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
        return _flat_gradient(self.loss(solution), params)

    def reference(self):
        """Direct backprop of a float64 copy at tight tolerances."""
        func = _deepcopy_double(self.func)
        return self.gradient(odeint, func=func, y0=self.y0.double(), **REFERENCE)


def _flat_gradient(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([torch.zeros_like(param).reshape(-1) if grad is None else grad.reshape(-1)
                      for param, grad in zip(params, grads)])


def _deepcopy_double(module):
    return copy.deepcopy(module).double()


class _TanhMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                                 nn.Linear(32, 2))

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.matrix = nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, t, y):
        return y @ self.matrix.T


PROBLEM_NAMES = ('constant', 'linear', 'sine', 'linear system', 'tanh MLP 1e-8', 'sines10',
                 'sines50', 'sines50irregular', 'latent16', 'spheres500')


def problem(name):
    """The :class:`_Problem` called ``name`` (one of :data:`PROBLEM_NAMES`), fixed seed."""
    float64 = dict(dtype=torch.float64)
    if name in PROBLEMS:
        y0 = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], **float64)
        return _Problem(PROBLEMS[name](), y0, torch.linspace(0, 1, 4, **float64), loss_of,
                        dict(rtol=1e-6, atol=1e-6), torch.float64)
    torch.manual_seed(0)
    if name == 'linear system':
        return _Problem(_Linear().double(), torch.randn(16, 2, **float64),
                        torch.linspace(0, 5, 10, **float64),
                        lambda solution: (solution ** 2).mean(), {}, torch.float64)
    if name == 'tanh MLP 1e-8':
        return _Problem(_TanhMLP().double(), torch.randn(8, 2, **float64),
                        torch.linspace(0, 2, 5, **float64),
                        lambda solution: (solution ** 2).mean() + solution.sum(),
                        dict(rtol=1e-8, atol=1e-8), torch.float64)
    if name in PROBLEM_NAMES:
        return _CaseProblem(_Case(name, torch.device('cpu')))
    raise ValueError(f'problem must be one of {", ".join(PROBLEM_NAMES)}; got {name!r}.')


class _CaseProblem(_Problem):
    """A case of the speed benchmark (float32 model, decoder, dataset loss)."""

    def __init__(self, case):
        self.case = case
        super().__init__(case.func, case.y0, case.t, None, dict(rtol=1e-3, atol=1e-3),
                         torch.float32)

    def gradient(self, solve, func=None, y0=None, decoder=None, **tolerances):
        case = self.case
        func = case.func if func is None else func
        decoder = case.decoder if decoder is None else decoder
        y0 = case.y0 if y0 is None else y0
        params = list(func.parameters()) + ([] if decoder is None else list(decoder.parameters()))
        solution = solve(func, y0, case.t.to(y0.dtype), **tolerances)
        return _flat_gradient(case.loss(solution, decoder), params)

    def reference(self):
        decoder = None if self.case.decoder is None else _deepcopy_double(self.case.decoder)
        return self.gradient(odeint, func=_deepcopy_double(self.case.func),
                             y0=self.case.y0.double(), decoder=decoder, **REFERENCE).float()


def measure(problem):
    """``{variant: relative error}`` for one problem."""
    reference = problem.reference().to(problem.dtype)
    errors = {}
    for variant, solve in VARIANTS.items():
        gradient = problem.gradient(solve, **problem.tolerances)
        errors[variant] = ((gradient - reference).norm() / reference.norm()).item()
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.gradient_accuracy',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--problem', action='append', choices=PROBLEM_NAMES,
                        help='problem to run (repeatable; default all)')
    args = parser.parse_args(argv)
    header = (f'{"problem":<17}' + ''.join(f'{name:>13}' for name in VARIANTS)
              + f'{"÷ adjoint":>11}')
    print(header)
    print('-' * len(header))
    for name in args.problem or PROBLEM_NAMES:
        errors = measure(problem(name))
        ratio = errors['gq default'] / errors['adjoint'] if errors['adjoint'] else float('nan')
        print(f'{name:<17}' + ''.join(f'{errors[variant]:>13.1e}' for variant in VARIANTS)
              + f'{ratio:>11.2f}', flush=True)


if __name__ == '__main__':
    main()
