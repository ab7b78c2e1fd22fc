"""A run's folder: what may be written into it, its lock, and whether a kept state
belongs to it.

Every check here runs before any training, and each refusal is a :class:`RunError`
whose message names the folder or file, what differs and what to do.
"""

import fcntl
import pathlib
import sys
import tempfile

import numpy as np

from common import atomic
from study import results


class RunError(Exception):
    """A run that cannot start or go on; the message says why and what to do.

    Attributes:
        code: the exit status of the command line (2: a flag or folder to change,
            1: a failure during training, 130 or 143: interrupted by SIGINT or SIGTERM).
    """

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def check_folder(folder, args):
    """Before any work: the folder is the run's own (no symbolic link below
    ``--results_dir`` leads it elsewhere), writable, and holds no run with other settings."""
    base = pathlib.Path(args.results_dir)
    current = base
    for part in folder.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise RunError(
                f'{current} is a symbolic link: a run writes only into folders of its own '
                'under --results_dir; remove the link, or choose another --results_dir',
                2,
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-check.', suffix='.tmp'):
            pass
    except OSError as error:
        raise RunError(
            f'cannot write into {folder} ({error}); choose a writable --results_dir', 2
        ) from None
    atomic.remove_stale_temporaries(folder)
    summary = results.read_summary(folder)
    if summary is None:
        return
    differing = results.differences(summary.get('arguments', {}), args)
    if differing:
        raise RunError(mixing_message(folder / results.SUMMARY, differing), 2)
    done = summary.get('epochs_done')
    if args.load_model and done is not None and done > args.nepochs:
        raise RunError(
            f'{folder} already holds {done} epochs, more than --nepochs '
            f'{args.nepochs}: a run is only ever extended. Ask for --nepochs '
            f'{done} or more, or use another --results_dir.',
            2,
        )


def check_checkpoint(folder, path, checkpoint, args):
    """A checkpoint is resumed only with the settings and series it belongs to, and only
    to extend its run."""
    differing = results.differences(checkpoint['arguments'], args)
    if differing:
        raise RunError(mixing_message(path, differing), 2)
    history = checkpoint['history']
    saved = history['epochs'][-1]
    if saved > args.nepochs:
        raise RunError(
            f'{path} holds {saved} epochs, more than --nepochs {args.nepochs}: '
            f'a run is only ever extended. Ask for --nepochs {saved} or more, or '
            'use another --results_dir.',
            2,
        )
    summary = results.read_summary(folder)
    done = None if summary is None else summary.get('epochs_done')
    if done is None:
        return
    # An epoch writes its series, then the checkpoint, then the summary: a run killed
    # hard in between leaves a checkpoint one epoch ahead of its summary. One behind is a
    # finished run's final state, extended without --save_model 1 and stopped: the epochs
    # after it are trained again.
    run = results.read_run(folder)
    common = min(saved, done) + 1
    recorded = run.get('epoch_loss_history')
    same_losses = recorded is not None and np.array_equal(
        np.asarray(history['epoch_loss_history'][:common]), recorded[:common]
    )
    if saved > done + 1 or not same_losses:
        raise RunError(
            f'{path} holds epoch {saved} but {folder / results.SUMMARY} records '
            f'epoch {done}{"" if same_losses else " with other losses"}: the '
            f'checkpoint belongs to another run of this folder. Delete {path} to '
            f'start afresh, or {folder} to discard both.',
            2,
        )
    if saved < done:
        print(
            f'{folder}: the latest state kept is epoch {saved} ({path.name}); epochs '
            f'{saved + 1} to {done} are trained again',
            file=sys.stderr,
        )


def start_afresh(folder, args):
    """A fresh start in a folder that holds a run replaces it: say so, and remove a
    checkpoint of the old run, which must never be resumed with the new run's series."""
    summary = results.read_summary(folder)
    if summary is not None:
        state = 'finished' if summary.get('complete') else 'unfinished'
        print(
            f'replacing the {state} run in {folder} ({summary.get("epochs_done")} epochs) '
            'with a fresh one'
            + (
                ' (--load_model 0; --load_model 1 would resume it)'
                if not args.load_model and (folder / results.CHECKPOINT).exists()
                else ''
            ),
            file=sys.stderr,
        )
    for name in (results.CHECKPOINT, results.FINAL_STATE):
        (folder / name).unlink(missing_ok=True)


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.lock`` for the duration of a run."""

    def __init__(self, folder):
        self.path = folder / '.lock'
        self.handle = None

    def __enter__(self):
        try:
            self.handle = open(self.path, 'a')
        except OSError as error:
            raise RunError(
                f"{self.path} cannot be opened as the run folder's lock ({error.strerror}); "
                'delete it (no run writes into the folder while it is missing)',
                2,
            ) from error
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise RunError(
                f'another run is writing {self.path.parent} right now; wait for '
                'it to finish, or use another --results_dir',
                2,
            ) from None
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def mixing_message(path, differing):
    changes = ', '.join(
        f'--{name} {old} there, {new} now' for name, (old, new) in differing.items()
    )
    return (
        f'{path} belongs to a run with other settings ({changes}). Resuming it or '
        'writing over it would mix the two; use another --results_dir, or delete '
        f'{path.parent} to start afresh. Only --nepochs may change: it extends a run.'
    )
