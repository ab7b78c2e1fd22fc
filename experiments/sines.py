"""Sines: fit x'' = MLP([x, v]) to series A sin t + B cos t from their initial state [B, A].

``python -m experiments.sines --adjoint_option adjoint_ode --width 1000 --lr 0.00003
--regular_times regular``
"""

from datasets import sines
from experiments import runner
from models import metrics
from models.neural_de import NeuralDE, SineModel
from models.vector_fields import SecondOrderVectorField
from study import flags
from study.grids import EXPERIMENTS


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
    """The command line's parser: its flags live with the results naming
    (:func:`study.flags.parser_of`)."""
    return flags.parser_of('sines')


main, train = runner.entry_points(EXPERIMENTS['sines'], make_setup)


if __name__ == '__main__':
    main()
