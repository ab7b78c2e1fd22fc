"""Every experiment's command-line parser: the flags of a run, their defaults and checks.

The flags name a run's folder (:mod:`study.grids`: the ablation folder comes from them)
and are its identity in ``summary.json``, so the data layer owns them; the commands of
:mod:`experiments` parse their command lines with :func:`parser_of`.
"""

from common.arguments import (
    ArgumentParser,
    experiment_number,
    flag,
    folder,
    non_negative_int,
    positive_float,
    positive_int,
    quadrature_factor,
    tolerance,
)
from common.devices import add_device_flag
from datasets import DATA_DIR, images, sines
from models.backprop import ADJOINT_OPTIONS, EXTRA_OPTIONS
from models.sde import SDE_OPTIONS
from study import results


def build_parser(
    prog, description, *, width, lr, nepochs, batchsize, options=ADJOINT_OPTIONS + EXTRA_OPTIONS
):
    """The common flags of every experiment (docs/paper_notes.md §3), with its defaults."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        '--adjoint_option',
        default='adjoint_gq',
        choices=options,
        help='how to backpropagate (default adjoint_gq)',
    )
    parser.add_argument(
        '--experiment_no',
        type=experiment_number,
        default=1,
        help='repeat number; seeds numpy and torch with 1000 × it (default 1)',
    )
    parser.add_argument(
        '--width',
        type=positive_int,
        default=width,
        help=f'hidden width of the vector field (default {width})',
    )
    parser.add_argument(
        '--lr', type=positive_float, default=lr, help=f'Adam learning rate (default {lr})'
    )
    parser.add_argument(
        '--nepochs', type=positive_int, default=nepochs, help=f'training epochs (default {nepochs})'
    )
    parser.add_argument(
        '--batchsize',
        type=non_negative_int,
        default=batchsize,
        help=f'batch size, 0 = full batch (default {batchsize})',
    )
    parser.add_argument(
        '--tol', type=tolerance, default=1e-3, help='rtol = atol of dopri5 (default 1e-3)'
    )
    parser.add_argument(
        '--gtol', type=quadrature_factor, default=0.1, help='GQ node-count factor C (default 0.1)'
    )
    add_device_flag(parser)
    # A run is resumable by default: an interrupted command, rerun as it was, continues
    # after its last finished epoch.
    parser.add_argument(
        '--load_model',
        type=flag,
        default=1,
        help="1: resume from this run's checkpoint if there is one; 0: start afresh, "
        'replacing the run in the folder (default 1)',
    )
    parser.add_argument(
        '--save_model',
        type=flag,
        default=1,
        help='1: write a checkpoint every epoch, so that the run can resume (default 1)',
    )
    parser.add_argument('--quiet', action='store_true', help='no progress bar (for sweeps)')
    parser.add_argument(
        '--results_dir',
        type=folder,
        default=str(results.RUNS_DIR),
        help=f'where results go (default {results.RUNS_DIR}, ignored by git; the committed '
        'runs are under results/)',
    )
    parser.add_argument(
        '--data_dir',
        type=folder,
        default=str(DATA_DIR),
        help=f'where data sets are read or generated (default {DATA_DIR})',
    )
    return parser


def _nested_spheres():
    parser = build_parser(
        'python -m experiments.nested_spheres',
        'Nested spheres: classify 2-D points inside r < 0.4 from the ring 0.7 < r < 0.9.',
        width=20,
        lr=0.01,
        nepochs=100,
        batchsize=200,
    )
    return _with_augmentation(parser, 2)


def _with_augmentation(parser, data_dim):
    """``parser`` with ``--aug_dim``: zeros appended to the ``data_dim``-D state."""
    parser.add_argument(
        '--aug_dim',
        type=non_negative_int,
        default=3,
        help=f'zeros appended to the {data_dim}-D state (default 3)',
    )
    return parser


def _g1d():
    parser = build_parser(
        'python -m experiments.g1d',
        'g1d: learn the map x = -1 -> 1, x = 1 -> -1 (trajectories must cross, hence '
        'augmentation).',
        width=20,
        lr=0.01,
        nepochs=150,
        batchsize=0,
    )
    return _with_augmentation(parser, 1)


def _sines():
    parser = build_parser(
        'python -m experiments.sines',
        "Sines: fit x'' = MLP([x, v]) to series A sin t + B cos t from their initial state [B, A].",
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


def _images():
    parser = build_parser(
        'python -m experiments.images',
        'Image classification with a convolutional neural ODE (MNIST, CIFAR-10, SVHN, digits).',
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
        type=positive_int,
        default=10,
        help='channels of the ODE state (default 10)',
    )
    return parser


def _ornstein_uhlenbeck():
    parser = build_parser(
        'python -m experiments.ornstein_uhlenbeck',
        "Ornstein–Uhlenbeck: learn a Stratonovich SDE's drift and diffusion from sample paths.",
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


#: Experiment name -> a function building its parser.
PARSERS = {
    'nested_spheres': _nested_spheres,
    'g1d': _g1d,
    'sines': _sines,
    'images': _images,
    'ornstein_uhlenbeck': _ornstein_uhlenbeck,
}


def parser_of(experiment):
    """A fresh parser of ``experiment``'s command line (a key of :data:`PARSERS`)."""
    return PARSERS[experiment]()
