"""Choose a learning rate per width by a short, recorded probe.

The paper's appendix gives a learning rate per width that this repository does not
have; its defaults (docs/paper_notes.md §3) are for the default width only. For each
width of a grid and each candidate learning rate, this trains one repeat of one option
for a few epochs and keeps the learning rate with the lowest mean validation loss over
the last epochs. A run that diverges counts as an infinite loss.

``python -m experiments.lr_probe EXPERIMENT [--grid reduced] [--lrs 1e-2 1e-3 1e-4]
[--epochs N] [--option adjoint_gq] [--jobs 2] [--timeout S] [-- FLAG ...]`` prints the
table and writes it to ``results/lr_probe/<experiment><study>.json``; the chosen values
are then written into the grid's ``lr`` table in :mod:`experiments.grids` (a test checks
that they agree).
"""

import argparse
import concurrent.futures
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from common.arguments import (
    positive_float,
    positive_int,
    require_writable,
    write_failures_named,
)
from common.atomic import save_json
from study import results
from study.grids import EXPERIMENTS, GRID_NAMES

#: Learning rates tried by default: a decade apart around the paper's defaults.
DEFAULT_LRS = (1e-2, 1e-3, 1e-4)
#: Validation losses averaged at the end of each probe run (smooths one noisy epoch).
LAST_EPOCHS = 3


def probe_file(experiment, flags=(), results_dir=results.RESULTS_DIR):
    """Where the probe of ``experiment`` with study ``flags`` is recorded."""
    study = ''.join(f'_{flag.lstrip("-")}' for flag in flags)
    return pathlib.Path(results_dir) / 'lr_probe' / f'{experiment}{study}.json'


def read_probe(experiment, flags=(), results_dir=results.RESULTS_DIR):
    """The recorded probe (a dict), or None where there is none.

    Raises:
        results.ResultsError: the file is not a probe's record (corrupt, empty, not an
            object, a folder, or missing its entries).
    """
    path = probe_file(experiment, flags, results_dir)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f'a JSON {type(record).__name__}, not an object')
        missing = [
            key for key in (*SHARED_SETTINGS, 'lrs', 'losses', 'chosen') if key not in record
        ]
        if missing:
            raise ValueError(f'it lacks {", ".join(missing)}')
    except (OSError, ValueError) as error:
        raise results.ResultsError(
            f'{path} cannot be read as a probe ({error}); delete it and probe again'
        ) from error
    return record


def _final_loss(folder):
    """Mean validation loss of the last epochs of a finished probe run (inf if it failed)."""
    try:
        run = results.read_run(folder)
    except results.ResultsError:
        return math.inf
    losses = run.get('epoch_loss_history')
    summary = run.get('summary', {})
    if losses is None or not summary.get('complete', False) or len(losses) < 2:
        return math.inf
    tail = np.asarray(losses[-LAST_EPOCHS:], dtype=float)
    return float(tail.mean()) if np.all(np.isfinite(tail)) else math.inf


def _probe_one(module, argv, folder, timeout):
    try:
        finished = subprocess.run(
            [sys.executable, '-m', module, *argv, '--results_dir', folder],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, 'OMP_NUM_THREADS': '1'},
        )
    except subprocess.TimeoutExpired:
        # Too slow to be a usable setting (the solver's steps collapse): it loses.
        return math.inf, 'timed out'
    run_folders = [path.parent for path in pathlib.Path(folder).rglob(results.SUMMARY)]
    loss = _final_loss(run_folders[0]) if run_folders else math.inf
    if finished.returncode == 0:
        return loss, None
    # The run's own one-line message says why it failed (a diverged solver, a bad flag).
    last = finished.stderr.strip().splitlines()[-1:] or ['']
    return loss, f'exit {finished.returncode}: {last[0][:200]}'.rstrip(': ')


def probe(
    experiment,
    grid='reduced',
    flags=(),
    lrs=DEFAULT_LRS,
    epochs=20,
    option='adjoint_gq',
    jobs=2,
    timeout=None,
    report=print,
    widths=None,
):
    """Train ``option`` at each width of ``grid`` and each of ``lrs`` for ``epochs`` epochs.

    A probe run that takes longer than ``timeout`` seconds (None: no limit) is stopped and
    counts as an infinite loss. ``widths`` (default: every width some option of ``grid``
    trains in full) probes only those widths, e.g. widths added to a grid after its first
    probe.

    Returns:
        dict with the settings, ``losses`` ({width: {lr: loss}}, as strings for JSON) and
        ``chosen`` ({width: lr}): the learning rate of least validation loss per width.
    """
    spec = EXPERIMENTS[experiment]
    chosen_grid = spec.grids[grid]
    if option not in chosen_grid.options:
        raise ValueError(
            f"option must be one of the grid's options {chosen_grid.options}; got {option!r}"
        )
    # The grid's own --lr values are replaced; every other grid flag is kept.
    grid_flags = list(chosen_grid.flags)
    spec.parse([*flags, *grid_flags])  # bad flags stop here, before any training
    widths = tuple(widths or chosen_grid.trained_widths())
    # The widest first: they take longest, so two jobs finish closer together.
    jobs_list = [(width, lr) for width in sorted(widths, reverse=True) for lr in lrs]
    losses = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        futures = {}
        for index, (width, lr) in enumerate(jobs_list):
            argv = [
                '--adjoint_option',
                option,
                '--width',
                str(width),
                *flags,
                *grid_flags,
                '--lr',
                repr(lr),
                '--nepochs',
                str(epochs),
                '--quiet',
            ]
            folder = str(pathlib.Path(scratch) / str(index))
            futures[pool.submit(_probe_one, spec.module, argv, folder, timeout)] = (width, lr)
        for future in concurrent.futures.as_completed(futures):
            width, lr = futures[future]
            loss, problem = future.result()
            losses.setdefault(width, {})[lr] = loss
            report(
                f'width {width:>5}  lr {lr:<8g} validation loss {loss:.5g}'
                + (f'  ({problem})' if problem else '')
            )
    chosen = {width: min(lrs, key=lambda lr: losses[width][lr]) for width in widths}
    return {
        'experiment': experiment,
        'grid': grid,
        'flags': list(flags),
        'option': option,
        'epochs': epochs,
        'timeout_seconds': timeout,
        'last_epochs_averaged': LAST_EPOCHS,
        'lrs': list(lrs),
        'losses': {str(width): {repr(lr): losses[width][lr] for lr in lrs} for width in widths},
        'chosen': {str(width): chosen[width] for width in widths},
    }


