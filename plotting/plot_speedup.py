"""The figure that says it all: training time of the GQ adjoint ÷ the adjoint's and ÷
direct backprop's against width, one line per study (``python -m plotting.plot_speedup``).

Each point is the mean total training time of the finished ``adjoint_gq`` runs at one
width over the mean of the reference option's runs at that width (``adjoint_ode``, or
torchsde's ``sde_adjoint`` for the SDE; ``direct``, or ``sde_direct``), from the runs of
every study of :data:`experiments.grids.STUDIES` found under ``--results_dir``. Below 1,
GQ trained faster. Where the adjoint only ran a few epochs (the short timing runs of
``results/epoch_times``), its point is hollow: GQ's seconds per epoch ÷ the adjoint's
over those epochs; likewise for direct backprop.
"""

import argparse
import pathlib
import sys

import numpy as np

from experiments import results
from experiments.grids import EPOCH_TIMES_DIR, STUDIES
from plotting import PLOTS_DIR
from plotting.style import plt, readable_log_ticks, save

#: (adjoint reference, direct reference) per experiment: the SDE has torchsde's options.
REFERENCES = {'ornstein_uhlenbeck': ('sde_adjoint', 'sde_direct')}
DEFAULT_REFERENCES = ('adjoint_ode', 'direct')
NAME = 'speedup'


def ratios(results_dir, study):
    """``(widths, ÷ adjoint, ÷ direct, short adjoint, short direct)`` of one study (NaN
    where a reference is missing).

    Where a reference has no full runs at a width but the study's short timing runs
    (``<results_dir>/epoch_times``) have it and GQ there, its ratio is that of their mean
    seconds per epoch, and its ``short`` (a boolean array) is True there.
    """
    runs = results.complete_runs(results_dir, study.experiment, study.ablation())
    timed = results.complete_runs(
        pathlib.Path(results_dir) / EPOCH_TIMES_DIR, study.experiment, study.ablation()
    )
    adjoint, direct = REFERENCES.get(study.experiment, DEFAULT_REFERENCES)
    widths = sorted({width for width, option in runs if option == 'adjoint_gq'})

    def mean_time(found, width, option, per_epoch=False):
        found = found.get((width, option))
        if not found:
            return np.nan
        return np.mean(
            [
                run['epoch_times'][1:].mean() if per_epoch else run['epoch_times'].sum()
                for run in found
            ]
        )

    gq = np.array([mean_time(runs, width, 'adjoint_gq') for width in widths])

    def versus(reference):
        found = gq / np.array([mean_time(runs, width, reference) for width in widths])
        short = np.zeros(len(widths), dtype=bool)
        for index, width in enumerate(widths):
            if np.isnan(found[index]):
                # GQ's own short runs where it has them (the same few epochs), else its
                # full runs' seconds per epoch.
                gq_epoch = mean_time(timed, width, 'adjoint_gq', True)
                if np.isnan(gq_epoch):
                    gq_epoch = mean_time(runs, width, 'adjoint_gq', True)
                found[index] = gq_epoch / mean_time(timed, width, reference, True)
                short[index] = np.isfinite(found[index])
        return found, short

    (versus_adjoint, short), (versus_direct, short_direct) = versus(adjoint), versus(direct)
    return widths, versus_adjoint, versus_direct, short, short_direct


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_speedup', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument('--plots_dir', default=str(PLOTS_DIR))
    args = parser.parse_args(argv)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    drawn = 0
    hollow = False
    for number, (name, study) in enumerate(STUDIES.items()):
        widths, versus_adjoint, versus_direct, *shorts = ratios(args.results_dir, study)
        # One colour and marker per study, the same in both panels.
        style = dict(marker='osD^vP<>'[number % 8], color=f'C{number % 10}', label=name)
        for axis, values in zip(axes, (versus_adjoint, versus_direct)):
            if widths and np.isfinite(values).any():
                axis.plot(widths, values, **style)
                drawn += 1
        for axis, values, short in zip(axes, (versus_adjoint, versus_direct), shorts):
            if short.any():
                # Hollow: the ratio of seconds per epoch over a few epochs, not whole runs.
                axis.plot(
                    np.array(widths)[short],
                    values[short],
                    linestyle='none',
                    marker=style['marker'],
                    markersize=11,
                    markerfacecolor='white',
                    color=style['color'],
                )
                hollow = True
    if not drawn:
        print(
            f'nothing to plot: no finished adjoint_gq runs with a reference in '
            f'{args.results_dir}; no figure written',
            file=sys.stderr,
        )
        return None
    for axis, reference in zip(axes, ('the adjoint', 'direct backprop')):
        axis.axhline(1.0, color='grey', linewidth=1)
        axis.set(
            xscale='log',
            yscale='log',
            xlabel='width (hidden units or channels)',
            title=f'GQ training time ÷ {reference}',
        )
        axis.legend(fontsize='small')
        axis.set_ylabel('ratio of training times (below 1: GQ faster)')
        axis.yaxis.set_tick_params(labelleft=True)
        readable_log_ticks(axis)
    if hollow:
        for axis in axes:
            axis.set_title(
                f'{axis.get_title()}\n(hollow: seconds per epoch over the first epochs only)',
                fontsize='medium',
            )
    paths = save(figure, args.plots_dir, NAME)
    print(f'wrote {paths[0]} and {paths[1]}')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
