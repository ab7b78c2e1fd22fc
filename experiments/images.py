"""Image classification with a convolutional neural ODE (MNIST, CIFAR-10, SVHN, digits).

``python -m experiments.images --dataset digits --adjoint_option adjoint_gq --width 50``
"""

from datasets import images
from experiments import runner
from experiments.grids import EXPERIMENTS
from models import metrics
from models.neural_de import Classifier, ImageDecoder, ImageEncoder, NeuralDE, state_side
from models.vector_fields import ConvVectorField


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
    parser = runner.build_parser(
        'python -m experiments.images',
        __doc__.split('\n\n')[0],
        width=50,
        lr=1e-3,
        nepochs=15,
        batchsize=32,
    )
    parser.add_argument(
        '--dataset',
        choices=images.DATASETS,
        default='mnist',
        help='data set (default mnist; digits runs offline)',
    )
    parser.add_argument(
        '--state_width',
        type=runner.positive_int,
        default=10,
        help='channels of the ODE state (default 10)',
    )
    return parser


main, train = runner.entry_points(EXPERIMENTS['images'], make_setup)


if __name__ == '__main__':
    main()
