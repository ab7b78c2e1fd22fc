"""Figure 3 (timing): Ornstein–Uhlenbeck training time and validation KL against width for
sde_direct, sde_adjoint and the GQ adjoint, and the KL curves at one width
(``python -m plotting.plot_sde_times``)."""

import argparse
import sys

from common.arguments import non_negative_int, positive_int
from experiments import results
from experiments.grids import EXPERIMENTS, SDE_OPTIONS
from plotting import PLOTS_DIR
from plotting.plot_ode_times import plot_timing


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
        help='width of the loss curves (default: the largest found)',
    )
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument('--plots_dir', default=str(PLOTS_DIR))
    args = parser.parse_args(argv)
    spec = EXPERIMENTS['ornstein_uhlenbeck']
    return plot_timing(
        results_dir=args.results_dir,
        plots_dir=args.plots_dir,
        experiment=spec.name,
        ablation=spec.ablation_of(['--ncosines', str(args.ncosines)]),
        options=SDE_OPTIONS,
        final_series=('epoch_loss_history', 'validation KL'),
        curve_width=args.width,
        name='sde_times',
        title='Ornstein–Uhlenbeck',
    )


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
