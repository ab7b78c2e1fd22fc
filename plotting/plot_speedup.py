"""The figure that says it all: training time of the GQ adjoint ÷ the adjoint's and ÷
direct backprop's against width, one line per study (``python -m plotting.plot_speedup``).

Each point is the mean total training time of the finished ``adjoint_gq`` runs at one
width over the mean of the reference option's runs at that width (``adjoint_ode``, or
torchsde's ``sde_adjoint`` for the SDE; ``direct``, or ``sde_direct``), from the runs of
every study of :data:`experiments.grids.STUDIES` found under ``--results_dir``. Below 1,
GQ trained faster.
"""

import argparse
import sys

import numpy as np

from experiments import results
from experiments.grids import STUDIES
from plotting import PLOTS_DIR
from plotting.style import plt, save

#: (adjoint reference, direct reference) per experiment: the SDE has torchsde's options.
REFERENCES = {'ornstein_uhlenbeck': ('sde_adjoint', 'sde_direct')}
DEFAULT_REFERENCES = ('adjoint_ode', 'direct')
NAME = 'speedup'


def ratios(results_dir, study):
    """``(widths, ÷ adjoint, ÷ direct)`` of one study (NaN where a reference is missing)."""
    runs = results.complete_runs(results_dir, study.experiment, study.ablation())
    adjoint, direct = REFERENCES.get(study.experiment, DEFAULT_REFERENCES)
    widths = sorted({width for width, option in runs if option == 'adjoint_gq'})

    def mean_time(width, option):
        found = runs.get((width, option))
        return np.mean([run['epoch_times'].sum() for run in found]) if found else np.nan
    gq = np.array([mean_time(width, 'adjoint_gq') for width in widths])
    return (widths, gq / np.array([mean_time(width, adjoint) for width in widths]),
            gq / np.array([mean_time(width, direct) for width in widths]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m plotting.plot_speedup',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument('--plots_dir', default=str(PLOTS_DIR))
    args = parser.parse_args(argv)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    drawn = 0
    for number, (name, study) in enumerate(STUDIES.items()):
        widths, versus_adjoint, versus_direct = ratios(args.results_dir, study)
        # One colour and marker per study, the same in both panels.
        style = dict(marker='osD^vP<>'[number % 8], color=f'C{number % 10}', label=name)
        for axis, values in zip(axes, (versus_adjoint, versus_direct)):
            if widths and np.isfinite(values).any():
                axis.plot(widths, values, **style)
                drawn += 1
    if not drawn:
        print(f'nothing to plot: no finished adjoint_gq runs with a reference in '
              f'{args.results_dir}; no figure written', file=sys.stderr)
        return None
    for axis, reference in zip(axes, ('the adjoint', 'direct backprop')):
        axis.axhline(1.0, color='grey', linewidth=1)
        axis.set(xscale='log', yscale='log', xlabel='width (hidden units or channels)',
                 title=f'GQ training time ÷ {reference}')
        axis.legend(fontsize='small')
    axes[0].set_ylabel('ratio of training times (below 1: GQ faster)')
    paths = save(figure, args.plots_dir, NAME)
    print(f'wrote {paths[0]} and {paths[1]}')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
