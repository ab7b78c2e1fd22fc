"""Nested spheres (docs/paper_notes.md §3): 2-D points, class 0 inside radius 0.4, class 1 in the
ring 0.7 < r < 0.9, drawn uniformly in [-1, 1]² by rejection."""

import pathlib

import numpy as np
import torch

from common.atomic import save_npz
from datasets.generated import load_generated

INNER_RADIUS = 0.4
RING = (0.7, 0.9)
TRAIN_PER_CLASS, VALIDATION_PER_CLASS = 1000, 50
SEEDS = {'train': 1, 'val': 2}


def sample(per_class, seed):
    """``per_class`` points per class, shuffled: (points (N, 2) float32, labels (N,) int64)."""
    rng = np.random.default_rng(seed)
    found = {0: [], 1: []}
    while min(len(found[0]), len(found[1])) < per_class:
        points = rng.uniform(-1.0, 1.0, size=(4 * per_class, 2))
        radii = np.linalg.norm(points, axis=1)
        found[0].extend(points[radii < INNER_RADIUS])
        found[1].extend(points[(radii > RING[0]) & (radii < RING[1])])
    points = np.concatenate([np.array(found[0][:per_class]), np.array(found[1][:per_class])])
    labels = np.repeat([0, 1], per_class)
    order = rng.permutation(len(labels))
    return points[order].astype(np.float32), labels[order].astype(np.int64)


def folder(data_dir):
    return pathlib.Path(data_dir) / 'nested_spheres'


def generate(data_dir):
    """Write ``train.npz`` and ``val.npz`` under ``data_dir/nested_spheres``."""
    for split, per_class in (('train', TRAIN_PER_CLASS), ('val', VALIDATION_PER_CLASS)):
        points, labels = sample(per_class, SEEDS[split])
        save_npz(folder(data_dir) / f'{split}.npz', points=points, labels=labels)


def load(data_dir, split):
    """Tensors (points, labels) of ``split``, generating the files first if missing."""
    points, labels = load_generated(
        folder(data_dir) / f'{split}.npz',
        {'points': ('float32', (None, 2)), 'labels': ('int64', (None,))},
        lambda: generate(data_dir),
    )
    return torch.from_numpy(points), torch.from_numpy(labels)
