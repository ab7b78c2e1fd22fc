"""The command line of the grid table (:mod:`study.grids`).

``python -m experiments.grids runs EXPERIMENT [--grid G] [--results_dir D] [--log_dir L]
[-- FLAG ...]`` prints one line per run: the run's folder, its log file, then the
arguments of ``python``, all separated by tabs (so that paths may hold spaces).
``python -m experiments.grids studies [--grid G]`` prints a grid's studies
(:data:`STUDIES`), one per line: the experiment, then its flags, tab-separated.
``python -m experiments.grids plan [--grid G] [--results_dir D]`` prints, study by study,
how many runs the grid has, how many of them ``D`` already holds complete and how many
would start or resume, with the grid's measured budget where there is one (what
``scripts/reproduce.sh --dry-run`` shows).
``python -m experiments.grids budget EXPERIMENT [--grid G] [--epochs E] [--jobs J]``
times E epochs of one repeat of each option and width and estimates the grid's
wall-clock time, the measurement to write next to a grid as its ``budget``.
"""

import argparse
import signal
import sys

from common.arguments import positive_int
from study import results
from study.grids import EXPERIMENTS, GRID_NAMES, plan, runs, studies_of


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m experiments.grids', description=__doc__.split('\n\n')[0]
    )
    commands = parser.add_subparsers(dest='command', required=True)
    lister = commands.add_parser('runs', help='print the runs of a grid, one per line')
    lister.add_argument('experiment', choices=EXPERIMENTS)
    lister.add_argument(
        '--grid', choices=GRID_NAMES, default='paper', help='which grid (default paper)'
    )
    lister.add_argument('--results_dir', default=str(results.RUNS_DIR))
    lister.add_argument('--log_dir', default='logs')
    lister_studies = commands.add_parser(
        'studies',
        help="print a grid's studies: the experiment, then its study flags, "
        'tab-separated, one per line',
    )
    lister_studies.add_argument(
        '--grid', choices=GRID_NAMES, default='reduced', help='which grid (default reduced)'
    )
    planner = commands.add_parser(
        'plan', help='how many runs of each study a sweep would start, and its budget'
    )
    planner.add_argument(
        '--grid', choices=GRID_NAMES, default='reduced', help='which grid (default reduced)'
    )
    planner.add_argument('--results_dir', default=str(results.RUNS_DIR))
    budget = commands.add_parser(
        'budget', help="estimate a grid's wall-clock time from a few epochs of each run"
    )
    budget.add_argument('experiment', choices=EXPERIMENTS)
    budget.add_argument(
        '--grid', choices=GRID_NAMES, default='reduced', help='which grid (default reduced)'
    )
    budget.add_argument(
        '--epochs',
        type=positive_int,
        default=2,
        help='epochs measured per option and width (default 2)',
    )
    budget.add_argument(
        '--jobs', type=positive_int, default=2, help='runs at once in the sweep (default 2)'
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the study's flags, passed on to every run as they are.
    flags = argv[argv.index('--') + 1 :] if '--' in argv else []
    args = parser.parse_args(argv[: argv.index('--')] if '--' in argv else argv)
    if args.command == 'budget':
        from experiments.budget import estimate  # measures runs: imports every experiment

        rows, total = estimate(args.experiment, args.grid, flags, args.epochs, args.jobs)
        print(f'{"option":<22} {"width":>6} {f"s / {args.epochs} epochs":>14} {"s / run":>10}')
        for option, width, seconds, per_run in rows:
            print(f'{option:<22} {width:>6} {seconds:>14.2f} {per_run:>10.1f}')
        print(
            f'{args.experiment} {args.grid}: about {total / 60:.1f} min with --jobs '
            f'{args.jobs} (one thread per run)'
        )
        return total
    if args.command == 'plan':
        rows = plan(args.grid, args.results_dir)
        header = f'{"study":<22} {"runs":>5} {"complete":>9} {"to run":>7}'
        print(f'{header}  budget (2 cores, --jobs 2)')
        shown = set()
        for name, total, complete, left, budget in rows:
            # Studies of one experiment share its grid's budget: print it once.
            note = '(the same grid as above)' if budget in shown else budget or 'not measured'
            shown.add(budget)
            print(f'{name:<22} {total:>5} {complete:>9} {left:>7}  {note}')
        print(
            f'{args.grid} grid: {sum(row[3] for row in rows)} of {sum(row[1] for row in rows)} '
            f'runs to start or resume into {args.results_dir}, then the toy gradient and the '
            'figures'
        )
        return rows
    if args.command == 'studies':
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for _, study in studies_of(args.grid):
            sys.stdout.write('\t'.join((study.experiment, *study.flags_of(args.grid))) + '\n')
        return None
    # Piped into head or a pager that stops reading: end quietly, as other listings do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    for run in runs(args.experiment, args.grid, flags, args.results_dir, args.log_dir):
        fields = (str(run.folder), str(run.log), *run.argv)
        if any('\t' in value or '\n' in value for value in fields):
            parser.error('paths and flags must not contain tabs or newlines')
        sys.stdout.write('\t'.join(fields) + '\n')


if __name__ == '__main__':
    main()
