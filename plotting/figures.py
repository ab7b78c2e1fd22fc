"""Every figure of the reproduction report, rebuilt from finished runs in one command.

``python -m plotting.figures [--results_dir results] [--plots_dir DIR]`` draws each figure
whose runs are there into ``DIR`` (default ``<results_dir>/figures``) and names the ones
it could not draw; it exits 1 if any figure is missing. REPRODUCTION.md shows the
committed runs' figures, rebuilt with ``--results_dir results --plots_dir docs/figures``.
"""

import argparse
import sys

from plotting import (
    add_plots_dir,
    plot_ode_times,
    plot_ou_cosines,
    plot_ou_solutions,
    plot_sde_times,
    plot_speedup,
    plot_toy_gradient,
    plots_dir,
)
from study import results
from study.grids import FIGURES as FIGURE_STUDIES
from study.grids import STUDIES

#: How each figure is drawn: file name -> (module, its arguments).
_DRAWN_BY = {
    'speedup': (plot_speedup, []),
    'toy_gradient': (plot_toy_gradient, []),
    'sde_times': (plot_sde_times, []),
    'ou_cosines': (plot_ou_cosines, []),
    'ou_solutions_adjoint_gq': (plot_ou_solutions, []),
}

#: (file name, module, its arguments, the (experiment, flags) it draws or None) of each
#: figure in the report, in the report's order (experiments/grids.py names them).
FIGURES = tuple(
    (
        name,
        *_DRAWN_BY.get(name, (plot_ode_times, ['--experiment', study])),
        None if study is None else (STUDIES[study].experiment, STUDIES[study].flags),
    )
    for name, study in FIGURE_STUDIES.items()
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.figures', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    folders = ['--results_dir', args.results_dir, '--plots_dir', args.plots_dir]
    written, missing = [], []
    for name, module, arguments, _ in FIGURES:
        paths = module.main([*arguments, *folders])
        (written if paths is not None else missing).append(name)
    print(f'{len(written)} of {len(FIGURES)} figures written to {args.plots_dir}')
    for name in missing:
        print(f'not drawn (its runs are missing): {name}', file=sys.stderr)
    return written, missing


if __name__ == '__main__':
    sys.exit(0 if not main()[1] else 1)
