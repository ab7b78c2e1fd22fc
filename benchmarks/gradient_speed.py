"""Seconds per training step, peak memory and gradient error of the backprop options.

``python -m benchmarks.gradient_speed`` measures, side by side in one run, one training
step (forward solve, loss, backward) of each option on:

- ``spheres<width>``: the nested-spheres model (state 2 + 3 zeros, MLP on ``[z, t]``,
  linear decoder, cross-entropy) on a batch of 200 nested-spheres points, ``t = [0, 1]``;
- ``sines<ntimes>``: the sines second-order model at width 1000 on 15 sine series
  observed at ``ntimes`` regular times on ``[0, 2π]``, mean squared error;
  ``sines50irregular``: the same at 50 irregular times per series, solved on the union of
  the series' times (750 observation times, each series' loss at its own);
- ``latent16``: a latent-ODE-like model, 16 samples of 16 latent dimensions, an
  autonomous MLP of width 100, 50 observation times on ``[0, 5]``, mean squared error.

dopri5, ``rtol = atol = 1e-3``. ``adjoint_gq`` is the paper's rule (``gtol = 0.1``, as the
experiments run it: restarting at every observation time); ``adjoint_gq_restart`` is
``gtol=None`` (error-controlled quadrature, each backward solve started like torchdiffeq's
adjoint) with ``backward='restart'``, ``adjoint_gq_interpolated`` the same with
``backward='interpolated'``, and ``adjoint_gq_default`` the library's defaults (the same
with ``backward='auto'``: at these tolerances the checkpoint and the paper's rule only
where its check of accuracy admits them).
Times are medians over ``--repeats`` steps after one warm-up step (the default's warm-up
lasts until its planner settled), the options taking turns; memory is the extra peak of
one step, measured after all timings; the error is ``‖g - g_direct‖ / ‖g_direct‖`` over
all parameter gradients (``direct`` at the same tolerance, not a tight reference: see
``benchmarks.gradient_accuracy``). Ratios are
against ``adjoint_ode`` and ``direct`` of the same case and run. ``--output FILE`` also
writes every timed step (turn by turn), the memory, the errors, the machine, the versions
and the commit as JSON; the committed record is ``results/benchmarks/gradient_speed.json``.
"""

import argparse
import sys
from functools import partial

import torch
from torch import nn

from benchmarks.memory import peak_memory_bytes
from benchmarks.timing import (
    add_machine_flags,
    add_output_flag,
    check_output,
    record_header,
    settle_plans,
    time_in_turns,
    write_record,
)
from common.arguments import positive_int
from datasets import nested_spheres, sines
from models.backprop import ADJOINT_OPTIONS, integrate
from models.vector_fields import MLPVectorField, SecondOrderVectorField
from torch_gq_adjoint import odeint_adjoint_gq

CASES = (
    'spheres20',
    'spheres500',
    'spheres2000',
    'sines10',
    'sines50',
    'sines50irregular',
    'latent16',
)
#: The experiments' options, then ``gtol=None`` restarting at every observation time, and
#: the library's defaults (``gtol=None``, ``backward='auto'``).
OPTIONS = ADJOINT_OPTIONS + ('adjoint_gq_restart', 'adjoint_gq_interpolated', 'adjoint_gq_default')
LIBRARY_DEFAULTS = {
    'adjoint_gq_restart': dict(gtol=None, backward='restart'),
    'adjoint_gq_interpolated': dict(gtol=None, backward='interpolated'),
    'adjoint_gq_default': dict(),
}
QUICK_CASES = ('spheres20', 'spheres500', 'sines10')
#: Options left out of a case unless asked for by --option: torchdiffeq's adjoint takes
#: minutes per step with 750 observation times.
SKIPPED = {'sines50irregular': ('adjoint_ode', 'adjoint_seminorm')}


class _Case:
    """A model, its data and its loss, built from a fixed seed."""

    def __init__(self, name, device, seed=0):
        torch.manual_seed(seed)
        self.name = name
        if name.startswith('spheres'):
            width = int(name[len('spheres') :])
            points, labels = (torch.from_numpy(array) for array in nested_spheres.sample(100, seed))
            self.y0 = torch.cat([points, torch.zeros(200, 3)], dim=-1).to(device)
            self.labels = labels.to(device)
            self.t = torch.tensor([0.0, 1.0], device=device)
            self.func = MLPVectorField(5, width).to(device)
            self.decoder = nn.Linear(5, 2).to(device)
            self.observed = None
        elif name.startswith('sines'):
            regular = not name.endswith('irregular')
            ntimes = int(name[len('sines') :].replace('irregular', ''))
            initial, times, values = (
                torch.from_numpy(array)
                for array in sines.sample(15, ntimes, regular=regular, seed=seed)
            )
            # Irregular series are solved on the union of their times, as the experiment.
            self.t, self.observed = torch.unique(times, sorted=True, return_inverse=True)
            self.t, self.observed = self.t.to(device), self.observed.to(device)
            self.y0 = initial.to(device)
            self.targets = values.to(device)  # (15, ntimes), as the solution's x
            self.func = SecondOrderVectorField(1000).to(device)
            self.decoder = None
        elif name == 'latent16':
            # A latent-ODE-like case: 16 latent dimensions per sample, 50 observations.
            self.y0 = torch.randn(16, 16, device=device)
            self.t = torch.linspace(0, 5, 50, device=device)
            self.func = MLPVectorField(16, 100, time_dependent=False).to(device)
            self.targets = 0.1 * torch.randn(50, 16, 16, device=device)
            self.observed = None
            self.decoder = None
        else:
            raise ValueError(f'case must be one of {", ".join(CASES)}; got {name!r}.')
        self.params = list(self.func.parameters())
        if self.decoder is not None:
            self.params += list(self.decoder.parameters())

    def parameter_count(self):
        return sum(param.numel() for param in self.params)

    def loss(self, solution, decoder=None):
        """The case's loss of a solution ``(len(t), *y0.shape)`` (``decoder``: a copy of
        the case's, e.g. in float64)."""
        decoder = self.decoder if decoder is None else decoder
        if decoder is not None:
            return nn.functional.cross_entropy(decoder(solution[-1]), self.labels)
        targets = self.targets.to(solution.dtype)
        if self.observed is None:
            return nn.functional.mse_loss(solution, targets)
        series = torch.arange(len(self.y0), device=self.y0.device)[:, None]
        return nn.functional.mse_loss(solution[self.observed, series, 0], targets)

    def step(self, option):
        """One forward and backward; returns the parameter gradients (flat)."""
        if option in LIBRARY_DEFAULTS:
            solution = odeint_adjoint_gq(
                self.func, self.y0, self.t, rtol=1e-3, atol=1e-3, **LIBRARY_DEFAULTS[option]
            )
        else:
            solution = integrate(option, self.func, self.y0, self.t)
        loss = self.loss(solution)
        grads = torch.autograd.grad(loss, self.params)
        return torch.cat([grad.reshape(-1) for grad in grads])


