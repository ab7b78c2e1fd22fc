"""Nested spheres: classify 2-D points inside r < 0.4 from the ring 0.7 < r < 0.9.

``python -m experiments.nested_spheres --adjoint_option adjoint_gq --width 2000 --lr 0.0001``
"""

from torch import nn

from datasets import nested_spheres
from experiments import runner
from experiments.grids import EXPERIMENTS
from models import metrics
from models.neural_de import Augment, Classifier, NeuralDE
from models.vector_fields import MLPVectorField


def make_setup(args):
    dim = 2 + args.aug_dim
    neural_de = NeuralDE(MLPVectorField(dim, args.width), args.adjoint_option, args.tol, args.gtol)
    model = Classifier(Augment(args.aug_dim), neural_de, nn.Linear(dim, 2))
    return runner.Setup(
        model,
        neural_de,
        nested_spheres.load(args.data_dir, 'train'),
        nested_spheres.load(args.data_dir, 'val'),
        metrics.cross_entropy,
        metrics.accuracy,
    )


def build_parser():
    parser = runner.build_parser(
        'python -m experiments.nested_spheres',
        __doc__.split('\n\n')[0],
        width=20,
        lr=0.01,
        nepochs=100,
        batchsize=200,
    )
    parser.add_argument(
        '--aug_dim',
        type=runner.non_negative_int,
        default=3,
        help='zeros appended to the 2-D state (default 3)',
    )
    return parser


main, train = runner.entry_points(EXPERIMENTS['nested_spheres'], make_setup)


if __name__ == '__main__':
    main()
