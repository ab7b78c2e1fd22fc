"""The Ornstein–Uhlenbeck data and experiment, on tiny settings."""

import numpy as np
import pytest
import torch

from datasets import make_ou_data, ornstein_uhlenbeck
from experiments import ornstein_uhlenbeck as experiment
from models import metrics
from study import results


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ou_data')
    make_ou_data.main(
        ['--data_dir', str(folder), '--n_train', '8', '--n_val', '4', '--n_paths', '10']
    )
    return folder


def test_data_shapes_and_determinism(tiny_data, tmp_path):
    times, initial, paths = ornstein_uhlenbeck.load(tiny_data, 'train')
    assert times.shape == (101,) and times[0] == 0 and times[-1] == pytest.approx(10.0)
    assert initial.shape == (8, 1) and initial.abs().max() <= 3
    assert paths.shape == (8, 101, 10)
    assert torch.allclose(paths[:, 0], initial.expand(8, 10))
    make_ou_data.main(
        ['--data_dir', str(tmp_path), '--n_train', '8', '--n_val', '4', '--n_paths', '10']
    )
    for split in ('train', 'val'):
        relative = f'ornstein_uhlenbeck/{split}.npz'
        assert (tmp_path / relative).read_bytes() == (tiny_data / relative).read_bytes()


def test_data_follows_the_mean_equation():
    # g depends on t only, so Stratonovich and Itô agree and E[X] solves m' = μ t − θ m.
    times, initial, paths = ornstein_uhlenbeck.simulate(25, 40, seed=5)
    theta, mu = ornstein_uhlenbeck.THETA, ornstein_uhlenbeck.MU
    t = times.astype(np.float64)[None, :]
    start = initial.astype(np.float64)[:, None]
    exact = start * np.exp(-theta * t) + mu / theta * t - mu / theta**2 * (1 - np.exp(-theta * t))
    # 1000 paths: the mean residual has a standard deviation of about 0.1 at t = 10
    residual = (paths.mean(axis=2) - exact).mean(axis=0)
    assert np.abs(residual).max() < 0.4
    assert np.abs(residual[:10]).max() < 0.1


def test_gaussian_kl_and_likelihood():
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(3, 5, 4000, generator=generator) * 2.0 + 1.0
    same = torch.randn(3, 5, 4000, generator=generator) * 2.0 + 1.0
    shifted = torch.randn(3, 5, 4000, generator=generator) * 1.0 + 2.0
    assert metrics.gaussian_kl(same, data).item() < 0.01
    # KL(N(2, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2
    assert metrics.gaussian_kl(shifted, data).item() == pytest.approx(
        np.log(2) + 2 / 8 - 0.5, abs=0.03
    )
    # log-likelihood of N(1, 4) data under N(1, 4): -0.5 log(2π·4) - 0.5
    assert metrics.gaussian_log_likelihood(same, data).item() == pytest.approx(
        -0.5 * np.log(2 * np.pi * 4) - 0.5, abs=0.03
    )


def _run(tiny_data, tmp_path, option, nepochs):
    return experiment.main(
        [
            '--adjoint_option',
            option,
            '--nepochs',
            str(nepochs),
            '--batchsize',
            '4',
            '--data_dir',
            str(tiny_data),
            '--results_dir',
            str(tmp_path),
            '--quiet',
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize('option', ['sde_direct', 'sde_adjoint'])
def test_sde_options_run(tiny_data, tmp_path, option):
    folder = _run(tiny_data, tmp_path, option, 1)
    run = results.read_run(folder)
    assert results.is_complete(folder)
    assert folder.parts[-5:] == ('ornstein_uhlenbeck', '10', '5', option, '1')
    assert np.isfinite(run['epoch_loss_history']).all() and len(run['epochs']) == 2


@pytest.mark.slow
def test_gq_lowers_the_validation_kl(tiny_data, tmp_path):
    folder = _run(tiny_data, tmp_path, 'adjoint_gq', 3)
    run = results.read_run(folder)
    assert results.is_complete(folder) and run['epochs'].tolist() == [0, 1, 2, 3]
    assert np.isfinite(run['epoch_loss_history']).all()
    # Eight training conditions make a noisy descent (deterministic: the Brownian motions
    # are seeded); the third epoch is the first below the start.
    assert run['epoch_loss_history'][3] < 0.95 * run['epoch_loss_history'][0]
    assert (run['epoch_bnfe_history'][1:] > 0).all()


def test_negative_ncosines_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        experiment.main(['--ncosines', '-1'])
    assert raised.value.code == 2
    assert 'argument --ncosines: must be a non-negative integer' in capsys.readouterr().err


@pytest.mark.parametrize('option', ['adjoint_gq', 'sde_direct'])
def test_a_run_is_reproducible_and_extends_bit_for_bit(tiny_data, tmp_path, option):
    # torchsde's Brownian motion takes its entropy from torch's seeded generator, so a
    # run, its validation and its extension are all the same on every try.
    def run(folder, nepochs, *extra):
        return experiment.main(
            [
                '--adjoint_option',
                option,
                '--nepochs',
                str(nepochs),
                '--batchsize',
                '4',
                '--quiet',
                '--data_dir',
                str(tiny_data),
                '--results_dir',
                str(tmp_path / folder),
                *extra,
            ]
        )

    run('short', 1)
    extended = results.read_run(run('short', 2, '--load_model', '1'))
    alone = results.read_run(run('alone', 2))
    for name in ('epoch_loss_history', 'epoch_val_metric_history', 'epoch_fnfe_history'):
        assert np.array_equal(extended[name], alone[name]), name
