"""Figure 2, one ODE experiment: training time and validation metric against width (mean ±
std over repeats, one line per method), and validation loss against epoch and against
wall-clock time at one width (``python -m plotting.plot_ode_times --experiment NAME``)."""

import argparse
import pathlib
import sys

import numpy as np
from matplotlib.ticker import NullFormatter

from common.arguments import positive_float, positive_int
from models.backprop import EXTRA_OPTIONS
from plotting import add_plots_dir, plots_dir
from plotting.style import line_style, plt, readable_log_ticks, save, study_title
from study import results
from study.grids import EPOCH_TIMES_DIR, EXPERIMENTS, ODE_OPTIONS, STUDIES

#: figure name -> the study of experiments/grids.py it draws by default. The other image
#: data sets draw the digits study with their own --dataset.
FIGURES = {
    **{name: name for name in ('g1d', 'nested_spheres', 'sines10', 'sines50', 'digits', 'mnist')},
    'cifar10': 'digits',
    'svhn': 'digits',
}


def _study_flags(args):
    """The study's flags (grids.STUDIES) with this script's overrides on top."""
    study = STUDIES[FIGURES[args.experiment]]
    flags = [*study.flags, *EXPERIMENTS[study.experiment].grids['paper'].flags]
    if args.experiment in ('cifar10', 'svhn'):
        flags += ['--dataset', args.experiment]
    for flag, value in (
        ('--gtol', args.gtol),
        ('--regular_times', args.regular_times),
        ('--batchsize', args.batchsize),
    ):
        if value is not None and flag in _OWN_FLAGS[study.experiment]:
            flags += [flag, str(value)]
    return study.experiment, flags


#: The flags of this script that each experiment's ablation reads.
_OWN_FLAGS = {
    'nested_spheres': ('--gtol',),
    'sines': ('--regular_times',),
    'images': ('--batchsize',),
    'g1d': (),
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_ode_times', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--experiment', required=True, choices=FIGURES)
    parser.add_argument(
        '--gtol',
        type=positive_float,
        default=None,
        help="nested spheres' ablation (default: the study's, in experiments/grids.py)",
    )
    parser.add_argument(
        '--regular_times',
        default=None,
        choices=('regular', 'irregular'),
        help="sines ablation (default: the study's)",
    )
    parser.add_argument(
        '--batchsize',
        type=positive_int,
        default=None,
        help="images ablation (default: the study's)",
    )
    parser.add_argument(
        '--width',
        type=positive_int,
        default=None,
        help='width of the loss curves (default: the largest found)',
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    name, flags = _study_flags(args)
    spec = EXPERIMENTS[name]
    return plot_timing(
        results_dir=args.results_dir,
        plots_dir=args.plots_dir,
        experiment=spec.name,
        ablation=spec.ablation_of(flags),
        # The paper's options for this experiment (the images ran no direct backprop), so
        # that an option the grid never runs is not reported missing.
        options=tuple(o for o in ODE_OPTIONS if o in spec.grids['paper'].options),
        extra_options=EXTRA_OPTIONS,
        final_series=('epoch_val_metric_history', spec.metric),
        curve_width=args.width,
        name=f'ode_times_{args.experiment}',
        title=args.experiment,
    )


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), values.std()


