"""Toy gradient: relative errors of gradient methods on dz/dt = a z against closed forms.

``python -m experiments.toy_gradient [--method gq --method direct ...]``

``z(0) = 10``, ``a = 0.2``, loss ``L = z(T)²`` with ``T`` a parameter. Exact values:
``L = z0² e^{2aT}``, ``dL/dz0 = 2 z0 e^{2aT}``, ``dL/da = 2T z0² e^{2aT}``,
``dL/dT = 2a z0² e^{2aT}``. Methods: adjoint_gq, adjoint_ode and direct (the training
options, through :func:`models.backprop.integrate` with dopri5), mali (TorchDiffEqPack
``odesolve_adjoint_sym12``, sym12async) and aca (TorchDiffEqPack ``odesolve_adjoint``,
Dopri5). TorchDiffEqPack takes the end time as a float, so for mali and aca
``dL/dT = ∂L/∂z(T) · f(T, z(T))`` is formed from their solution.
"""

import argparse
import math

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from common.arguments import (
    positive_float,
    quadrature_factor,
    require_writable,
    write_failures_named,
)
from models.backprop import integrate
from study import results

#: The training options it shares with the ODE experiments, then TorchDiffEqPack's two.
METHODS = results.TOY_METHODS
ODE_METHODS = METHODS[:3]
QUANTITIES = results.TOY_QUANTITIES
Z0, RATE = 10.0, 0.2


class _Exponential(nn.Module):
    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(RATE, dtype=torch.float64))

    def forward(self, t, z):
        return self.rate * z


def exact(end):
    """Closed-form (loss, dL/dz0, dL/da, dL/dT) at end time ``end``."""
    growth = math.exp(2 * RATE * end)
    return np.array(
        [Z0**2 * growth, 2 * Z0 * growth, 2 * end * Z0**2 * growth, 2 * RATE * Z0**2 * growth]
    )


def computed(method, end, rtol, atol, gtol):
    """(loss, dL/dz0, dL/da, dL/dT) computed by ``method``."""
    func = _Exponential()
    z0 = torch.tensor([Z0], dtype=torch.float64, requires_grad=True)
    if method in ODE_METHODS:
        t = torch.tensor([0.0, end], dtype=torch.float64, requires_grad=True)
        final = integrate(method, func, z0, t, rtol=rtol, atol=atol, gtol=gtol)[-1]
        loss = (final**2).sum()
        grad_z0, grad_rate, grad_t = torch.autograd.grad(loss, [z0, func.rate, t])
        grad_end = grad_t[-1]
    else:
        from TorchDiffEqPack import odesolve_adjoint, odesolve_adjoint_sym12

        options = {
            'method': 'sym12async' if method == 'mali' else 'Dopri5',
            't0': 0.0,
            't1': float(end),
            'h': None,
            'rtol': rtol,
            'atol': atol,
            'print_neval': False,
            'neval_max': 1_000_000,
        }
        solve = odesolve_adjoint_sym12 if method == 'mali' else odesolve_adjoint
        final = solve(func, z0, options)
        loss = (final**2).sum()
        grad_z0, grad_rate = torch.autograd.grad(loss, [z0, func.rate])
        with torch.no_grad():
            grad_end = (2 * final * func(None, final)).sum()
    return np.array([loss.item(), grad_z0.item(), grad_rate.item(), grad_end.item()])


PROG = 'python -m experiments.toy_gradient'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--method',
        action='append',
        choices=METHODS,
        help='method to run (repeatable; default all five)',
    )
    parser.add_argument('--t_start', type=positive_float, default=19.0, help='first T (default 19)')
    parser.add_argument('--t_end', type=positive_float, default=29.0, help='last T (default 29)')
    parser.add_argument(
        '--t_step', type=positive_float, default=0.02, help='step between T values (default 0.02)'
    )
    parser.add_argument('--rtol', type=positive_float, default=1e-6, help='default 1e-6')
    parser.add_argument('--atol', type=positive_float, default=1e-7, help='default 1e-7')
    parser.add_argument('--gtol', type=quadrature_factor, default=0.4, help='GQ gtol (default 0.4)')
    parser.add_argument(
        '--results_dir', default=str(results.RUNS_DIR), help=f'default {results.RUNS_DIR}'
    )
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.t_end < args.t_start:
        parser.error(
            f'argument --t_end: must not be below --t_start ({args.t_start}); got {args.t_end}'
        )
    count = (args.t_end - args.t_start) / args.t_step + 1
    if count > MAX_END_TIMES:
        parser.error(
            f'argument --t_step: {args.t_step:g} gives {count:.3g} end times from '
            f'--t_start to --t_end; at most {MAX_END_TIMES} (choose a larger --t_step)'
        )
    args.method = list(dict.fromkeys(args.method or METHODS))
    require_writable(parser, '--results_dir', args.results_dir)
    return args


#: The most end times one command computes (the paper's grid has 501).
MAX_END_TIMES = 100_000


def main(argv=None):
    args = parse_args(argv)
    count = int(round((args.t_end - args.t_start) / args.t_step)) + 1
    ends = args.t_start + args.t_step * np.arange(count)
    folder = None
    for method in args.method:
        errors = np.empty((count, len(QUANTITIES)))
        for index, end in enumerate(tqdm(ends, desc=method, disable=args.quiet)):
            truth = exact(end)
            errors[index] = np.abs(
                computed(method, end, args.rtol, args.atol, args.gtol) - truth
            ) / np.abs(truth)
        with write_failures_named(PROG, '--results_dir'):
            folder = results.write_toy_gradient(
                args.results_dir,
                method,
                ends,
                errors,
                {
                    'rtol': args.rtol,
                    'atol': args.atol,
                    'gtol': args.gtol,
                    'end_times': [float(ends[0]), float(ends[-1]), len(ends)],
                    'median_relative_error': {
                        quantity: float(np.median(errors[:, column]))
                        for column, quantity in enumerate(QUANTITIES)
                    },
                },
            )
        if not args.quiet:
            medians = ', '.join(
                f'{q} {np.median(errors[:, c]):.1e}' for c, q in enumerate(QUANTITIES)
            )
            print(f'{method}: median relative error {medians} -> {folder}')
    return folder


if __name__ == '__main__':
    main()
