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
extra peak memory of one step (the median of :data:`MEMORY_READINGS` readings); the
relative error of the parameter gradient against a
tight reference (direct backpropagation in float64 at rtol = atol = 1e-10); and, for the
library's modes, what ran (the ``info`` argument): the backward pass the default chose,
the forward and backward evaluations, and the quadrature nodes.

With ``--train``, each workload then trains for a whole run (its ``train_steps``, or
``--steps``) under direct backprop, the default and every forced pass of the adjoint's
accuracy (those ``'auto'`` may take) that the one-step timings put within
:data:`TRAIN_WITHIN` of the fastest of them, the modes taking turns
(:mod:`benchmarks.training`): the mean step over the run, its ratio to direct backprop
(chunk by chunk: median and quartiles), the default's ratio to the fastest single pass,
which passes served the default's calls and how many calls its planner spent exploring.
``--output`` writes every measured second, with the machine and versions, as JSON.
"""

import argparse
import math
import pathlib
import statistics
import sys
import warnings

import torch
import torchdiffeq

from benchmarks import torchode_mode, training
from benchmarks.memory import peak_memory_bytes
from benchmarks.timing import (
    add_machine_flags,
    add_output_flag,
    check_output,
    paired_ratios,
    record_header,
    settle_plans,
    time_in_turns,
    write_record,
)
from benchmarks.workloads import WORKLOADS, build
from common.arguments import positive_int
from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl.checks import tight_enough

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
#: The forced passes a training run includes: those within this factor of the fastest
#: (adjoint-level) forced pass in the one-step timings.
TRAIN_WITHIN = 1.5
FORCED = training.FORCED


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


#: Readings of one step's peak memory per mode (the modes in turns); the median is quoted.
MEMORY_READINGS = 3


def memory_readings(runners, device, readings=MEMORY_READINGS):
    """``{mode: [bytes, ...]}``: the extra peak memory of ``readings`` steps per mode, the
    modes taking turns. One reading of the resident set moves by a MiB or so from step to
    step; the median of a few says whether a mode needs more than another."""
    found = {mode: [] for mode in runners}
    for _ in range(readings):
        for mode, runner in runners.items():
            found[mode].append(peak_memory_bytes(runner, device))
    return found


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
            if mode == 'gq default':
                settle_plans(runner)
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
            turns=turns[mode],
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
    parser.add_argument(
        '--train',
        action='store_true',
        help='also train each workload for a whole run per mode (see the module docstring)',
    )
    parser.add_argument(
        '--steps',
        type=positive_int,
        default=None,
        help="training steps per mode with --train (default: each workload's own)",
    )
    add_output_flag(parser, 'every measured second, machine and versions')
    add_machine_flags(parser)
    args = parser.parse_args(argv)
    if args.steps is not None and not args.train:
        parser.error('--steps: only with --train')
    check_output(parser, args.output)
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
    # The commit and the tree as the run starts: the code that ran, not the code there
    # when a later workload's results are written.
    args.record_header = record_header('benchmarks.clients', args.device)
    for line in header_lines(args.device, torch.__version__, torch.get_num_threads(), args.repeats):
        print(line)
    all_results, all_trained = {}, {}
    for name in args.workload:
        print(f'timing {name} ...', file=sys.stderr, flush=True)
        try:
            reference = reference_gradient(name, args.device)
        except Exception as error:  # noqa: BLE001 - the other workloads still run
            # Recorded too, so that the output rebuilt from the record shows it.
            all_results[name] = {'reference': dict(failed=f'{type(error).__name__}: {error}')}
            print('\n'.join(one_step_lines(name, all_results[name])), flush=True)
            if args.output is not None:
                _write_output(args, all_results, all_trained)
            continue
        results, runners = measure(name, args.mode, args.repeats, args.device)
        # Memory after the timings: measuring it changes how glibc hands out memory.
        for mode, readings in memory_readings(runners, args.device).items():
            results[mode]['memory_readings'] = readings
            results[mode]['memory'] = None if None in readings else int(statistics.median(readings))
        for result in results.values():
            if 'failed' in result:
                continue
            gradient = result['gradient'].to(reference)
            result['error'] = ((gradient - reference).norm() / reference.norm()).item()
        all_results[name] = record_one_step(results)
        print('\n'.join(one_step_lines(name, all_results[name])), flush=True)
        if args.train:
            workload = build(name, torch.float32, 'cpu')
            steps = args.steps or workload.train_steps
            modes = training_modes(results, tight_enough(workload.solver_kwargs['rtol']))
            print(f'training {name}: {steps} steps of {", ".join(modes)} ...', file=sys.stderr)
            trained = training.train_in_turns(name, modes, _Runner, steps, args.device)
            all_trained[name] = record_training(trained)
            lines = training_lines(name, all_trained[name], all_results[name])
            print('\n'.join(lines), flush=True)
        if args.output is not None:  # after every workload: an interrupted run keeps them
            _write_output(args, all_results, all_trained)
    if args.output is not None:
        print(f'raw output: {args.output}', file=sys.stderr)
    if args.figure is not None:
        from benchmarks.memory_time import draw

        draw(all_results, args.figure)
        print(f'figure: {args.figure}', file=sys.stderr)
    return all_results


def one_step_lines(name, results):
    """The printed lines of one workload's single steps.

    Args:
        name: the workload.
        results: ``{mode: dict(seconds, memory, error, info, paired)}`` or
            ``{mode: dict(failed=reason)}``, as measured or as the record holds them.
    """
    if set(results) == {'reference'}:
        return [f'{name:<15} reference failed: {results["reference"]["failed"]}']
    adjoint = results['adjoint'].get('seconds', math.nan)
    direct = results['direct'].get('seconds', math.nan)
    lines = []
    for mode, result in results.items():
        if 'failed' in result:
            lines.append(f'{name:<15} {mode:<14} failed: {result["failed"]}')
            continue
        memory = result['memory']
        memory = 'n/a' if memory is None else f'{memory / 2**20:.1f}'
        lines.append(
            f'{name:<15} {mode:<14} {result["seconds"]:>8.4f} '
            f'{result["seconds"] / adjoint:>9.2f} {result["seconds"] / direct:>8.2f} '
            f'{memory:>8} {result["error"]:>8.1e}  {_what_ran(result["info"])}'.rstrip()
        )
    default = results.get('gq default', {})
    if default.get('paired') is not None:
        middle, lower, upper = default['paired']
        lines.append(
            f'{name:<15} gq default ÷ direct, turn by turn: median {middle:.2f}, '
            f'quartiles {lower:.2f}–{upper:.2f}'
        )
    return lines


def training_modes(results, tight):
    """Direct backprop, the default, and the forced passes of the adjoint's accuracy
    within :data:`TRAIN_WITHIN` of the fastest of them in the one-step ``results``: the
    checkpoint where the tolerances are ``tight``; where they are not, the checkpoint and
    the paper's rule where their gradient error was within twice the adjoint's (the
    passes the default may take there, after its check of accuracy)."""

    def admissible(mode):
        if mode not in ('gq checkpoint', training.PAPER_MODE):
            return True
        if tight:
            return mode == 'gq checkpoint'
        error, adjoint = results[mode].get('error'), results['adjoint'].get('error')
        return None not in (error, adjoint) and error <= 2 * adjoint

    forced = {
        mode: results[mode]['seconds']
        for mode in FORCED
        if mode in results and 'failed' not in results[mode] and admissible(mode)
    }
    fastest = min(forced.values(), default=math.inf)
    chosen = [mode for mode, seconds in forced.items() if seconds <= TRAIN_WITHIN * fastest]
    return ['direct', 'gq default'] + chosen


def training_lines(name, trained, results):
    """The printed lines of one workload's training runs.

    Args:
        name: the workload.
        trained: ``{mode: dict(seconds, losses, passes, plans)}`` in the record's form
            (:func:`record_training`).
        results: the same workload's single steps (for the plan's gradient error).
    """
    direct = trained.get('direct', {}).get('seconds')
    means = {
        mode: sum(run['seconds']) / len(run['seconds'])
        for mode, run in trained.items()
        if 'failed' not in run
    }
    lines = []
    for mode, run in trained.items():
        if 'failed' in run:
            lines.append(f'{name:<15} {mode:<15} training failed: {run["failed"]}')
            continue
        ratio = '' if direct is None else _ratio_text(training.chunk_ratios(run['seconds'], direct))
        lines.append(
            f'{name:<15} {mode:<15} {len(run["seconds"]):>5} steps {means[mode]:>8.4f} s/step '
            f'÷ direct {means[mode] / means.get("direct", math.nan):5.2f} ({ratio}) '
            f'loss {run["losses"][0]:.3g} → {run["losses"][1]:.3g}'
        )
    default = trained.get('gq default', {})
    if 'failed' in default or not default:
        return lines
    forced = {mode: seconds for mode, seconds in means.items() if mode in FORCED}
    if forced:
        fastest = min(forced, key=forced.get)
        lines.append(
            f'{name:<15} gq default ÷ the fastest single pass ({fastest[3:]}): '
            f'{means["gq default"] / forced[fastest]:.2f}'
        )
    plans = default.get('plans', [])
    explored, calls = training.exploring(plans)
    # Most used first; equal counts keep the order the passes were first used in.
    passes = ', '.join(
        f'{what} {count}' for what, count in sorted(default['passes'].items(), key=lambda i: -i[1])
    )
    choices = training.choices(plans)
    errors = ', '.join(
        f'{choice} {results[training.mode_of(choice)]["error"]:.1e}'
        for choice in choices
        if choice and 'error' in results.get(training.mode_of(choice), {})
    )
    chosen = ', '.join(choice or '?' for choice in choices)
    lines.append(
        f'{name:<15} gq default ran: {passes}; planned {chosen or "nothing"}; explored '
        f'{explored} of {calls} calls ({100 * explored / max(calls, 1):.1f} %); one-step '
        f'gradient error of the plan: {errors or "n/a"} (adjoint '
        f'{results["adjoint"].get("error", math.nan):.1e})'
    )
    return lines


def _ratio_text(paired):
    middle, lower, upper = paired
    return f'chunks: median {middle:.2f}, quartiles {lower:.2f}–{upper:.2f}'


def header_lines(device, torch_version, threads, repeats):
    """The table's first lines: the machine, what the columns hold, the column names."""
    header = (
        f'{"workload":<15} {"mode":<14} {"s/step":>8} {"÷ adjoint":>9} {"÷ direct":>8} '
        f'{"peak MiB":>8} {"grad err":>8}  what ran'
    )
    return [
        f'device {device}, torch {torch_version}, threads {threads}, median of {repeats} '
        'steps (the default after its planner settled); error against direct backprop in '
        f'float64 at tolerance {REFERENCE_TOLERANCE:g}',
        header,
        '-' * (len(header) + 24),
    ]


