"""Ornstein–Uhlenbeck-type data (docs/paper_notes.md §4), generated with ``sdeint.stratint``.

Stratonovich ``dX = (μ t − θ X) dt + (σ + φ t) ∘ dW`` with μ = 0.2, θ = 0.1, σ = 0.6,
φ = 0.15, observed at 101 equally spaced times on [0, 10]; X(0) ~ U(−3, 3); 200 training
and 20 validation initial conditions, 45 sample paths each, fixed seeds.
"""

import pathlib

import numpy as np
import sdeint
import torch

from common.atomic import save_npz
from datasets.generated import load_generated

MU, THETA, SIGMA, PHI = 0.2, 0.1, 0.6, 0.15
T_END, NTIMES = 10.0, 101
INITIAL_CONDITIONS = {'train': 200, 'val': 20}
PATHS = 45
SEEDS = {'train': 21, 'val': 22}


def simulate(initial_conditions, paths, seed, ntimes=NTIMES):
    """Sample paths; returns (times (T,), initial (N,), paths (N, T, paths)), float32."""
    rng = np.random.default_rng(seed)
    times = np.linspace(0.0, T_END, ntimes)
    initial = rng.uniform(-3.0, 3.0, size=initial_conditions)

    def drift(x, t):
        return MU * t - THETA * x

    def diffusion(x, t):
        # All paths of one initial condition at once: independent noises, diagonal matrix.
        return np.diag(np.full(paths, SIGMA + PHI * t))

    samples = np.empty((initial_conditions, ntimes, paths))
    for index, start in enumerate(initial):
        samples[index] = sdeint.stratint(
            drift, diffusion, np.full(paths, start), times, generator=rng
        )
    return times.astype(np.float32), initial.astype(np.float32), samples.astype(np.float32)


def folder(data_dir):
    return pathlib.Path(data_dir) / 'ornstein_uhlenbeck'


def generate(data_dir, counts=None, paths=PATHS):
    """Write ``train.npz`` and ``val.npz``; ``counts`` overrides the initial-condition counts
    (a dict like :data:`INITIAL_CONDITIONS`), for quick tests."""
    counts = counts or INITIAL_CONDITIONS
    for split, number in counts.items():
        times, initial, samples = simulate(number, paths, SEEDS[split])
        save_npz(folder(data_dir) / f'{split}.npz', times=times, initial=initial, paths=samples)


def load(data_dir, split):
    """Tensors (times (T,), initial (N, 1), paths (N, T, P)), generated first if missing."""
    times, initial, paths = load_generated(
        folder(data_dir) / f'{split}.npz',
        {
            'times': ('float32', (None,)),
            'initial': ('float32', (None,)),
            'paths': ('float32', (None, None, None)),
        },
        lambda: generate(data_dir),
    )
    return torch.from_numpy(times), torch.from_numpy(initial)[:, None], torch.from_numpy(paths)
