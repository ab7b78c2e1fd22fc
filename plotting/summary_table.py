"""Markdown tables of finished runs: mean ± std training time and final validation loss and
metric by width and method (``python -m plotting.summary_table``), for REPRODUCTION.md."""

import argparse
import pathlib
import sys

import numpy as np

from study import results
from study.grids import EPOCH_TIMES_DIR, STUDIES

#: The option every other option's training time is divided by, where it was run.
REFERENCES = ('adjoint_ode', 'sde_adjoint')
#: Direct backprop, the second reference, where it was run.
DIRECT = ('direct', 'sde_direct')
#: Target validation loss of the "time to reach" column, as a fraction of the mean
#: validation loss before training (epoch 0) at that width.
TARGET_FRACTION = 0.1


def _cell(values, digits):
    values = np.asarray(values, dtype=float)
    return f'{values.mean():.{digits}g} ± {values.std():.1g}'


def target_loss(groups):
    """The validation loss to reach at one width: :data:`TARGET_FRACTION` of the mean
    loss before training over every run of every option there."""
    initial = [run['epoch_loss_history'][0] for found in groups.values() for run in found]
    return TARGET_FRACTION * float(np.mean(initial))


def time_to_loss(run, target):
    """Training seconds until the validation loss first reaches ``target`` (None: never)."""
    reached = np.flatnonzero(np.asarray(run['epoch_loss_history'], dtype=float) <= target)
    return float(np.cumsum(run['epoch_times'])[reached[0]]) if reached.size else None


def _time_to_cell(found, target):
    times = [time_to_loss(run, target) for run in found]
    reached = [value for value in times if value is not None]
    if not reached:
        return 'never'
    cell = _cell(reached, 3)
    return cell if len(reached) == len(times) else f'{cell} ({len(reached)} of {len(times)})'


def table(results_dir, experiment, ablation, title=''):
    """One markdown table, or '' when there are no finished runs.

    Per width and option, mean ± std over repeats of: seconds per training epoch (and,
    where the runs recorded it, the process's CPU seconds per epoch); the forward and
    backward evaluations per training step (means over epochs and repeats); total training
    time, its ratio to the reference option's (adjoint_ode, or sde_adjoint for
    SDEs) and to direct backprop's (direct, or sde_direct) at that width, final validation
    loss and metric, and the training time until the validation loss first reaches the
    width's target (:func:`target_loss`). ``title`` is added to the table's heading.
    """
    return _table_of(
        results.complete_runs(results_dir, experiment, ablation), experiment, ablation, title
    )


def _table_of(runs, experiment, ablation, title=''):
    if not runs:
        return ''
    # The process's CPU seconds per epoch, where the runs recorded them: they move less
    # than wall time when other work shares the machine.
    cpu = any('epoch_cpu_times' in run for found in runs.values() for run in found)
    lines = [
        f'**{experiment} / {ablation}**{title}',
        '',
        '| width | option | repeats | s / epoch | '
        + ('CPU s / epoch | ' if cpu else '')
        + 'NFE / step fwd, bwd | training time (s) | '
        'time ÷ reference | time ÷ direct | final val loss | final val metric | '
        'target loss | time to target (s) |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|' + ('---|' if cpu else ''),
    ]
    for width in sorted({width for width, _ in runs}):
        groups = {option: found for (at, option), found in runs.items() if at == width}
        target = target_loss(groups)
        totals = {
            option: np.mean([run['epoch_times'].sum() for run in found])
            for option, found in groups.items()
        }
        reference = next((option for option in REFERENCES if option in groups), None)
        direct = next((option for option in DIRECT if option in groups), None)
        for option, found in sorted(groups.items()):
            ratios = [
                f'{totals[option] / totals[other]:.3g}' if other else '—'
                for other in (reference, direct)
            ]
            per_epoch = [run['epoch_times'][1:].mean() for run in found]
            nfe = ', '.join(
                f'{np.mean([run[name][1:].mean() for run in found]):.0f}'
                for name in ('epoch_fnfe_history', 'epoch_bnfe_history')
            )
            cpu_cell = ''
            if cpu:
                seconds = [
                    run['epoch_cpu_times'][1:].mean() for run in found if 'epoch_cpu_times' in run
                ]
                cpu_cell = f'{_cell(seconds, 3) if len(seconds) == len(found) else "—"} | '
            lines.append(
                f'| {width} | {option} | {len(found)} | {_cell(per_epoch, 3)} | {cpu_cell}{nfe} | '
                f'{_cell([run["epoch_times"].sum() for run in found], 3)} | '
                f'{" | ".join(ratios)} | '
                f'{_cell([run["epoch_loss_history"][-1] for run in found], 3)} | '
                f'{_cell([run["epoch_val_metric_history"][-1] for run in found], 3)} | '
                f'{target:.3g} | {_time_to_cell(found, target)} |'
            )
    return '\n'.join(lines) + '\n'


def timing_table(results_dir, experiment, ablation):
    """The table of a study's short timing runs (``<results_dir>/epoch_times``), or ''."""
    runs = results.complete_runs(pathlib.Path(results_dir) / EPOCH_TIMES_DIR, experiment, ablation)
    if not runs:
        return ''
    epochs = sorted({len(run['epoch_times']) - 1 for found in runs.values() for run in found})
    return _table_of(
        runs,
        experiment,
        ablation,
        f': short timing runs, the first {"/".join(map(str, epochs))} epochs '
        f'only (results/{EPOCH_TIMES_DIR})',
    )


def found_ablations(results_dir, experiment):
    """The ablation folders of ``experiment`` under ``results_dir`` that hold a run
    (``gtol0.1``, ``digits/32``), sorted."""
    base = pathlib.Path(results_dir) / experiment
    found = set()
    for summary in base.glob('**/' + results.SUMMARY):
        # <ablation...>/<width>/<option>/<number>/summary.json
        parts = summary.relative_to(base).parts[:-4]
        if parts and summary.parent.name.isdigit() and summary.parents[2].name.isdigit():
            found.add('/'.join(parts))
    return sorted(found)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.summary_table', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument(
        '--experiment',
        default=None,
        help='only this experiment (default: every study of experiments/grids.py, then '
        'every other setting found)',
    )
    args = parser.parse_args(argv)
    # The report's studies first, in its order; then whatever else a user ran (another
    # --gtol, --ntimes, --dataset), so that a run with other settings is never missed.
    wanted = [(study.experiment, study.ablation()) for study in STUDIES.values()]
    experiments = dict.fromkeys(experiment for experiment, _ in wanted)
    wanted += [
        (experiment, ablation)
        for experiment in experiments
        for ablation in found_ablations(args.results_dir, experiment)
    ]
    wanted = [
        key for key in dict.fromkeys(wanted) if args.experiment is None or key[0] == args.experiment
    ]
    # A study's short timing runs follow its own table.
    tables = (
        piece(args.results_dir, experiment, ablation)
        for experiment, ablation in wanted
        for piece in (table, timing_table)
    )
    text = '\n'.join(filter(None, tables))
    if not text:
        print(
            f'no finished runs found under {args.results_dir}'
            + (f' for {args.experiment}' if args.experiment else '')
            + ' (--results_dir selects the folder a run wrote to)',
            file=sys.stderr,
        )
        return None
    print(text)
    return text


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
