"""The results layout: where runs write, what they write, and how it is read back.

``<results_dir>/<experiment>/<ablation>/<width>/<adjoint_option>/<experiment_no>/`` holds one
``.npy`` per series (names as the paper's code), a ``summary.json`` and, with
``--save_model 1``, ``checkpoint.pt``. Every file is written atomically. This module is the
only writer of results and what plotting reads them through.
"""

import json
import pathlib

import numpy as np

from common.atomic import save_json, save_npy

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
