"""g1d: learn the map x = -1 -> 1, x = 1 -> -1 (trajectories must cross, hence augmentation).

``python -m experiments.g1d --adjoint_option direct``
"""

import torch

from experiments import runner
from models import metrics
from models.neural_de import Augment, Classifier, FirstCoordinate, NeuralDE
from models.vector_fields import MLPVectorField
from study import flags
from study.grids import EXPERIMENTS


def make_setup(args):
    dim = 1 + args.aug_dim
    func = MLPVectorField(dim, args.width, time_dependent=False)
    neural_de = NeuralDE(func, args.adjoint_option, args.tol, args.gtol)
    model = Classifier(Augment(args.aug_dim), neural_de, FirstCoordinate())
    inputs = torch.tensor([[-1.0], [1.0]])
    data = (inputs, -inputs)
    return runner.Setup(model, neural_de, data, data, metrics.mse, metrics.mse)


def build_parser():
    """The command line's parser: its flags live with the results naming
    (:func:`study.flags.parser_of`)."""
    return flags.parser_of('g1d')


main, train = runner.entry_points(EXPERIMENTS['g1d'], make_setup)


if __name__ == '__main__':
    main()
