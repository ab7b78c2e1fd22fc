"""A grid's cost, measured: ``python -m experiments.grids budget`` runs :func:`estimate`.

It times a few epochs of one repeat of each option and width, as the sweeps run them (one
thread each, in a fresh folder), and scales them to the grid's epochs and repeats: the
measurement to write beside a grid in :mod:`experiments.grids` as its ``budget``.
"""

import contextlib
import importlib
import io
import pathlib
import subprocess
import sys
import tempfile
import time

import torch

from study.grids import EXPERIMENTS, _blocks


def _quietly(main):
    """``main`` with its one-line report kept out of the budget's table."""

    def run(argv):
        with contextlib.redirect_stdout(io.StringIO()):
            return main(argv)

    return run


def estimate(experiment, grid='reduced', flags=(), epochs=2, jobs=2):
    """Measure a grid's cost: one repeat of each option and width for ``epochs`` epochs
    (or a timing part's own epochs, where fewer).

    Each measured run is timed whole (data, model, validation, writing), on one thread as
    the sweeps run, in a temporary folder, after one warm-up run; its time is scaled to the
    grid's epochs, and the start-up of a fresh Python process (measured once) is added.

    Returns:
        ``(rows, total)``: rows ``(option, width, measured seconds, seconds per run)``, and
        the grid's estimated wall-clock seconds with ``jobs`` runs at once.
    """
    spec = EXPERIMENTS[experiment]
    chosen = spec.grids[grid]
    module = importlib.import_module(spec.module)
    startup = time.perf_counter()
    subprocess.run([sys.executable, '-c', f'import {spec.module}'], check=True)
    startup = time.perf_counter() - startup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    total = 0.0
    try:
        with tempfile.TemporaryDirectory() as folder:
            _quietly(module.main)(
                [
                    '--adjoint_option',
                    chosen.options[0],
                    '--width',
                    str(chosen.widths[0]),
                    *flags,
                    *chosen.flags,
                    '--nepochs',
                    '1',
                    '--quiet',
                    '--results_dir',
                    str(pathlib.Path(folder) / 'warm-up'),
                ]
            )
            for block in _blocks(spec, chosen, flags):
                # A short timing block trains its own few epochs, the rest the grid's.
                full = spec.parse([*chosen.flags, *block.flags, *flags]).nepochs
                measured = min(epochs, full)
                for option in block.options:
                    for width in block.widths:
                        start = time.perf_counter()
                        _quietly(module.main)(
                            [
                                '--adjoint_option',
                                option,
                                '--width',
                                str(width),
                                *chosen.flags_of(width),
                                *flags,
                                '--nepochs',
                                str(measured),
                                '--quiet',
                                '--results_dir',
                                folder,
                            ]
                        )
                        seconds = time.perf_counter() - start
                        per_run = startup + seconds * full / measured
                        rows.append((option, width, seconds, per_run))
                        total += per_run * block.repeats / jobs
    finally:
        torch.set_num_threads(threads)
    return rows, total
