"""Figure 3 (timing): Ornstein–Uhlenbeck training time and validation KL against width for
sde_direct, sde_adjoint and the GQ adjoint, and the KL curves at one width
(``python -m plotting.plot_sde_times``).

The curves are drawn by default at the largest width where every option trained in full
(torchsde's adjoint is only timed by short runs at the larger widths, and a panel with GQ
alone compares nothing), else at the largest width found."""

import argparse
import sys

from common.arguments import non_negative_int, positive_int
from plotting import add_plots_dir, plots_dir
from plotting.plot_ode_times import plot_timing
from study import results
from study.grids import EXPERIMENTS, SDE_OPTIONS


def shared_width(runs, options=SDE_OPTIONS):
    """The largest width at which every one of ``options`` has finished runs in ``runs``
    (a dict keyed by ``(width, option)``), or None where no width has them all."""
    return max((w for w, _ in runs if all((w, option) in runs for option in options)), default=None)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.plot_sde_times', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--ncosines', type=non_negative_int, default=10, help='ablation (default 10)'
    )
    parser.add_argument(
        '--width',
        type=positive_int,
        default=None,
        help='width of the loss curves (default: the largest trained by every option)',
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    add_plots_dir(parser)
    args = parser.parse_args(argv)
    args.plots_dir = plots_dir(args)
    spec = EXPERIMENTS['ornstein_uhlenbeck']
    ablation = spec.ablation_of(['--ncosines', str(args.ncosines)])
    width = args.width
    if width is None:
        width = shared_width(results.complete_runs(args.results_dir, spec.name, ablation))
    return plot_timing(
        results_dir=args.results_dir,
        plots_dir=args.plots_dir,
        experiment=spec.name,
        ablation=ablation,
        options=SDE_OPTIONS,
        final_series=('epoch_loss_history', 'validation KL'),
        curve_width=width,
        name='sde_times',
        title='Ornstein–Uhlenbeck',
    )


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
