"""The shared runner: arguments, validation, seeding, training, timing and results.

The argparse types live in :mod:`common.arguments` and are re-exported here.

Each experiment script only says what differs (its defaults, data, model, loss and
results ablation) through :func:`build_parser` and :func:`run`.
"""

import argparse
import platform
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torchdiffeq

from common.arguments import flag, non_negative_int, positive_float, positive_int
from common.atomic import save_torch
from datasets import DATA_DIR
from experiments import results
from models.backprop import ADJOINT_OPTIONS
from models.trainer import Trainer


def device_name(text):
    """argparse type: 'cpu', 'cuda', 'cuda:N' or a GPU index N; returns a torch.device."""
    name = f'cuda:{text}' if text.isdigit() else text
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"must be 'cpu', 'cuda', 'cuda:N' or a GPU index; got {text!r}") from None
    if device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(f"must be 'cpu' or a CUDA device; got {text!r}")
    return device


def build_parser(prog, description, *, width, lr, nepochs, batchsize, options=ADJOINT_OPTIONS):
    """The common flags of every experiment (PAPER.md §3), with the experiment's defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--adjoint_option', default='adjoint_gq', choices=options,
                        help='how to backpropagate (default adjoint_gq)')
    parser.add_argument('--experiment_no', type=non_negative_int, default=1,
                        help='repeat number; seeds numpy and torch with 1000 × it (default 1)')
    parser.add_argument('--width', type=positive_int, default=width,
                        help=f'hidden width of the vector field (default {width})')
    parser.add_argument('--lr', type=positive_float, default=lr,
                        help=f'Adam learning rate (default {lr})')
    parser.add_argument('--nepochs', type=positive_int, default=nepochs,
                        help=f'training epochs (default {nepochs})')
    parser.add_argument('--batchsize', type=non_negative_int, default=batchsize,
                        help=f'batch size, 0 = full batch (default {batchsize})')
    parser.add_argument('--tol', type=positive_float, default=1e-3,
                        help='rtol = atol of dopri5 (default 1e-3)')
    parser.add_argument('--gtol', type=positive_float, default=0.1,
                        help='GQ node-count factor C (default 0.1)')
    parser.add_argument('--device', type=device_name, default=torch.device('cpu'),
                        help="'cpu' (default), 'cuda', 'cuda:N' or a GPU index N")
    parser.add_argument('--load_model', type=flag, default=0,
                        help='1: resume from this run\'s checkpoint if there is one (default 0)')
    parser.add_argument('--save_model', type=flag, default=0,
                        help='1: write a checkpoint every epoch (default 0)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar (for sweeps)')
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR),
                        help=f'where results go (default {results.RESULTS_DIR})')
    parser.add_argument('--data_dir', default=str(DATA_DIR),
                        help=f'where data sets are read or generated (default {DATA_DIR})')
    return parser


def parse(parser, argv=None):
    """Parse and check what argparse's types cannot (exit 2 with a message, before any work)."""
    args = parser.parse_args(argv)
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'argument --device: {args.device} asked for, but CUDA is not available')
    return args


@dataclass
class Setup:
    """What an experiment trains: model, its NeuralDE, data batches' sources, loss and metric.

    ``train_data`` and ``val_data`` are tuples of tensors ``(*inputs, target)`` with the
    samples along dimension 0.
    """

    model: torch.nn.Module
    neural_de: torch.nn.Module
    train_data: tuple
    val_data: tuple
    loss_fn: Callable
    metric_fn: Callable


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(data, batchsize, generator=None):
    size = len(data[0])
    batchsize = size if batchsize == 0 else min(batchsize, size)
    dataset = torch.utils.data.TensorDataset(*data)
    return torch.utils.data.DataLoader(dataset, batch_size=batchsize, shuffle=generator is not None,
                                       generator=generator)


def _new_history(nparams):
    history = {name: [] for name in results.SERIES if name != 'nparams'}
    history['nparams'] = nparams
    return history


def run(args, experiment, ablation, make_setup):
    """Seed, build, train (resuming if asked), and write results; returns the run folder.

    Args:
        args: parsed flags (see :func:`build_parser`).
        experiment: str, the results folder name (e.g. ``nested_spheres``).
        ablation: str, the ablation folder (e.g. ``gtol0.1``).
        make_setup: ``make_setup(args) -> Setup``, called after seeding.
    """
    seed = 1000 * args.experiment_no
    seed_everything(seed)
    setup = make_setup(args)
    model = setup.model.to(args.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(seed)
    train_loader = _batches(setup.train_data, args.batchsize, generator)
    val_batches = list(_batches(setup.val_data, args.batchsize or len(setup.val_data[0])))
    folder = results.run_dir(args.results_dir, experiment, ablation, args.width,
                             args.adjoint_option, args.experiment_no)
    nparams = sum(param.numel() for param in model.parameters())
    history = _new_history(nparams)

    checkpoint_path = folder / results.CHECKPOINT
    if args.load_model and checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location=args.device, weights_only=False)
        model.load_state_dict(checkpoint['model'])
        optimiser.load_state_dict(checkpoint['optimiser'])
        history = checkpoint['history']
        generator.set_state(checkpoint['generator'])
        torch.set_rng_state(checkpoint['torch_rng'])
        np.random.set_state(checkpoint['numpy_rng'])
        random.setstate(checkpoint['python_rng'])
        if not args.quiet:
            print(f'resuming {folder} after epoch {history["epochs"][-1]}')

    def on_epoch_end(current):
        results.write_history(folder, current)
        if args.save_model:
            save_torch(checkpoint_path, {
                'model': model.state_dict(), 'optimiser': optimiser.state_dict(),
                'history': current, 'generator': generator.get_state(),
                'torch_rng': torch.get_rng_state(), 'numpy_rng': np.random.get_state(),
                'python_rng': random.getstate()})
        results.write_summary(folder, _summary(args, experiment, ablation, current, False))

    trainer = Trainer(model, setup.neural_de, optimiser, setup.loss_fn, setup.metric_fn,
                      train_loader, val_batches, args.device, quiet=args.quiet)
    history = trainer.fit(history, args.nepochs, on_epoch_end)
    results.write_summary(folder, _summary(args, experiment, ablation, history, True))
    if not args.quiet:
        print(f'{experiment} {args.adjoint_option}: '
              f'val loss {history["epoch_loss_history"][-1]:.5g}, '
              f'val metric {history["epoch_val_metric_history"][-1]:.5g}, '
              f'train time {sum(history["epoch_times"]):.2f}s -> {folder}')
    return folder


def _summary(args, experiment, ablation, history, complete):
    arguments = {key: (str(value) if isinstance(value, torch.device) else value)
                 for key, value in vars(args).items()}
    return {
        'experiment': experiment, 'ablation': ablation, 'arguments': arguments,
        'complete': complete, 'epochs_done': history['epochs'][-1] if history['epochs'] else None,
        'nparams': history['nparams'],
        'final_val_loss': history['epoch_loss_history'][-1] if history['epochs'] else None,
        'final_val_metric': (history['epoch_val_metric_history'][-1]
                             if history['epochs'] else None),
        'total_train_seconds': float(sum(history['epoch_times'])),
        'versions': {'python': platform.python_version(), 'torch': torch.__version__,
                     'torchdiffeq': torchdiffeq.__version__, 'numpy': np.__version__},
        'device': str(args.device) + (f' ({torch.cuda.get_device_name(args.device)})'
                                      if args.device.type == 'cuda' else
                                      f' ({platform.processor() or platform.machine()})'),
    }
