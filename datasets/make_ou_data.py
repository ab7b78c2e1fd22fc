"""``python -m datasets.make_ou_data [--data_dir DIR]``: write the Ornstein–Uhlenbeck files."""

from common.arguments import positive_int
from datasets import ornstein_uhlenbeck
from datasets.command import make_data


def _add_arguments(parser):
    parser.add_argument(
        '--n_train',
        type=positive_int,
        default=200,
        help='training initial conditions (default 200)',
    )
    parser.add_argument(
        '--n_val', type=positive_int, default=20, help='validation initial conditions (default 20)'
    )
    parser.add_argument(
        '--n_paths',
        type=positive_int,
        default=45,
        help='sample paths per initial condition (default 45)',
    )


def _generate(args):
    ornstein_uhlenbeck.generate(
        args.data_dir, {'train': args.n_train, 'val': args.n_val}, args.n_paths
    )


def main(argv=None):
    make_data(
        'python -m datasets.make_ou_data',
        __doc__,
        _generate,
        lambda args: f'{ornstein_uhlenbeck.folder(args.data_dir)}/{{train,val}}.npz',
        _add_arguments,
        argv,
    )


if __name__ == '__main__':
    main()
