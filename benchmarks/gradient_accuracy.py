"""Parameter-gradient error of GQ's quadrature rules against torchdiffeq's adjoint.

``python -m benchmarks.gradient_accuracy`` computes, for each problem, the parameter
gradient of one loss with

- ``gq default``: :func:`odeint_adjoint_gq` with its defaults, ``gtol=None`` (nodes chosen
  from an error estimate) and ``backward='auto'`` (see docs/backward.md),
- ``gq restart``: the same with ``backward='restart'`` (restarting at every observation
  time, as the paper),
- ``gq interp``: the same with ``backward='interpolated'`` (the adjoint alone, the state
  read off the forward's steps),
- ``gq gtol=0.1`` and ``gq gtol=1``: the paper's rule with ``C = 0.1`` and 1,
- ``adjoint``: torchdiffeq's ``odeint_adjoint``,

all at the same ``rtol``/``atol`` (each variant that plans called until its plan settles,
so that its error is that of the pass a training run keeps), and prints each one's error
``‖g − g_ref‖ / ‖g_ref‖`` over all parameters, where ``g_ref`` is direct backprop through
a float64 solve at ``rtol = atol = 1e-11``. The column ``÷ adjoint`` is the default's
error over the adjoint's; ``--output`` also writes every error, with the machine, the
versions and the commit, as JSON (``results/benchmarks/gradient_accuracy.json`` is the
committed run that docs/benchmarks.md shows). Problems:

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

from benchmarks.gradient_speed import _Case
from benchmarks.timing import add_output_flag, check_output, record_header, write_record
from gradient_tests.problems import PROBLEM_NAMES as LIBRARY_PROBLEMS
from gradient_tests.problems import REFERENCE, VARIANTS, Problem, flat_gradient, measure
from gradient_tests.problems import problem as library_problem
from torch_gq_adjoint import odeint

PROBLEM_NAMES = LIBRARY_PROBLEMS + (
    'sines10',
    'sines50',
    'sines50irregular',
    'latent16',
    'spheres500',
)


def problem(name):
    """The problem called ``name`` (one of :data:`PROBLEM_NAMES`), fixed seed."""
    if name in LIBRARY_PROBLEMS:
        return library_problem(name)
    if name in PROBLEM_NAMES:
        return _CaseProblem(_Case(name, torch.device('cpu')))
    raise ValueError(f'problem must be one of {", ".join(PROBLEM_NAMES)}; got {name!r}.')


class _CaseProblem(Problem):
    """A case of the speed benchmark (float32 model, decoder, dataset loss)."""

    def __init__(self, case):
        self.case = case
        super().__init__(
            case.func, case.y0, case.t, None, dict(rtol=1e-3, atol=1e-3), torch.float32
        )

    def gradient(self, solve, func=None, y0=None, decoder=None, **tolerances):
        case = self.case
        func = case.func if func is None else func
        decoder = case.decoder if decoder is None else decoder
        y0 = case.y0 if y0 is None else y0
        params = list(func.parameters()) + ([] if decoder is None else list(decoder.parameters()))
        solution = solve(func, y0, case.t.to(y0.dtype), **tolerances)
        return flat_gradient(case.loss(solution, decoder), params)

    def reference(self):
        decoder = None if self.case.decoder is None else copy.deepcopy(self.case.decoder).double()
        return self.gradient(
            odeint,
            func=copy.deepcopy(self.case.func).double(),
            y0=self.case.y0.double(),
            decoder=decoder,
            **REFERENCE,
        ).float()


def header_lines():
    """The table's column names and rule."""
    header = f'{"problem":<17}' + ''.join(f'{name:>13}' for name in VARIANTS) + f'{"÷ adjoint":>11}'
    return [header, '-' * len(header)]


def row(name, errors):
    """One problem's printed row: each variant's error, and the default's ÷ the adjoint's."""
    ratio = errors['gq default'] / errors['adjoint'] if errors['adjoint'] else float('nan')
    return (
        f'{name:<17}'
        + ''.join(f'{errors[variant]:>13.1e}' for variant in VARIANTS)
        + f'{ratio:>11.2f}'
    )


def output_lines(record):
    """What the command printed, rebuilt from its ``--output`` record."""
    return [f'$ {record["command"]}', *header_lines()] + [
        row(name, errors) for name, errors in record['errors'].items()
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.gradient_accuracy', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--problem',
        action='append',
        choices=PROBLEM_NAMES,
        help='problem to run (repeatable; default all)',
    )
    add_output_flag(parser, 'every error, the machine, the versions and the commit')
    args = parser.parse_args(argv)
    check_output(parser, args.output)
    print('\n'.join(header_lines()))
    record = dict(**record_header('benchmarks.gradient_accuracy', 'cpu'), errors={}, ran={})
    for name in args.problem or PROBLEM_NAMES:
        record['ran'][name] = {}
        record['errors'][name] = measure(problem(name), settle=True, ran=record['ran'][name])
        print(row(name, record['errors'][name]), flush=True)
        if args.output is not None:  # after every problem: an interrupted run keeps them
            write_record(args.output, record)
    return record


if __name__ == '__main__':
    main()
