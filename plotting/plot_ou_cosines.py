"""Figure 3's cosines ablation: the GQ adjoint's validation KL and training time against
the number of cosines of the Brownian approximation (Ornstein–Uhlenbeck, width 5), and
the same numbers as a table (``python -m plotting.plot_ou_cosines``).

Each point is the mean ± standard deviation over the finished repeats at one number of
cosines (:data:`study.grids.OU_COSINES`); 0 cosines is an ODE, no noise at all.
The table (markdown, on stdout) gives each number's repeats, KL, log-likelihood and
training time, the repeats' own values beside the mean.
"""

import argparse
import sys

import numpy as np

from common.arguments import positive_int
from plotting import add_plots_dir, plots_dir
from plotting.style import line_style, plt, save
from study import results
from study.grids import EXPERIMENTS, OU_COSINES

NAME = 'ou_cosines'
OPTION = 'adjoint_gq'


def collect(results_dir, width):
    """``{ncosines: [run, ...]}`` of the finished GQ runs at ``width``, for every number of
    :data:`OU_COSINES` that has any."""
    spec = EXPERIMENTS['ornstein_uhlenbeck']
    found = {}
    for number in OU_COSINES:
        ablation = spec.ablation_of(['--ncosines', str(number)])
        runs = results.complete_runs(results_dir, spec.name, ablation).get((width, OPTION))
        if runs:
            found[number] = runs
    return found


def table(found):
    """The ablation as markdown rows (a header first)."""
    rows = [
        '| cosines | repeats | validation KL | log-likelihood | training time (s) |',
        '|---|---|---|---|---|',
    ]
    for number, runs in found.items():
        kl = [run['epoch_loss_history'][-1] for run in runs]
        likelihood = [run['epoch_val_metric_history'][-1] for run in runs]
        seconds = [run['epoch_times'].sum() for run in runs]
        rows.append(
            f'| {number} | {len(runs)} | {_cell(kl, ".3f")} | '
            f'{_cell(likelihood, ".3f")} | {_cell(seconds, ".0f")} |'
        )
    return rows


def _cell(values, spec):
    each = ', '.join(format(value, spec) for value in values)
    return f'{np.mean(values):{spec}} ({each})'


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_ou_cosines', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--width',
        type=positive_int,
        default=5,
        help="width of the runs (default 5, the ablation's)",
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    found = collect(args.results_dir, args.width)
    if not found:
        print(
            f'nothing to plot: no finished {OPTION} runs of ornstein_uhlenbeck at width '
            f'{args.width} in {args.results_dir}; no figure written',
            file=sys.stderr,
        )
        return None
    numbers = list(found)
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, (values, label) in zip(
        axes,
        (
            (
                [[run['epoch_loss_history'][-1] for run in runs] for runs in found.values()],
                'validation KL (final epoch)',
            ),
            (
                [[run['epoch_times'].sum() for run in runs] for runs in found.values()],
                'training time (s)',
            ),
        ),
    ):
        means = [np.mean(each) for each in values]
        spreads = [np.std(each) for each in values]
        axis.errorbar(numbers, means, yerr=spreads, capsize=3, **line_style(OPTION, 0))
        for number, each in zip(numbers, values):
            # Every repeat, small, beside the mean: two repeats make a thin error bar.
            axis.plot([number] * len(each), each, linestyle='none', marker='.', color='grey')
        # 0 cosines sits on a linear stretch below 1; the rest spread logarithmically.
        axis.set_xscale('symlog', linthresh=1)
        axis.set_xticks(numbers, [str(number) for number in numbers])
        axis.set(xlabel='cosines of the Brownian approximation (0: an ODE)', ylabel=label)
    axes[0].legend()
    # From zero: the times differ by a few per cent, and a cropped axis would make that
    # look like a trend.
    axes[1].set_ylim(bottom=0)
    figure.suptitle(f'Ornstein–Uhlenbeck, width {args.width}: the number of cosines')
    figure.subplots_adjust(wspace=0.3)
    paths = save(figure, args.plots_dir, NAME)
    print('\n'.join(table(found)))
    print(f'wrote {paths[0]} and {paths[1]} (cosines {", ".join(map(str, numbers))})')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
