"""Figure 3 (timing): Ornstein–Uhlenbeck training time and validation KL against width for
sde_direct, sde_adjoint and the GQ adjoint, and the KL curves at one width
(``python -m plotting.plot_sde_times``)."""

import argparse

from experiments import results
from plotting import PLOTS_DIR
from plotting.plot_ode_times import plot_timing

OPTIONS = ('sde_direct', 'sde_adjoint', 'adjoint_gq')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m plotting.plot_sde_times',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--ncosines', type=int, default=10, help='ablation (default 10)')
    parser.add_argument('--width', type=int, default=None,
                        help='width of the loss curves (default: the largest found)')
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    parser.add_argument('--plots_dir', default=str(PLOTS_DIR))
    args = parser.parse_args(argv)
    return plot_timing(args.results_dir, args.plots_dir, 'ornstein_uhlenbeck', str(args.ncosines),
                       OPTIONS, ('epoch_loss_history', 'validation KL'), args.width,
                       'sde_times', 'Ornstein–Uhlenbeck')


if __name__ == '__main__':
    main()
