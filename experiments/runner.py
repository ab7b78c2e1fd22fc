"""The shared runner: validation, seeding, training, timing and results writing.

An experiment's flags and their defaults are in :mod:`study.flags` (they name its run
folders, :mod:`study.grids`); what may be written into a run's folder (its checks, lock
and messages) in :mod:`experiments.run_folder`. Each experiment script only says what
differs (its data, model and loss) through ``make_setup``, and gets its ``main`` and
``train`` from :func:`entry_points`.
"""

import os
import platform
import random
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torchdiffeq

from common import interrupts
from datasets.generated import DataError
from experiments.run_folder import (
    FolderLock,
    RunError,
    check_checkpoint,
    check_folder,
    start_afresh,
)
from models.trainer import DivergenceError, Trainer
from study import results


@dataclass
class Setup:
    """What an experiment trains: model, its NeuralDE, data batches' sources, loss and metric.

    ``train_data`` and ``val_data`` are tuples of tensors ``(*inputs, target)`` with the
    samples along dimension 0. ``keep_weights`` (default False): write the final weights
    as ``weights.npz`` beside the series (for figures that redraw the trained model from
    committed results, where checkpoints are not committed).
    """

    model: torch.nn.Module
    neural_de: torch.nn.Module
    train_data: tuple
    val_data: tuple
    loss_fn: Callable
    metric_fn: Callable
    keep_weights: bool = False


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(data, batchsize, generator=None):
    size = len(data[0])
    batchsize = size if batchsize == 0 else min(batchsize, size)
    dataset = torch.utils.data.TensorDataset(*data)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batchsize, shuffle=generator is not None, generator=generator
    )


def _new_history(nparams):
    history = {name: [] for name in results.SERIES if name != 'nparams'}
    history['nparams'] = nparams
    return history


def main(spec, make_setup, argv=None):
    """Parse the command line of ``spec`` (an :class:`study.grids.Experiment`),
    then :func:`run`; returns the run folder.

    Errors end the command with a message on stderr and the exit status of
    :class:`RunError` (or 1 for an unreadable results file); SIGINT and SIGTERM say what
    was saved and how to resume.
    """
    parser = spec.parser()
    args = parser.parse_args(argv)
    previous = _terminate_as_interrupt()
    try:
        return run(args, spec, make_setup)
    except RunError as error:
        _report_error(parser.prog, error)
        raise SystemExit(error.code) from None
    except results.ResultsError as error:
        _report_error(parser.prog, error)
        raise SystemExit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Set this environment variable to 1 to see the traceback behind an error message.
DEBUG_VARIABLE = 'TORCH_GQ_DEBUG'


