"""The figure that says it all: training time of the GQ adjoint ÷ the adjoint's and ÷
direct backprop's against width, one line per study (``python -m plotting.plot_speedup``).

Every ratio is a paired one from :mod:`plotting.verdicts`: one small point per repeat
(GQ's run ÷ the reference's run of the same repeat, over the same epochs, CPU time where
both recorded it), and a line through their geometric means, for every study of
:data:`study.grids.STUDIES` found under ``--results_dir``. The references are
``adjoint_ode`` (torchsde's ``sde_adjoint`` for the SDE) and ``direct`` (``sde_direct``).
Below 1, GQ trained faster. Where the reference only ran a short timing run (its first
epochs, ``results/epoch_times``), the mean's marker is hollow.
"""

import argparse
import sys

from plotting import add_plots_dir, plots_dir, verdicts
from plotting.style import plt, readable_log_ticks, save
from study import results
from study.grids import STUDIES

NAME = 'speedup'


def ratios(results_dir, study):
    """``{reference kind: [SpeedComparison, ...]}`` of one study (a key of
    :data:`study.grids.STUDIES`), kinds ``'adjoint'`` and ``'direct'``, by width."""
    adjoint, direct = verdicts.references(STUDIES[study].experiment)
    found = verdicts.speed_comparisons(results_dir, study)
    chosen = {}
    for item in found:
        # One comparison per width: whole runs, unless they pair in one repeat only and
        # the short timing runs pair in more.
        kept = chosen.get((item.reference, item.width))
        if kept is None or (len(kept.ratios) < 2 and len(item.ratios) > len(kept.ratios)):
            chosen[item.reference, item.width] = item
    return {
        kind: [item for (name, _), item in chosen.items() if name == reference]
        for kind, reference in (('adjoint', adjoint), ('direct', direct))
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_speedup', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    drawn = 0
    hollow = False
    for number, name in enumerate(STUDIES):
        found = ratios(args.results_dir, name)
        # One colour and marker per study, the same in both panels.
        style = dict(marker='osD^vP<>'[number % 8], color=f'C{number % 10}')
        for axis, kind in zip(axes, ('adjoint', 'direct')):
            comparisons = found[kind]
            if not comparisons:
                continue
            widths = [item.width for item in comparisons]
            axis.plot(widths, [item.mean for item in comparisons], label=name, **style)
            drawn += 1
            for item in comparisons:
                axis.plot(
                    [item.width] * len(item.ratios),
                    item.ratios,
                    linestyle='none',
                    marker=style['marker'],
                    markersize=3,
                    alpha=0.6,
                    color=style['color'],
                )
                if item.epochs is not None:
                    # Hollow: a comparison of the first epochs only, not whole runs.
                    axis.plot(
                        [item.width],
                        [item.mean],
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
            title=f'GQ training time ÷ {reference} (paired by repeat)',
        )
        axis.legend(fontsize='small')
        axis.set_ylabel('ratio of training times (below 1: GQ faster)')
        axis.text(
            0.02,
            0.97,
            'small points: each repeat; line: geometric mean',
            transform=axis.transAxes,
            verticalalignment='top',
            fontsize='small',
            color='grey',
        )
        axis.yaxis.set_tick_params(labelleft=True)
        readable_log_ticks(axis)
    if hollow:
        for axis in axes:
            axis.set_title(
                f'{axis.get_title()}\n(hollow: over the first epochs only)',
                fontsize='medium',
            )
    paths = save(figure, args.plots_dir, NAME)
    print(f'wrote {paths[0]} and {paths[1]}')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