def plot_timing(
    *,
    results_dir,
    plots_dir,
    experiment,
    ablation,
    options,
    final_series,
    curve_width,
    name,
    title,
    extra_options=(),
):
    """The four panels shared by the ODE and SDE timing figures.

    Args:
        results_dir, plots_dir: where runs are read and the figure is written.
        experiment, ablation: the runs to read (see :mod:`experiments.results`).
        options: the methods to draw, in legend order; a missing one is named on stderr.
        extra_options: methods beyond the paper's, drawn after them where they were run.
        final_series: ``(series name, axis label)`` of the second panel's final value.
        curve_width: width of the loss curves, or None for the largest found.
        name: file name (without suffix); title: the figure's title.
    """
    all_options = options
    runs = results.complete_runs(results_dir, experiment, ablation)
    if not runs:
        # Refuse rather than write an empty figure over a good one; say where runs are.
        from plotting.summary_table import found_ablations

        others = [
            folder for folder in found_ablations(results_dir, experiment) if folder != str(ablation)
        ]
        hint = (
            f'; runs of {experiment} with other settings are under '
            f"{', '.join(others)} (choose them with this script's flags, e.g. "
            f'--gtol, --regular_times, --batchsize, --ncosines)'
            if others
            else ''
        )
        print(
            f'nothing to plot: no finished runs of {experiment}/{ablation} in '
            f'{results_dir}{hint}; no figure written',
            file=sys.stderr,
        )
        return None
    # Short timing runs (results/epoch_times) stand in where an option was only timed.
    timed = results.complete_runs(pathlib.Path(results_dir) / EPOCH_TIMES_DIR, experiment, ablation)
    timed = {key: found for key, found in timed.items() if key not in runs}
    full_epochs = max(len(run['epochs']) - 1 for found in runs.values() for run in found)
    widths = sorted({width for width, _ in runs})
    if curve_width is not None and curve_width not in widths:
        # Refuse rather than draw loss panels titled with a width that has no runs.
        print(
            f'no finished runs of {experiment}/{ablation} at width {curve_width} in '
            f'{results_dir} (widths found: {", ".join(map(str, widths))}); no figure '
            'written',
            file=sys.stderr,
        )
        return None
    options = [
        option
        for option in (*all_options, *extra_options)
        if any(key[1] == option for key in (*runs, *timed))
    ]
    axis_widths = sorted({width for width, _ in (*runs, *timed)})
    for option in all_options:
        for width in widths:
            if (width, option) not in runs and (width, option) not in timed:
                print(
                    f'missing: {experiment}/{ablation} width {width} {option}; left out',
                    file=sys.stderr,
                )
    series, label = final_series
    figure, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    curve_width = curve_width if curve_width is not None else (widths[-1] if widths else None)
    for order, option in enumerate(options):
        marked = line_style(option, order)
        present = [width for width in widths if (width, option) in runs]
        times = [_mean_std([r['epoch_times'].sum() for r in runs[(w, option)]]) for w in present]
        finals = [_mean_std([r[series][-1] for r in runs[(w, option)]]) for w in present]
        for axis, values in ((axes[0], times), (axes[1], finals)):
            if not present:
                continue
            means, stds = np.array(values).T
            axis.errorbar(present, means, yerr=stds, capsize=3, **marked)
        short = sorted(width for width, timed_option in timed if timed_option == option)
        if short:
            # Hollow: seconds per epoch of the short runs × the full runs' epochs.
            estimates = np.array(
                [
                    _mean_std(
                        [
                            run['epoch_times'][1:].mean() * full_epochs
                            for run in timed[(width, option)]
                        ]
                    )
                    for width in short
                ]
            )
            style = line_style(option)
            axes[0].errorbar(
                short,
                estimates[:, 0],
                yerr=estimates[:, 1],
                capsize=3,
                marker=marked['marker'],
                markersize=marked['markersize'],
                markerfacecolor='white',
                linestyle='none',
                color=style['color'],
                label=None if present else style['label'],
            )
        if (curve_width, option) in runs:
            losses = np.array([r['epoch_loss_history'] for r in runs[(curve_width, option)]])
            clocks = np.array([np.cumsum(r['epoch_times']) for r in runs[(curve_width, option)]])
            axes[2].plot(np.arange(losses.shape[1]), losses.mean(0), **line_style(option))
            axes[3].plot(clocks.mean(0), losses.mean(0), **line_style(option))
    axes[0].set(
        xlabel='width (hidden units or channels)',
        ylabel='training time (s)',
        xscale='log',
        yscale='log',
    )
    axes[1].set(xlabel='width (hidden units or channels)', ylabel=label, xscale='log')
    for axis in axes[:2]:
        # The widths themselves as ticks: log-scale minor labels overlap on short ranges.
        axis.set_xticks(axis_widths, [str(width) for width in axis_widths])
        axis.xaxis.set_minor_formatter(NullFormatter())
        # Widths close on a log axis (500, 1000, 2000) would print over each other.
        axis.tick_params(axis='x', labelrotation=45)
    readable_log_ticks(axes[0])
    axes[2].set(xlabel='epoch', ylabel='validation loss', title=f'width {curve_width}')
    axes[3].set(
        xlabel='training wall-clock time (s)',
        ylabel='validation loss',
        title=f'width {curve_width}',
    )
    # Losses that stay positive span decades as models converge: a log axis shows them.
    if all(line.get_ydata().min() > 0 for axis in axes[2:] for line in axis.get_lines()):
        for axis in axes[2:]:
            axis.set_yscale('log')
    if timed:
        axes[0].set_title(
            f'hollow: {full_epochs} × seconds per epoch of short runs', fontsize='medium'
        )
    figure.subplots_adjust(wspace=0.3)
    if options:
        axes[0].legend()
    figure.suptitle(study_title(experiment, ablation))
    paths = save(figure, plots_dir, name)
    print(f'wrote {paths[0]} and {paths[1]} ({len(options)} methods, widths {widths})')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