def merge(recorded, found):
    """The record ``recorded`` with the widths probed in ``found`` added (or replaced).

    Both must probe the same experiment, grid, study, option and number of epochs; the
    candidate learning rates may differ per width (``lrs`` becomes their union).
    """
    check_addable(recorded, found)
    merged = dict(recorded)
    merged['lrs'] = sorted(set(recorded['lrs']) | set(found['lrs']), reverse=True)
    for key in ('losses', 'chosen'):
        merged[key] = {**recorded[key], **found[key]}
    if recorded.get('timeout_seconds') != found['timeout_seconds']:
        merged['timeout_seconds'] = {
            **_per_width(recorded, 'timeout_seconds'),
            **{width: found['timeout_seconds'] for width in found['chosen']},
        }
    return merged


#: What a probe must share with the record it is added to.
SHARED_SETTINGS = ('experiment', 'grid', 'flags', 'option', 'epochs', 'last_epochs_averaged')


def check_addable(recorded, settings):
    """Raise ValueError unless a probe with ``settings`` (a dict holding every key of
    :data:`SHARED_SETTINGS`) may add its widths to the record ``recorded``."""
    for key in SHARED_SETTINGS:
        if recorded.get(key) != settings[key]:
            raise ValueError(
                f'widths cannot be added: the recorded probe has {key} '
                f'{recorded.get(key)!r}, this one {settings[key]!r}; probe '
                'every width again instead of adding'
            )


def _per_width(record, key):
    value = record.get(key)
    return value if isinstance(value, dict) else {width: value for width in record['chosen']}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m experiments.lr_probe', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('experiment', choices=EXPERIMENTS)
    parser.add_argument(
        '--grid',
        choices=GRID_NAMES,
        default='reduced',
        help='whose widths to probe (default reduced)',
    )
    parser.add_argument(
        '--lrs',
        type=positive_float,
        nargs='+',
        default=list(DEFAULT_LRS),
        help='learning rates to try (default 1e-2 1e-3 1e-4)',
    )
    parser.add_argument(
        '--epochs', type=positive_int, default=20, help='epochs per probe run (default 20)'
    )
    parser.add_argument(
        '--option',
        default='adjoint_gq',
        help='the option trained in the probe (default adjoint_gq)',
    )
    parser.add_argument(
        '--jobs', type=positive_int, default=2, help='probe runs at once (default 2)'
    )
    parser.add_argument(
        '--timeout',
        type=positive_float,
        default=None,
        help='seconds after which a probe run is stopped and loses (default: no limit)',
    )
    parser.add_argument(
        '--widths',
        type=positive_int,
        nargs='+',
        default=None,
        help='probe only these widths and add them to the recorded probe '
        '(default: every width of the grid, replacing the record)',
    )
    parser.add_argument(
        '--results_dir',
        default=str(results.RUNS_DIR),
        help=f'where the probe is written (default {results.RUNS_DIR}; the committed probes, '
        'which the grids use, are under results/)',
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the study's flags (e.g. --ntimes 50), as for the sweeps.
    flags = argv[argv.index('--') + 1 :] if '--' in argv else []
    args = parser.parse_args(argv[: argv.index('--')] if '--' in argv else argv)
    require_writable(parser, '--results_dir', args.results_dir)
    try:
        recorded = read_probe(args.experiment, flags, args.results_dir) if args.widths else None
    except results.ResultsError as error:
        print(f'{parser.prog}: {error}', file=sys.stderr)
        raise SystemExit(1) from None
    try:
        if recorded is not None:  # checked before any training
            check_addable(
                recorded,
                {
                    'experiment': args.experiment,
                    'grid': args.grid,
                    'flags': list(flags),
                    'option': args.option,
                    'epochs': args.epochs,
                    'last_epochs_averaged': LAST_EPOCHS,
                },
            )
        found = probe(
            args.experiment,
            args.grid,
            flags,
            tuple(args.lrs),
            args.epochs,
            args.option,
            args.jobs,
            args.timeout,
            widths=args.widths,
        )
    except ValueError as error:  # the option check, made before any training
        parser.error(f'--{error}')
    if recorded is not None:
        found = merge(recorded, found)
    path = probe_file(args.experiment, flags, args.results_dir)
    with write_failures_named(parser.prog, '--results_dir'):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, found)
    for width, lr in found['chosen'].items():
        print(f'width {width}: lr {lr:g}')
    print(f'written to {path}')
    return found


if __name__ == '__main__':
    main()
