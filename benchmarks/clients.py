"""Seconds per training step of neural ODE workloads, every way of backpropagating.

``python -m benchmarks.clients`` runs each workload of :mod:`benchmarks.workloads` with
direct backpropagation (``torchdiffeq.odeint``), torchdiffeq's adjoint, and
:func:`odeint_adjoint_gq` with its default and with each ``backward`` forced, side by
side in one run (and with torchode, a parallel ODE solver a user might pick instead,
where it is installed: :mod:`benchmarks.torchode_mode`). A mode that fails shows as
failed in its row, with the reason. It prints, per workload and mode: the median seconds
of one training step (forward, loss, backward) over ``--repeats`` steps after a warm-up,
the modes taking turns; its ratio to the adjoint's and to direct backpropagation's
(and, for the default, the ratio to direct's step in each turn: its median and
quartiles, the spread a single ratio hides); the
extra peak memory of one step; the relative error of the parameter gradient against a
tight reference (direct backpropagation in float64 at rtol = atol = 1e-10); and, for the
library's modes, what ran (the ``info`` argument): the backward pass the default chose,
the forward and backward evaluations, and the quadrature nodes.
"""

import argparse
import math
import pathlib
import sys
import warnings

import torch
import torchdiffeq

from benchmarks import torchode_mode
from benchmarks.memory import peak_memory_bytes
from benchmarks.timing import add_machine_flags, paired_ratios, time_in_turns
from benchmarks.workloads import WORKLOADS, build
from common.arguments import positive_int
from torch_gq_adjoint import odeint_adjoint_gq

#: ``{mode: (solver, keyword arguments)}``; ``gq gtol=0.1`` is the paper's rule.
MODES = {
    'direct': (torchdiffeq.odeint, {}),
    'adjoint': (torchdiffeq.odeint_adjoint, {}),
    'gq default': (odeint_adjoint_gq, {}),
    'gq restart': (odeint_adjoint_gq, dict(backward='restart')),
    'gq propagator': (odeint_adjoint_gq, dict(backward='propagator')),
    'gq checkpoint': (odeint_adjoint_gq, dict(backward='checkpoint')),
    'gq interpolated': (odeint_adjoint_gq, dict(backward='interpolated')),
    'gq gtol=0.1': (odeint_adjoint_gq, dict(gtol=0.1, backward='restart')),
}
if torchode_mode.available():
    MODES['torchode'] = (torchode_mode.odeint, {})
REFERENCE_TOLERANCE = 1e-10
QUICK = ('spiral', 'bouncing_ball')


class _Runner:
    """One workload's training step under one mode; the library's ``info`` is kept."""

    def __init__(self, workload, mode):
        self.workload = workload
        solver, kwargs = MODES[mode]
        self.info = {} if solver is odeint_adjoint_gq else None
        extra = dict(kwargs, info=self.info) if self.info is not None else kwargs

        def solve(func, y0, t, **solver_kwargs):
            return solver(func, y0, t, **solver_kwargs, **extra)

        self.solve = solve

    def __call__(self):
        loss = self.workload.loss(self.solve)
        grads = torch.autograd.grad(loss, self.workload.params, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(param) if grad is None else grad).reshape(-1)
                for param, grad in zip(self.workload.params, grads)
            ]
        )


def reference_gradient(name, device):
    """Direct backpropagation in float64 at rtol = atol = :data:`REFERENCE_TOLERANCE`."""
    workload = build(name, torch.float64, device)
    workload.solver_kwargs = dict(
        workload.solver_kwargs, rtol=REFERENCE_TOLERANCE, atol=REFERENCE_TOLERANCE
    )
    return _Runner(workload, 'direct')()


def measure(name, modes, repeats, device):
    """``{mode: dict(seconds, gradient, info, memory)}`` for one workload, and the runners
    that worked. A mode whose step raises is left out of the timing and reported as
    ``dict(failed=reason)``: one mode's failure (a reference's included) must not hide the
    rest of the table."""
    workload = build(name, torch.float32, device)
    runners, failed = {}, {}
    for mode in modes:
        runner = _Runner(workload, mode)
        try:
            runner()
        except Exception as error:  # noqa: BLE001 - reported in the table, not raised
            failed[mode] = dict(failed=f'{type(error).__name__}: {str(error).splitlines()[0]}')
            continue
        runners[mode] = runner
    turns = {}
    timed = time_in_turns(runners, repeats, device, turns)
    results = {
        mode: dict(
            seconds=seconds,
            gradient=gradient,
            info=None if runners[mode].info is None else dict(runners[mode].info),
            # Each turn's ratio to direct backprop's step in the same turn.
            paired=paired_ratios(turns, mode, 'direct') if 'direct' in turns else None,
        )
        for mode, (seconds, gradient) in timed.items()
    }
    results.update(failed)
    return {mode: results[mode] for mode in modes}, runners


