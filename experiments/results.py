"""The results layout: where runs write, what they write, and how it is read back.

``<results_dir>/<experiment>/<ablation>/<width>/<adjoint_option>/<experiment_no>/`` holds one
``.npy`` per series (names as the paper's code), a ``summary.json`` and, with
``--save_model 1``, ``checkpoint.pt``; ``<results_dir>/toy_gradient/<method>/`` holds the
toy gradient's errors. Every file is written atomically. This module is the only writer
of results and what plotting, the summary tables and the sweeps read them through
(``python -m experiments.results complete FOLDER`` exits 0 if that run finished).
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import torch

from common.atomic import save_json, save_npy, save_torch

#: Default results folder (kept empty in git).
RESULTS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'results'

#: Per-epoch series (epoch 0 = before training) and the parameter count.
SERIES = ('nparams', 'epoch_times', 'epoch_loss_history', 'epoch_val_metric_history',
          'epoch_fnfe_history', 'epoch_bnfe_history', 'epochs')
SUMMARY = 'summary.json'
CHECKPOINT = 'checkpoint.pt'


def run_dir(results_dir, experiment, ablation, width, adjoint_option, experiment_no):
    """Folder of one run."""
    return (pathlib.Path(results_dir) / experiment / str(ablation) / str(width) / adjoint_option
            / str(experiment_no))


def write_history(folder, history):
    """Write every series of ``history`` (dict name -> list or number) as ``<name>.npy``."""
    for name in SERIES:
        save_npy(pathlib.Path(folder) / f'{name}.npy', np.asarray(history[name]))


def write_summary(folder, summary):
    """Write ``summary.json`` (arguments, versions, device, final figures, completeness)."""
    save_json(pathlib.Path(folder) / SUMMARY, summary)


def write_checkpoint(folder, checkpoint):
    """Write a run's checkpoint (a dict of state dicts, history and RNG states)."""
    save_torch(pathlib.Path(folder) / CHECKPOINT, checkpoint)


def read_checkpoint(folder, device='cpu'):
    """A run's checkpoint, its tensors on ``device``; None if the run wrote none."""
    path = pathlib.Path(folder) / CHECKPOINT
    if not path.exists():
        return None
    # weights_only=False: the checkpoint also holds numpy's and Python's RNG states.
    return torch.load(path, map_location=device, weights_only=False)


def read_run(folder):
    """Series (numpy arrays) and summary (dict) of one run; missing files are left out."""
    folder = pathlib.Path(folder)
    run = {name: np.load(folder / f'{name}.npy') for name in SERIES
           if (folder / f'{name}.npy').exists()}
    if (folder / SUMMARY).exists():
        run['summary'] = json.loads((folder / SUMMARY).read_text())
    return run


def is_complete(folder):
    """Whether a run finished: its summary says so and every series is present."""
    run = read_run(folder)
    return run.get('summary', {}).get('complete', False) and all(name in run for name in SERIES)


def toy_gradient_dir(results_dir, method):
    """Folder of one method's toy-gradient errors: ``<results_dir>/toy_gradient/<method>/``."""
    return pathlib.Path(results_dir) / 'toy_gradient' / method


#: The toy gradient's quantities, each with a ``<quantity>_relative_error.npy``.
TOY_QUANTITIES = ('loss', 'z0', 'a', 'T')


def write_toy_gradient(results_dir, method, end_times, errors, summary):
    """Write one method's toy-gradient errors; returns its folder.

    Args:
        end_times: ``(K,)`` integration times T.
        errors: ``(K, 4)`` relative errors, columns as :data:`TOY_QUANTITIES`.
        summary: dict, written as ``summary.json`` (with ``complete: True`` added).
    """
    folder = toy_gradient_dir(results_dir, method)
    save_npy(folder / 'end_times.npy', np.asarray(end_times))
    for column, quantity in enumerate(TOY_QUANTITIES):
        save_npy(folder / f'{quantity}_relative_error.npy', np.asarray(errors)[:, column])
    save_json(folder / SUMMARY, {**summary, 'method': method, 'complete': True})
    return folder


def read_toy_gradient(results_dir, method):
    """``(end_times, {quantity: errors})`` of one method, or None if it has not run."""
    folder = toy_gradient_dir(results_dir, method)
    if not (folder / 'end_times.npy').exists():
        return None
    return (np.load(folder / 'end_times.npy'),
            {quantity: np.load(folder / f'{quantity}_relative_error.npy')
             for quantity in TOY_QUANTITIES})


def complete_runs(results_dir, experiment, ablation):
    """Finished runs of one experiment and ablation, grouped by width and option.

    Returns:
        dict ``(width: int, adjoint_option: str) -> list of run dicts`` (see :func:`read_run`),
        repeats in ``experiment_no`` order; unfinished runs are left out.
    """
    base = pathlib.Path(results_dir) / experiment / str(ablation)
    runs = {}
    for folder in sorted(base.glob('*/*/*')):
        width, option, number = folder.parts[-3:]
        if width.isdigit() and number.isdigit() and is_complete(folder):
            runs.setdefault((int(width), option), []).append((int(number), read_run(folder)))
    return {key: [run for _, run in sorted(value, key=lambda item: item[0])]
            for key, value in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m experiments.results',
                                     description='Ask about runs in the results layout.')
    commands = parser.add_subparsers(dest='command', required=True)
    complete = commands.add_parser('complete', help='exit 0 if the run in FOLDER finished, '
                                                    '1 if not')
    complete.add_argument('folder')
    args = parser.parse_args(argv)
    return 0 if is_complete(args.folder) else 1


if __name__ == '__main__':
    sys.exit(main())