def output_lines(record):
    """Everything ``benchmarks.clients`` printed for a run, rebuilt from its ``--output``
    record: docs/benchmarks.md shows these lines, so they cannot drift from the file."""
    repeats = record.get('repeats') or next(
        (
            len(mode['turns'])
            for steps in record['one_step'].values()
            for mode in steps.values()
            if 'turns' in mode
        ),
        0,
    )
    lines = [f'$ {record["command"]}'] + header_lines(
        record['machine']['device'],
        record['versions']['torch'],
        record['machine']['threads'],
        repeats,
    )
    for name, results in record['one_step'].items():
        lines += one_step_lines(name, results)
        if name in record.get('training', {}):
            lines += training_lines(name, record['training'][name], results)
    return lines


#: The keys of a single step's result that the record keeps.
RECORDED = ('failed', 'seconds', 'turns', 'memory', 'memory_readings', 'error', 'info', 'paired')


def record_one_step(results):
    """One workload's single steps in the record's form (JSON-ready)."""
    return {
        mode: {key: value for key, value in result.items() if key in RECORDED}
        for mode, result in results.items()
    }


def record_training(trained):
    """One workload's training runs in the record's form: the default's plans as the
    library prints them (:func:`torch_gq_adjoint.plans`)."""
    return {
        mode: dict(failed=run['failed'])
        if 'failed' in run
        else dict(
            seconds=run['seconds'],
            losses=run['losses'],
            passes=dict(run['passes']),
            plans=[str(plan) for plan in run.get('plans', [])],
        )
        for mode, run in trained.items()
    }


def _write_output(args, results, trained):
    """Every measured second, the machine and the versions, as JSON (``--output``)."""
    record = dict(
        **args.record_header,
        repeats=args.repeats,
        one_step=results,
        training=trained,
    )
    write_record(args.output, record)


if __name__ == '__main__':
    main()
