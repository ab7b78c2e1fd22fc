"""Image classification data: scikit-learn's digits (offline) and MNIST, CIFAR-10, SVHN read
from their standard files under ``<data_dir>/<dataset>/``.

Expected files (the publishers' own formats):

- ``mnist/``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``);
- ``cifar10/cifar-10-batches-py/``: ``data_batch_1`` … ``data_batch_5``, ``test_batch``;
- ``svhn/``: ``train_32x32.mat``, ``test_32x32.mat``.

When they are missing and torchvision is installed it downloads them; otherwise a
``FileNotFoundError`` says where to put them. Images come back as float32 tensors
``(N, channels, height, width)`` in [0, 1] and labels as int64 ``(N,)``.
"""

import gzip
import pathlib
import pickle

import numpy as np
import torch

from datasets.generated import DataError

DATASETS = ('digits', 'mnist', 'cifar10', 'svhn')
DIGITS_VALIDATION, DIGITS_SEED = 297, 0

_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'val': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
_CIFAR_FILES = {'train': [f'data_batch_{index}' for index in range(1, 6)], 'val': ['test_batch']}
_SVHN_FILES = {'train': 'train_32x32.mat', 'val': 'test_32x32.mat'}


def read_idx(path):
    """Read an IDX file (MNIST's format; gzip allowed) into a numpy array.

    Raises:
        DataError: not an unsigned-byte IDX file, or a header whose shape the data do not
            fill (checked before anything is allocated).
    """
    opener = gzip.open if str(path).endswith('.gz') else open
    with opener(path, 'rb') as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f'{path} is not an unsigned-byte IDX file; replace it with the original')
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) != offset + int(np.prod(shape, dtype=np.int64)):
        raise DataError(
            f'{path} claims {shape} values but holds {max(len(data) - offset, 0)}; replace it '
            'with the original'
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickles: read them taking only numpy's arrays and plain
    values, so that a crafted batch cannot run code."""

    ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'),
        ('numpy._core.multiarray', '_reconstruct'),
        ('numpy', 'ndarray'),
        ('numpy', 'dtype'),
        ('numpy.core.multiarray', 'scalar'),
        ('numpy._core.multiarray', 'scalar'),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f'a CIFAR-10 batch holds no {module}.{name}')
        return super().find_class(module, name)


def _find(folder, name):
    for candidate in (folder / name, folder / f'{name}.gz'):
        if candidate.exists():
            return candidate
    return None


def _missing(dataset, folder, names):
    return FileNotFoundError(
        f'{dataset}: files {", ".join(names)} not found under {folder}. Put the original '
        f'files there (see datasets/images.py), or install torchvision to download them, '
        f'or use --dataset digits, which needs no download.'
    )


def _download(dataset, folder):
    try:
        import torchvision
    except Exception:  # noqa: BLE001 - torchvision may be absent or fail to import
        return False
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == 'mnist':
        torchvision.datasets.MNIST(folder, download=True)
        for path in (folder / 'MNIST' / 'raw').glob('*-ubyte*'):
            path.replace(folder / path.name)
    elif dataset == 'cifar10':
        torchvision.datasets.CIFAR10(folder, download=True)
    else:
        for split in ('train', 'test'):
            torchvision.datasets.SVHN(folder, split=split, download=True)
    return True


def _load_mnist(folder, split):
    images_name, labels_name = _MNIST_FILES[split]
    paths = [_find(folder, images_name), _find(folder, labels_name)]
    if None in paths:
        return None
    images = read_idx(paths[0]).astype(np.float32)[:, None] / 255.0
    return images, read_idx(paths[1]).astype(np.int64)


def _load_cifar(folder, split):
    batches = folder / 'cifar-10-batches-py'
    paths = [batches / name for name in _CIFAR_FILES[split]]
    if not all(path.exists() for path in paths):
        return None
    images, labels = [], []
    for path in paths:
        try:
            with open(path, 'rb') as file:
                batch = _ArraysOnly(file, encoding='bytes').load()
            data, batch_labels = batch[b'data'], batch[b'labels']
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
            raise DataError(
                f'{path} is not a CIFAR-10 batch ({error}); replace it with the original'
            ) from error
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
    return (np.concatenate(images).astype(np.float32) / 255.0, np.asarray(labels, dtype=np.int64))


def _load_svhn(folder, split):
    path = folder / _SVHN_FILES[split]
    if not path.exists():
        return None
    from scipy.io import loadmat

    data = loadmat(path)
    images = np.transpose(data['X'], (3, 2, 0, 1)).astype(np.float32) / 255.0
    labels = data['y'].reshape(-1).astype(np.int64) % 10  # SVHN writes digit 0 as 10
    return images, labels


def _load_digits(split):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None] / 16.0
    order = np.random.default_rng(DIGITS_SEED).permutation(len(images))
    chosen = order[:DIGITS_VALIDATION] if split == 'val' else order[DIGITS_VALIDATION:]
    return images[chosen], digits.target[chosen].astype(np.int64)


def load(dataset, data_dir, split):
    """Images and labels of ``split`` ('train' or 'val') of ``dataset`` as tensors.

    Raises:
        ValueError: an unknown dataset or split.
        FileNotFoundError: the files are missing and torchvision cannot fetch them.
    """
    if dataset not in DATASETS:
        raise ValueError(f'dataset must be one of {", ".join(DATASETS)}; got {dataset!r}')
    if split not in ('train', 'val'):
        raise ValueError(f"split must be 'train' or 'val'; got {split!r}")
    if dataset == 'digits':
        images, labels = _load_digits(split)
    else:
        folder = pathlib.Path(data_dir) / dataset
        reader = {'mnist': _load_mnist, 'cifar10': _load_cifar, 'svhn': _load_svhn}[dataset]
        loaded = reader(folder, split)
        if loaded is None and _download(dataset, folder):
            loaded = reader(folder, split)
        if loaded is None:
            names = {
                'mnist': _MNIST_FILES[split],
                'cifar10': _CIFAR_FILES[split],
                'svhn': [_SVHN_FILES[split]],
            }[dataset]
            raise _missing(dataset, folder, names)
        images, labels = loaded
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