def _what_ran(info):
    if info is None:
        return ''
    ran = (
        f'{info.get("backward", "?")} nfe {info.get("forward_nfe", 0)}+'
        f'{info.get("backward_nfe", 0)}'
    )
    if info.get('nodes'):
        ran += f' nodes {info["nodes"]}'
    return ran


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.clients', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--workload',
        action='append',
        choices=WORKLOADS,
        help=f'workload (repeatable; default all: {", ".join(WORKLOADS)})',
    )
    parser.add_argument(
        '--mode',
        action='append',
        choices=list(MODES),
        help='mode (repeatable; default all; direct and adjoint always run)',
    )
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=3,
        help='timed steps per workload and mode (default 3)',
    )
    parser.add_argument(
        '--quick', action='store_true', help=f'workloads {", ".join(QUICK)}, 1 repeat'
    )
    parser.add_argument(
        '--figure',
        type=pathlib.Path,
        default=None,
        help='also draw peak memory against seconds per step, one panel '
        'per workload, into this PNG file',
    )
    add_machine_flags(parser)
    args = parser.parse_args(argv)
    if args.figure is not None and not args.figure.parent.is_dir():
        parser.error(f'--figure: the folder {args.figure.parent} does not exist')
    if args.quick:
        args.workload = args.workload or list(QUICK)
        args.repeats = 1
    args.workload = args.workload or list(WORKLOADS)
    chosen = args.mode or list(MODES)
    args.mode = ['direct', 'adjoint'] + [
        mode for mode in chosen if mode not in ('direct', 'adjoint')
    ]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter('ignore')  # fall-back notices; what ran is printed instead
    print(
        f'device {args.device}, torch {torch.__version__}, threads '
        f'{torch.get_num_threads()}, median of {args.repeats} steps; error against direct '
        f'backprop in float64 at tolerance {REFERENCE_TOLERANCE:g}'
    )
    header = (
        f'{"workload":<15} {"mode":<14} {"s/step":>8} {"÷ adjoint":>9} {"÷ direct":>8} '
        f'{"peak MiB":>8} {"grad err":>8}  what ran'
    )
    print(header)
    print('-' * (len(header) + 24))
    all_results = {}
    for name in args.workload:
        print(f'timing {name} ...', file=sys.stderr, flush=True)
        try:
            reference = reference_gradient(name, args.device)
        except Exception as error:  # noqa: BLE001 - the other workloads still run
            print(f'{name:<15} reference failed: {type(error).__name__}: {error}', flush=True)
            continue
        results, runners = measure(name, args.mode, args.repeats, args.device)
        # Memory after the timings: measuring it changes how glibc hands out memory.
        for mode, runner in runners.items():
            results[mode]['memory'] = peak_memory_bytes(runner, args.device)
        for result in results.values():
            if 'failed' in result:
                continue
            gradient = result['gradient'].to(reference)
            result['error'] = ((gradient - reference).norm() / reference.norm()).item()
        _print(name, results)
        all_results[name] = results
    if args.figure is not None:
        from benchmarks.memory_time import draw

        draw(all_results, args.figure)
        print(f'figure: {args.figure}', file=sys.stderr)
    return all_results


def _print(name, results):
    adjoint = results['adjoint'].get('seconds', math.nan)
    direct = results['direct'].get('seconds', math.nan)
    for mode, result in results.items():
        if 'failed' in result:
            print(f'{name:<15} {mode:<14} failed: {result["failed"]}', flush=True)
            continue
        memory = result['memory']
        memory = 'n/a' if memory is None else f'{memory / 2**20:.1f}'
        print(
            f'{name:<15} {mode:<14} {result["seconds"]:>8.4f} '
            f'{result["seconds"] / adjoint:>9.2f} {result["seconds"] / direct:>8.2f} '
            f'{memory:>8} {result["error"]:>8.1e}  {_what_ran(result["info"])}',
            flush=True,
        )
    default = results.get('gq default', {})
    if default.get('paired') is not None:
        middle, lower, upper = default['paired']
        print(
            f'{name:<15} gq default ÷ direct, turn by turn: median {middle:.2f}, '
            f'quartiles {lower:.2f}–{upper:.2f}',
            flush=True,
        )


if __name__ == '__main__':
    main()
