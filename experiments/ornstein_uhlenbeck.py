"""Ornstein–Uhlenbeck: learn a Stratonovich SDE's drift and diffusion from sample paths.

``python -m experiments.ornstein_uhlenbeck --adjoint_option adjoint_gq --width 5 --ncosines 10``
"""

from common.arguments import non_negative_int
from datasets import ornstein_uhlenbeck
from experiments import runner
from experiments.grids import EXPERIMENTS
from models import metrics
from models.backprop import ADJOINT_OPTIONS
from models.sde import SDE_OPTIONS, OUModel


def make_setup(args):
    times, train_initial, train_paths = ornstein_uhlenbeck.load(args.data_dir, 'train')
    _, val_initial, val_paths = ornstein_uhlenbeck.load(args.data_dir, 'val')
    model = OUModel(
        args.width,
        args.adjoint_option,
        times,
        train_paths.shape[-1],
        ncosines=args.ncosines,
        tol=args.tol,
        gtol=args.gtol,
    )
    return runner.Setup(
        model,
        model,
        (train_initial, train_paths),
        (val_initial, val_paths),
        metrics.gaussian_kl,
        metrics.gaussian_log_likelihood,
        keep_weights=True,
    )


def build_parser():
    parser = runner.build_parser(
        'python -m experiments.ornstein_uhlenbeck',
        __doc__.split('\n\n')[0],
        width=5,
        lr=1e-3,
        nepochs=100,
        batchsize=40,
        options=ADJOINT_OPTIONS + SDE_OPTIONS,
    )
    parser.add_argument(
        '--ncosines',
        type=non_negative_int,
        default=10,
        help='cosine terms of the Brownian approximation, 0 = no noise '
        '(default 10; ODE options only)',
    )
    return parser


main, train = runner.entry_points(EXPERIMENTS['ornstein_uhlenbeck'], make_setup)


if __name__ == '__main__':
    main()