def time_steps(case, options, repeats, device, turns=None):
    """Median seconds per step of each option, and each option's gradient
    (:func:`benchmarks.timing.time_in_turns`), the default timed once its plans settled."""
    if 'adjoint_gq_default' in options:
        settle_plans(partial(case.step, 'adjoint_gq_default'))
    return time_in_turns(
        {option: partial(case.step, option) for option in options}, repeats, device, turns
    )


def _format_memory(value):
    return 'n/a' if value is None else f'{value / 2**20:.1f}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.gradient_speed', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--case',
        action='append',
        choices=CASES,
        help=f'case to run (repeatable; default all: {", ".join(CASES)})',
    )
    parser.add_argument(
        '--option',
        action='append',
        choices=OPTIONS,
        help='backprop option (repeatable; default all; direct is always run as the reference)',
    )
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=5,
        help='timed steps per case and option (default 5)',
    )
    parser.add_argument(
        '--quick',
        action='store_true',
        help=f'cases {", ".join(QUICK_CASES)} with 1 repeat (well under a minute)',
    )
    add_output_flag(parser, 'every timed step, memory, error, machine and versions')
    add_machine_flags(parser)
    args = parser.parse_args(argv)
    check_output(parser, args.output)
    if args.quick:
        args.case = args.case or list(QUICK_CASES)
        args.repeats = 1
    args.case = args.case or list(CASES)
    args.chosen_options = args.option is not None
    options = args.option or list(OPTIONS)
    args.option = ['direct'] + [option for option in options if option != 'direct']
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # The commit and the tree as the run starts (the code that ran).
    started = record_header('benchmarks.gradient_speed', args.device)
    header = (
        f'{"case":<16} {"option":<23} {"params":>9} {"s/step":>9} {"peak MiB":>9} '
        f'{"rel err":>9} {"÷ adj_ode":>9} {"÷ direct":>9}'
    )
    print(
        f'device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, '
        f'dopri5 rtol=atol=1e-3, adjoint_gq gtol=0.1, adjoint_gq_restart gtol=None '
        f"backward='restart', adjoint_gq_interpolated gtol=None backward='interpolated', "
        f"adjoint_gq_default gtol=None backward='auto', "
        f'median of {args.repeats}'
    )
    print(header)
    print('-' * len(header))
    cases = {name: _Case(name, args.device) for name in args.case}
    options = {
        name: [
            option
            for option in args.option
            if args.chosen_options or option not in SKIPPED.get(name, ())
        ]
        for name in cases
    }
    timings, turns = {}, {}
    for name, case in cases.items():
        print(f'timing {name} ...', file=sys.stderr, flush=True)
        turns[name] = {}
        timings[name] = time_steps(case, options[name], args.repeats, args.device, turns[name])
    recorded = {}
    # Memory only after every timing: on CPU its measurement changes how glibc hands
    # out memory for the rest of the process, which would slow the steps being timed.
    for name, case in cases.items():
        memories = {
            option: peak_memory_bytes(partial(case.step, option), args.device)
            for option in options[name]
        }
        _print_case(name, case, timings[name], memories)
        recorded[name] = _case_record(case, timings[name], turns[name], memories)
        if args.output is not None:
            # After each case: an interrupted run keeps the cases it finished.
            write_record(
                args.output,
                dict(**started, cases=recorded),
            )


def _case_record(case, timings, turns, memories):
    """One case of the JSON record: per option its seconds turn by turn, median, peak
    memory (bytes) and gradient error against direct backprop."""
    reference = timings['direct'][1]
    return dict(
        parameters=case.parameter_count(),
        options={
            option: dict(
                seconds=seconds,
                turns=turns[option],
                memory=memories[option],
                error=((gradient - reference).norm() / reference.norm()).item(),
            )
            for option, (seconds, gradient) in timings.items()
        },
    )


def _print_case(name, case, timings, memories):
    reference = timings['direct'][1]
    for option, (seconds, gradient) in timings.items():
        error = ((gradient - reference).norm() / reference.norm()).item()
        versus_adjoint = (
            f'{seconds / timings["adjoint_ode"][0]:.3f}' if 'adjoint_ode' in timings else '-'
        )
        print(
            f'{name:<16} {option:<23} {case.parameter_count():>9} {seconds:>9.4f} '
            f'{_format_memory(memories[option]):>9} {error:>9.1e} {versus_adjoint:>9} '
            f'{seconds / timings["direct"][0]:>9.3f}',
            flush=True,
        )


if __name__ == '__main__':
    main()
