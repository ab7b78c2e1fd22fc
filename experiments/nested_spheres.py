"""Nested spheres: classify 2-D points inside r < 0.4 from the ring 0.7 < r < 0.9.

``python -m experiments.nested_spheres --adjoint_option adjoint_gq --width 2000 --lr 0.0001``
"""

from torch import nn

from datasets import nested_spheres
from experiments import runner
from models import metrics
from models.neural_de import Augment, Classifier, NeuralDE
from models.vector_fields import MLPVectorField
from study import flags
from study.grids import EXPERIMENTS


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
    """The command line's parser: its flags live with the results naming
    (:func:`study.flags.parser_of`)."""
    return flags.parser_of('nested_spheres')


main, train = runner.entry_points(EXPERIMENTS['nested_spheres'], make_setup)


if __name__ == '__main__':
    main()
