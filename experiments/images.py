"""Image classification with a convolutional neural ODE (MNIST, CIFAR-10, SVHN, digits).

``python -m experiments.images --dataset digits --adjoint_option adjoint_gq --width 50``
"""

from datasets import images
from experiments import runner
from models import metrics
from models.neural_de import Classifier, ImageDecoder, ImageEncoder, NeuralDE, state_side
from models.vector_fields import ConvVectorField
from study import flags
from study.grids import EXPERIMENTS


def make_setup(args):
    train = images.load(args.dataset, args.data_dir, 'train')
    val = images.load(args.dataset, args.data_dir, 'val')
    channels, height, width = train[0].shape[1:]
    state_numel = args.state_width * state_side(height) * state_side(width)
    neural_de = NeuralDE(
        ConvVectorField(args.state_width, args.width), args.adjoint_option, args.tol, args.gtol
    )
    model = Classifier(
        ImageEncoder(channels, args.state_width), neural_de, ImageDecoder(state_numel)
    )
    return runner.Setup(model, neural_de, train, val, metrics.cross_entropy, metrics.accuracy)


def build_parser():
    """The command line's parser: its flags live with the results naming
    (:func:`study.flags.parser_of`)."""
    return flags.parser_of('images')


main, train = runner.entry_points(EXPERIMENTS['images'], make_setup)


if __name__ == '__main__':
    main()
