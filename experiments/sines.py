"""Sines: fit x'' = MLP([x, v]) to series A sin t + B cos t from their initial state [B, A].

``python -m experiments.sines --adjoint_option adjoint_ode --width 1000 --lr 0.00003
--regular_times regular``
"""

from datasets import sines
from experiments import runner
from experiments.grids import EXPERIMENTS
from models import metrics
from models.neural_de import NeuralDE, SineModel
from models.vector_fields import SecondOrderVectorField


def make_setup(args):
    neural_de = NeuralDE(
        SecondOrderVectorField(args.width), args.adjoint_option, args.tol, args.gtol
    )
    splits = [
        sines.load(args.data_dir, args.ntimes, args.regular_times, split)
        for split in ('train', 'val')
    ]
    return runner.Setup(SineModel(neural_de), neural_de, *splits, metrics.mse, metrics.mse)


def build_parser():
    parser = runner.build_parser(
        'python -m experiments.sines',
        __doc__.split('\n\n')[0],
        width=100,
        lr=1e-3,
        nepochs=250,
        batchsize=0,
    )
    parser.add_argument(
        '--ntimes',
        type=int,
        choices=sines.NTIMES,
        default=10,
        help='observation times per series (default 10)',
    )
    parser.add_argument(
        '--regular_times',
        choices=sines.REGULARITIES,
        default='regular',
        help='same times for all series, or per-series random (default regular)',
    )
    return parser


main, train = runner.entry_points(EXPERIMENTS['sines'], make_setup)


if __name__ == '__main__':
    main()
