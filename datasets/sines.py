"""Sines (docs/paper_notes.md §3): ``y = A sin t + B cos t`` with (B, A) ~ U(-1, 1)², solutions of
``x'' = -x`` with ``x(0) = B``, ``x'(0) = A``; 15 training and 5 validation series observed
at ``ntimes`` times on [0, 2π], the same linspace for all (regular) or per series
``ntimes`` sorted U(0, 2π) draws with the first set to 0 (irregular)."""

import math
import pathlib

import numpy as np
import torch

from common.atomic import save_npz
from datasets.generated import load_generated

SERIES = {'train': 15, 'val': 5}
SEEDS = {'train': 11, 'val': 12}
NTIMES = (10, 50)
REGULARITIES = ('regular', 'irregular')


def sample(series, ntimes, regular, seed):
    """Returns (initial (S, 2) = [B, A], times (S, ntimes), values (S, ntimes)), float32."""
    rng = np.random.default_rng(seed)
    initial = rng.uniform(-1.0, 1.0, size=(series, 2))
    if regular:
        times = np.tile(np.linspace(0.0, 2 * math.pi, ntimes), (series, 1))
    else:
        # As the original code: n sorted uniform draws, the first then set to 0.
        times = np.sort(rng.uniform(0.0, 2 * math.pi, size=(series, ntimes)), axis=1)
        times[:, 0] = 0.0
    b, a = initial[:, :1], initial[:, 1:]
    values = a * np.sin(times) + b * np.cos(times)
    return initial.astype(np.float32), times.astype(np.float32), values.astype(np.float32)


def folder(data_dir, ntimes, regularity):
    return pathlib.Path(data_dir) / 'sines' / f'{ntimes}_{regularity}'


def generate(data_dir, ntimes_options=NTIMES, regularities=REGULARITIES):
    """Write ``train.npz`` and ``val.npz`` for every (ntimes, regularity)."""
    for ntimes in ntimes_options:
        for regularity in regularities:
            for split, series in SERIES.items():
                initial, times, values = sample(
                    series, ntimes, regularity == 'regular', SEEDS[split] + 100 * ntimes
                )
                save_npz(
                    folder(data_dir, ntimes, regularity) / f'{split}.npz',
                    initial=initial,
                    times=times,
                    values=values,
                )


def load(data_dir, ntimes, regularity, split):
    """Tensors (initial, times, values) of one split, generated first if missing."""
    arrays = load_generated(
        folder(data_dir, ntimes, regularity) / f'{split}.npz',
        {
            'initial': ('float32', (None, 2)),
            'times': ('float32', (None, ntimes)),
            'values': ('float32', (None, ntimes)),
        },
        lambda: generate(data_dir, (ntimes,), (regularity,)),
    )
    return tuple(torch.from_numpy(array) for array in arrays)
