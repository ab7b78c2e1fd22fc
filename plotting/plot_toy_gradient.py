"""Figure 1: relative error against integration time T of the loss, dL/dz0, dL/da and
dL/dT, one line per method (``python -m plotting.plot_toy_gradient``)."""

import argparse
import sys

import numpy as np

from plotting import add_plots_dir, plots_dir
from plotting.style import line_style, plt, save
from study import results

TITLES = {'loss': 'loss $L$', 'z0': r'$dL/dz_0$', 'a': r'$dL/da$', 'T': r'$dL/dT$'}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_toy_gradient', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--results_dir', default=str(results.RESULTS_DIR), help=f'default {results.RESULTS_DIR}'
    )
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharex=True)
    drawn = 0
    for method in results.TOY_METHODS:
        try:
            found = results.read_toy_gradient(args.results_dir, method)
        except results.ResultsError as error:
            print(f'left out: {error}', file=sys.stderr)
            continue
        if found is None:
            print(
                f'missing: toy_gradient results of {method} in '
                f'{results.toy_gradient_dir(args.results_dir, method)}; left out',
                file=sys.stderr,
            )
            continue
        ends, errors = found
        for axis, quantity in zip(axes, results.TOY_QUANTITIES):
            axis.semilogy(ends, np.maximum(errors[quantity], 1e-16), **line_style(method))
        drawn += 1
    if not drawn:
        plt.close(figure)
        print(
            f'nothing to plot: no toy-gradient results in {args.results_dir}; no figure written',
            file=sys.stderr,
        )
        return None
    for axis, quantity in zip(axes, results.TOY_QUANTITIES):
        axis.set_title(TITLES[quantity])
        axis.set_xlabel('integration time $T$ (time units)')
    axes[0].set_ylabel('relative error (dimensionless)')
    axes[0].legend()
    paths = save(figure, args.plots_dir, 'toy_gradient')
    print(f'wrote {paths[0]} and {paths[1]} ({drawn} of {len(results.TOY_METHODS)} methods)')
    return paths


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
