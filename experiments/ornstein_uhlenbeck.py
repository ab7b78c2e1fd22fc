"""Ornstein–Uhlenbeck: learn a Stratonovich SDE's drift and diffusion from sample paths.

``python -m experiments.ornstein_uhlenbeck --adjoint_option adjoint_gq --width 5 --ncosines 10``
"""

from datasets import ornstein_uhlenbeck
from experiments import runner
from models import metrics
from models.sde import OUModel
from study import flags
from study.grids import EXPERIMENTS


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
    """The command line's parser: its flags live with the results naming
    (:func:`study.flags.parser_of`)."""
    return flags.parser_of('ornstein_uhlenbeck')


main, train = runner.entry_points(EXPERIMENTS['ornstein_uhlenbeck'], make_setup)


if __name__ == '__main__':
    main()