def _report_error(prog, error):
    """One line naming what to change; the traceback too under ``TORCH_GQ_DEBUG=1``."""
    # A second Ctrl-C while the message is written must not turn it into a traceback.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get(DEBUG_VARIABLE) == '1':
        traceback.print_exception(error.__cause__ or error)
    print(f'{prog}: {error}', file=sys.stderr)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _terminate_as_interrupt():
    """Make SIGTERM (what SLURM and ``timeout`` send) stop a run as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        return None

    return signal.signal(signal.SIGTERM, interrupts.raise_interrupt)


def train(spec, make_setup, settings):
    """The plain Python entry of an experiment: flags as keyword arguments.

    ``settings`` maps flag names to values (``width=2000, lr=1e-4, quiet=True``); they are
    checked by the experiment's own parser, exactly as on the command line.

    Returns:
        pathlib.Path, the run folder (read it with :func:`study.results.read_run`).

    Raises:
        TypeError: a setting that is not one of the experiment's flags.
    """
    return main(spec, make_setup, settings_to_argv(spec.parser(), settings))


def entry_points(spec, make_setup):
    """An experiment's ``main(argv=None)`` (command line) and ``train(**settings)`` (Python).

    Both return the run folder; see :func:`main` and :func:`train`.
    """

    def experiment_main(argv=None):
        """Run the experiment from command-line arguments; returns the run folder."""
        return main(spec, make_setup, argv)

    def experiment_train(**settings):
        """Train from Python: flags as keyword arguments (``width=2000, lr=1e-4``); returns
        the run folder (see :func:`experiments.runner.train`)."""
        return train(spec, make_setup, settings)

    return experiment_main, experiment_train


def settings_to_argv(parser, settings):
    """Command-line arguments equivalent to the keyword ``settings`` for ``parser``.

    Every flag of an experiment is ``--<name>``; a flag whose default is a bool is a
    switch (``--quiet``), given or left out.
    """
    defaults = vars(parser.parse_args([]))
    argv = []
    for name, value in settings.items():
        if name not in defaults:
            known = ', '.join(sorted(defaults))
            raise TypeError(f'unknown setting {name!r}; the settings are: {known}.')
        if isinstance(defaults[name], bool):
            argv += [f'--{name}'] if value else []
        else:
            argv += [f'--{name}', str(value)]
    return argv


def run(args, spec, make_setup):
    """Seed, build, train (resuming if asked), and write results; returns the run folder.

    Args:
        args: parsed flags (see :func:`build_parser`).
        spec: the experiment's :class:`study.grids.Experiment` (results naming).
        make_setup: ``make_setup(args) -> Setup``, called after seeding.
    """
    folder = spec.run_folder(args)
    check_folder(folder, args)
    # Held until the run ends: a second run into the same folder is refused, not mixed in.
    with FolderLock(folder):
        return _run_locked(args, spec, make_setup, folder)


def _run_locked(args, spec, make_setup, folder):
    seed = 1000 * args.experiment_no
    try:
        interrupts.raise_if_received()
        seed_everything(seed)
        setup = make_setup(args)
        model = setup.model.to(args.device)
    except KeyboardInterrupt as error:
        raise RunError(
            f'interrupted while preparing the data and the model; no epoch was written in {folder}',
            interrupts.exit_status(error),
        ) from None
    except DataError as error:
        raise RunError(str(error), 2) from error
    except FileNotFoundError as error:
        # A data set read from its original files (MNIST, ...): the message says where.
        raise RunError(str(error), 2) from error
    except OSError as error:
        raise RunError(
            f'cannot write the generated data under --data_dir {args.data_dir} '
            f'({error}); choose a writable folder as --data_dir',
            2,
        ) from error
    except (RuntimeError, MemoryError) as error:
        if not _out_of_memory(error):
            raise
        raise RunError(
            f'not enough memory to build this model ({_first_line(error)}); '
            'choose a smaller --width (or --ncosines, --state_width)',
            2,
        ) from error
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(seed)
    train_loader = _batches(setup.train_data, args.batchsize, generator)
    val_batches = list(_batches(setup.val_data, args.batchsize or len(setup.val_data[0])))
    history = _new_history(sum(param.numel() for param in model.parameters()))
    training = _TrainingState(model, optimiser, generator)
    kept = (
        results.read_checkpoint(folder, args.device, results.checkpoint_bytes(model))
        if args.load_model
        else None
    )
    if kept is not None:
        checkpoint, path = kept
        check_checkpoint(folder, path, checkpoint, args)
        history = training.restore(checkpoint, path)
        if not args.quiet:
            print(f'resuming {folder} after epoch {history["epochs"][-1]}')
    else:
        start_afresh(folder, args)
        if not args.quiet:
            print(f'training {args.nepochs} epochs into {folder}')
    saved = {'epoch': None}

    def on_epoch_end(current):
        # An epoch's files are written as one: a signal meanwhile takes effect after them,
        # so that the message and the files agree on what is saved.
        with _deferred_interrupts():
            results.write_history(folder, current)
            if args.save_model:
                results.write_checkpoint(
                    folder, {**training.checkpoint(current), 'arguments': results.identity(args)}
                )
            results.write_summary(folder, _summary(args, spec, current, False))
            saved['epoch'] = current['epochs'][-1]

    trainer = Trainer(
        model,
        setup.neural_de,
        optimiser,
        setup.loss_fn,
        setup.metric_fn,
        train_loader,
        val_batches,
        args.device,
        quiet=args.quiet,
    )
    try:
        history = trainer.fit(history, args.nepochs, on_epoch_end)
        # Before the summary says complete: a complete run always has its weights, and
        # its final state where that is small enough to keep (so it can be extended).
        if setup.keep_weights:
            results.write_weights(folder, model.state_dict())
        results.write_final_state(
            folder, {**training.checkpoint(history), 'arguments': results.identity(args)}
        )
        results.write_summary(folder, _summary(args, spec, history, True))
    except KeyboardInterrupt as error:
        raise RunError(
            _interrupted_message(folder, args, saved['epoch']), interrupts.exit_status(error)
        ) from None
    except DivergenceError as error:
        raise RunError(
            f'{error}; {_kept(folder, saved)}. Try a smaller --lr, or a smaller --tol.', 1
        ) from error
    except AssertionError as error:
        if 'underflow in dt' not in str(error):
            raise
        raise RunError(
            f"the solver's step size underflowed ({error}): the dynamics became "
            f'too stiff for --tol {args.tol}; {_kept(folder, saved)}. Try a larger '
            '--tol or a smaller --lr.',
            1,
        ) from error
    except OSError as error:
        raise RunError(
            f'cannot write the results ({error}); {_kept(folder, saved)}. Free '
            'space or fix the permissions, then rerun the same command (it resumes '
            'from its last checkpoint unless given --save_model 0).',
            1,
        ) from error
    except (RuntimeError, MemoryError) as error:
        if not _out_of_memory(error):
            raise
        raise RunError(
            f'out of memory during training ({_first_line(error)}); '
            f'{_kept(folder, saved)}. Choose a smaller --width or --batchsize.',
            1,
        ) from error
    # One line even with --quiet (which silences only the progress bar): where the run is.
    _report(args, spec, history, folder)
    return folder


class _deferred_interrupts:  # noqa: N801 (used as a statement, like a function)
    """Hold SIGINT and SIGTERM while a block runs; raise the interrupt after it if either
    came (main thread only: signals are delivered there)."""

    def __enter__(self):
        self.received = None
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:

            def hold(number, frame):
                self.received = number

            self.previous = {
                number: signal.signal(number, hold) for number in (signal.SIGINT, signal.SIGTERM)
            }
        return self

    def __exit__(self, kind, value, trace):
        if self.active:
            for number, handler in self.previous.items():
                signal.signal(number, handler)
        if self.received is not None and kind is None:
            interrupts.raise_interrupt(self.received, None)


def _kept(folder, saved):
    return (
        'no epoch was finished'
        if saved['epoch'] is None
        else f'epochs 0 to {saved["epoch"]} are kept in {folder}'
    )


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _out_of_memory(error):
    """Whether ``error`` is an allocation failure (CPU or CUDA)."""
    return isinstance(error, MemoryError) or any(
        words in str(error) for words in ("can't allocate memory", 'out of memory')
    )


def _interrupted_message(folder, args, epoch):
    if epoch is None:
        return f'interrupted before epoch 0 was written; nothing is saved in {folder}'
    if args.save_model:
        how = 'the same command' if args.load_model else 'the same command with --load_model 1'
        resume = f'rerun {how} to resume after epoch {epoch}'
    else:
        resume = (
            'there is no checkpoint (--save_model 0), so rerunning starts again from '
            'epoch 0; use --save_model 1 --load_model 1 to make runs resumable'
        )
    return f'interrupted: epochs 0 to {epoch} are saved in {folder}; {resume}'


class _TrainingState:
    """What a checkpoint holds besides the history: weights, optimiser and every RNG, in
    types that ``torch.load(..., weights_only=True)`` reads (tensors and plain values)."""

    def __init__(self, model, optimiser, generator):
        self.model, self.optimiser, self.generator = model, optimiser, generator

    def checkpoint(self, history):
        """Everything a resume needs, with ``history``, as one dict."""
        kind, key, position, has_gauss, cached = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            'model': self.model.state_dict(),
            'optimiser': self.optimiser.state_dict(),
            'history': history,
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'numpy_rng': {
                'kind': kind,
                'key': torch.from_numpy(key.astype(np.int64)),
                'position': int(position),
                'has_gauss': int(has_gauss),
                'cached_gaussian': float(cached),
            },
            'python_rng': [version, list(python_state), gauss],
        }

    def restore(self, checkpoint, path):
        """Restore everything from ``checkpoint`` (read from ``path``); returns its history.

        Raises:
            RunError: the checkpoint does not fit this model or holds malformed states.
        """
        try:
            self.model.load_state_dict(checkpoint['model'])
            self.optimiser.load_state_dict(checkpoint['optimiser'])
            self.generator.set_state(checkpoint['generator'])
            torch.set_rng_state(checkpoint['torch_rng'])
            numpy_rng = checkpoint['numpy_rng']
            np.random.set_state(
                (
                    numpy_rng['kind'],
                    numpy_rng['key'].cpu().numpy().astype(np.uint32),
                    numpy_rng['position'],
                    numpy_rng['has_gauss'],
                    numpy_rng['cached_gaussian'],
                )
            )
            version, python_state, gauss = checkpoint['python_rng']
            random.setstate((version, tuple(python_state), gauss))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            raise RunError(
                f'{path} cannot be read ({type(error).__name__}: '
                f'{_first_line(error)}); delete it, or rerun with --load_model 0 to '
                'start the run afresh',
                2,
            ) from error
        return checkpoint['history']


def _report(args, spec, history, folder):
    print(
        f'{spec.name} {args.adjoint_option}: '
        f'val loss {history["epoch_loss_history"][-1]:.5g}, '
        f'val metric {history["epoch_val_metric_history"][-1]:.5g}, '
        f'train time {sum(history["epoch_times"]):.2f}s -> {folder}'
    )


def _summary(args, spec, history, complete):
    arguments = {
        key: (str(value) if isinstance(value, torch.device) else value)
        for key, value in vars(args).items()
    }
    for key in ('data_dir', 'results_dir'):
        if arguments.get(key) is not None:
            arguments[key] = results.portable(arguments[key])
    return {
        'experiment': spec.name,
        'ablation': spec.ablation(args),
        'arguments': arguments,
        'complete': complete,
        'epochs_done': history['epochs'][-1] if history['epochs'] else None,
        'nparams': history['nparams'],
        'final_val_loss': history['epoch_loss_history'][-1] if history['epochs'] else None,
        'final_val_metric': (
            history['epoch_val_metric_history'][-1] if history['epochs'] else None
        ),
        'total_train_seconds': float(sum(history['epoch_times'])),
        'versions': {
            'python': platform.python_version(),
            'torch': torch.__version__,
            'torchdiffeq': torchdiffeq.__version__,
            'numpy': np.__version__,
        },
        'device': str(args.device)
        + (
            f' ({torch.cuda.get_device_name(args.device)})'
            if args.device.type == 'cuda'
            else f' ({platform.processor() or platform.machine()})'
        ),
    }
