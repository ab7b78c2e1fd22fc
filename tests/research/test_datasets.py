"""Data generators and readers: shapes, determinism, class balance, radii, file formats."""

import gzip
import math
import pickle

import numpy as np
import pytest
import torch

from datasets import images, make_nested_spheres_data, make_sine_data, nested_spheres, sines


def test_nested_spheres_files(tmp_path):
    make_nested_spheres_data.main(['--data_dir', str(tmp_path)])
    points, labels = nested_spheres.load(tmp_path, 'train')
    assert points.shape == (2000, 2) and points.dtype == torch.float32
    assert torch.bincount(labels).tolist() == [1000, 1000]
    radii = points.norm(dim=1)
    assert radii[labels == 0].max() < 0.4
    assert radii[labels == 1].min() > 0.7 and radii[labels == 1].max() < 0.9
    assert points.abs().max() <= 1.0
    val_points, val_labels = nested_spheres.load(tmp_path, 'val')
    assert val_points.shape == (100, 2) and torch.bincount(val_labels).tolist() == [50, 50]


def test_generators_are_deterministic(tmp_path):
    for folder in ('first', 'second'):
        make_nested_spheres_data.main(['--data_dir', str(tmp_path / folder)])
        make_sine_data.main(['--data_dir', str(tmp_path / folder)])
    for relative in [
        'nested_spheres/train.npz',
        'sines/50_irregular/val.npz',
        'sines/10_regular/train.npz',
    ]:
        first = (tmp_path / 'first' / relative).read_bytes()
        assert first == (tmp_path / 'second' / relative).read_bytes(), relative


@pytest.mark.parametrize('ntimes', sines.NTIMES)
@pytest.mark.parametrize('regularity', sines.REGULARITIES)
def test_sines_files(tmp_path, ntimes, regularity):
    initial, times, values = sines.load(tmp_path, ntimes, regularity, 'train')
    assert initial.shape == (15, 2) and times.shape == values.shape == (15, ntimes)
    assert (times[:, 0] == 0).all() and (times <= 2 * math.pi + 1e-6).all()
    assert (torch.diff(times, dim=1) > 0).all()
    if regularity == 'regular':
        assert (times == times[0]).all()
    else:
        assert not (times == times[0]).all()
    b, a = initial[:, :1], initial[:, 1:]
    assert torch.allclose(values, a * torch.sin(times) + b * torch.cos(times), atol=1e-6)
    assert sines.load(tmp_path, ntimes, regularity, 'val')[0].shape == (5, 2)


def test_digits_split():
    train_images, train_labels = images.load('digits', None, 'train')
    val_images, val_labels = images.load('digits', None, 'val')
    assert train_images.shape == (1500, 1, 8, 8) and val_images.shape == (297, 1, 8, 8)
    assert 0.0 <= train_images.min() and train_images.max() <= 1.0
    assert set(train_labels.tolist()) == set(range(10))


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b''.join(
        int(size).to_bytes(4, 'big') for size in array.shape
    )
    with gzip.open(path, 'wb') as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reader(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'mnist'
    folder.mkdir()
    pictures = rng.integers(0, 256, size=(7, 28, 28))
    labels = rng.integers(0, 10, size=7)
    _write_idx(folder / 'train-images-idx3-ubyte.gz', pictures)
    _write_idx(folder / 'train-labels-idx1-ubyte.gz', labels)
    loaded, loaded_labels = images.load('mnist', tmp_path, 'train')
    assert loaded.shape == (7, 1, 28, 28)
    assert torch.allclose(loaded[:, 0] * 255, torch.tensor(pictures, dtype=torch.float32))
    assert loaded_labels.tolist() == labels.tolist()


def test_cifar_reader(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / 'cifar10' / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    data = rng.integers(0, 256, size=(4, 3072)).astype(np.uint8)
    with open(folder / 'test_batch', 'wb') as file:
        pickle.dump({b'data': data, b'labels': [3, 1, 4, 1]}, file)
    loaded, labels = images.load('cifar10', tmp_path, 'val')
    assert loaded.shape == (4, 3, 32, 32) and labels.tolist() == [3, 1, 4, 1]
    # CIFAR stores each image as 1024 red, then green, then blue values, row by row
    assert loaded[2, 1, 0, 5].item() == pytest.approx(data[2, 1024 + 5] / 255.0)


def test_svhn_reader(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    (tmp_path / 'svhn').mkdir()
    pictures = rng.integers(0, 256, size=(32, 32, 3, 3)).astype(np.uint8)
    savemat(tmp_path / 'svhn' / 'test_32x32.mat', {'X': pictures, 'y': np.array([[10], [2], [7]])})
    loaded, labels = images.load('svhn', tmp_path, 'val')
    assert loaded.shape == (3, 3, 32, 32) and labels.tolist() == [0, 2, 7]
    assert loaded[1, 2, 4, 9].item() == pytest.approx(pictures[4, 9, 2, 1] / 255.0)


def test_missing_image_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(images, '_download', lambda dataset, folder: False)
    with pytest.raises(FileNotFoundError, match='train_32x32.mat not found under'):
        images.load('svhn', tmp_path, 'train')


def test_irregular_sines_times_are_n_sorted_draws_with_the_first_set_to_0():
    initial, times, values = sines.sample(4, 10, regular=False, seed=3)
    rng = np.random.default_rng(3)
    rng.uniform(-1.0, 1.0, size=(4, 2))  # the initial states come first
    draws = np.sort(rng.uniform(0.0, 2 * np.pi, size=(4, 10)), axis=1)
    assert np.allclose(times[:, 1:], draws[:, 1:]) and (times[:, 0] == 0).all()


def test_the_image_encoder_has_no_padding():
    from models.neural_de import ImageEncoder, state_side

    state = ImageEncoder(1, 10)(torch.zeros(2, 1, 28, 28))
    assert state.shape == (2, 10, 11, 11) and state_side(28) == 11
    assert ImageEncoder(3, 10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10, 13, 13)


class _Payload:
    """Unpickling this would run ``exec``."""

    def __reduce__(self):
        return exec, ('import os; open(os.environ["CIFAR_PWNED"], "w").write("ran")',)


def test_a_crafted_cifar_batch_is_refused_without_running_code(tmp_path, monkeypatch):
    import pickle

    from datasets import images
    from datasets.generated import DataError

    marker = tmp_path / 'ran'
    monkeypatch.setenv('CIFAR_PWNED', str(marker))
    batches = tmp_path / 'cifar10' / 'cifar-10-batches-py'
    batches.mkdir(parents=True)
    for name in images._CIFAR_FILES['val']:
        (batches / name).write_bytes(pickle.dumps({b'data': _Payload(), b'labels': [0]}))
    with pytest.raises(DataError, match='not a CIFAR-10 batch'):
        images._load_cifar(tmp_path / 'cifar10', 'val')
    assert not marker.exists()


def test_an_idx_header_that_claims_more_than_the_file_holds_is_named(tmp_path):
    from datasets import images
    from datasets.generated import DataError

    path = tmp_path / 'train-images-idx3-ubyte'
    path.write_bytes(bytes([0, 0, 8, 3]) + (2**31).to_bytes(4, 'big') + (28).to_bytes(4, 'big') * 2)
    with pytest.raises(DataError, match='claims'):
        images.read_idx(path)
