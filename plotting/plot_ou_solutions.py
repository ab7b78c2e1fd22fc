"""Figure 3 (solutions): learned against true marginals (histograms and Gaussian fits) at
three times for one initial condition, and sample paths from three initial conditions, for
one trained Ornstein–Uhlenbeck run (``python -m plotting.plot_ou_solutions``; reads the
``weights.npz`` a finished run writes, or the checkpoint of one made with ``--save_model 1``)."""

import argparse
import sys

import numpy as np
import torch

from common.arguments import non_negative_int, positive_int
from datasets import DATA_DIR, ornstein_uhlenbeck
from models.sde import OUModel, sample_paths
from plotting import add_plots_dir, plots_dir
from plotting.style import line_style, plt, save
from study import results
from study.grids import EXPERIMENTS, SDE_OPTIONS

TIME_INDICES = (10, 50, 100)
INITIAL_CONDITIONS = 3


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_ou_solutions', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--adjoint_option', default='adjoint_gq', choices=SDE_OPTIONS, help='default adjoint_gq'
    )
    parser.add_argument('--width', type=positive_int, default=5, help='default 5')
    parser.add_argument('--ncosines', type=non_negative_int, default=10, help='default 10')
    parser.add_argument('--experiment_no', type=non_negative_int, default=1, help='default 1')
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument('--data_dir', default=str(DATA_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    spec = EXPERIMENTS['ornstein_uhlenbeck']
    folder = spec.run_folder(
        spec.parse(
            [
                '--adjoint_option',
                args.adjoint_option,
                '--width',
                str(args.width),
                '--ncosines',
                str(args.ncosines),
                '--experiment_no',
                str(args.experiment_no),
                '--results_dir',
                args.results_dir,
            ]
        )
    )
    # The final weights every finished run writes; else a checkpoint (an unfinished run).
    try:
        weights = results.read_weights(folder)
        if weights is None:
            kept = results.read_checkpoint(folder)
            weights = None if kept is None else kept[0]['model']
    except results.ResultsError as error:
        print(f'unreadable: {error}; no figure written', file=sys.stderr)
        return None
    if weights is None:
        print(
            f'missing: {folder / results.WEIGHTS} and {folder / results.CHECKPOINT} (run '
            'the experiment to the end, or with --save_model 1); no figure written',
            file=sys.stderr,
        )
        return None
    times, initial, paths = ornstein_uhlenbeck.load(args.data_dir, 'val')
    model = OUModel(args.width, args.adjoint_option, times, paths.shape[-1], ncosines=args.ncosines)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as error:
        reason = str(error).strip().splitlines()
        print(
            f'unreadable: {folder / results.WEIGHTS} does not fit the model of width '
            f'{args.width} ({reason[1].strip() if len(reason) > 1 else reason[0]}); delete '
            'the run folder and run it again; no figure written',
            file=sys.stderr,
        )
        return None
    torch.manual_seed(0)
    chosen = slice(0, INITIAL_CONDITIONS)
    learned = sample_paths(model, initial[chosen]).numpy()
    data = paths[chosen].numpy()
    grid = times.numpy()

    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    colour = line_style(args.adjoint_option)['color']
    for column, time_index in enumerate(TIME_INDICES):
        # The marginal of the first initial condition: histograms and their Gaussian fits.
        axis = axes[0, column]
        true_values, learned_values = data[0, time_index], learned[0, time_index]
        low = min(true_values.min(), learned_values.min())
        high = max(true_values.max(), learned_values.max())
        bins = np.linspace(low, high, 30)
        axis.hist(true_values, bins=bins, density=True, alpha=0.3, color='0.4')
        axis.hist(learned_values, bins=bins, density=True, histtype='step', color=colour, alpha=0.5)
        points = np.linspace(low, high, 200)
        for values, style, label in (
            (true_values, {'color': '0.2'}, 'data, Gaussian fit'),
            (learned_values, {'color': colour, 'linestyle': '--'}, 'learned, Gaussian fit'),
        ):
            mean, std = values.mean(), max(values.std(), 1e-12)
            density = np.exp(-0.5 * ((points - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
            axis.plot(points, density, linewidth=2, label=label, **style)
        axis.set(
            title=f't = {grid[time_index]:.1f}, x(0) = {initial[0, 0].item():.2f}',
            xlabel='x',
            ylabel='density',
        )
    axes[0, 0].legend()
    for column in range(INITIAL_CONDITIONS):
        axis = axes[1, column]
        axis.plot(grid, data[column, :, :10], color='0.5', linewidth=0.8)
        axis.plot(
            grid,
            learned[column, :, :10],
            linewidth=0.8,
            color=line_style(args.adjoint_option)['color'],
        )
        axis.set(
            title=f'x(0) = {initial[column, 0].item():.2f} (grey: data)',
            xlabel='time t',
            ylabel='x',
        )
    figure.suptitle(f'Ornstein–Uhlenbeck, {args.adjoint_option}, width {args.width}')
    figure.tight_layout()
    paths_written = save(figure, args.plots_dir, f'ou_solutions_{args.adjoint_option}')
    print(f'wrote {paths_written[0]} and {paths_written[1]}')
    return paths_written


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
