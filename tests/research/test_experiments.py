"""The ODE experiment command lines, run for real on tiny settings in temporary folders."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import atomic
from experiments import g1d, images, nested_spheres, runner, sines
from models.backprop import ADJOINT_OPTIONS
from models.neural_de import NeuralDE, solve_on_union
from models.vector_fields import SecondOrderVectorField
from study import results

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _folders(tmp_path):
    return [
        '--results_dir',
        str(tmp_path / 'results'),
        '--data_dir',
        str(tmp_path / 'data'),
        '--quiet',
    ]


def _check_run(folder, nepochs):
    run = results.read_run(folder)
    assert results.is_complete(folder)
    for name in results.SERIES:
        assert name in run, name
        assert np.isfinite(run[name]).all(), name
    for name in set(results.SERIES) - {'nparams'}:
        assert run[name].shape == (nepochs + 1,), name
    assert run['epochs'].tolist() == list(range(nepochs + 1))
    assert run['epoch_times'][0] == 0 and (run['epoch_times'][1:] > 0).all()
    assert (run['epoch_fnfe_history'] > 0).all()
    if run['summary']['arguments']['adjoint_option'] == 'direct':
        # backprop through the solver's graph calls no vector field
        assert (run['epoch_bnfe_history'] == 0).all()
    else:
        assert (run['epoch_bnfe_history'] > 0).all()
    assert run['summary']['nparams'] == int(run['nparams'])
    return run


@pytest.mark.slow
def test_nested_spheres_command_line(tmp_path):
    command = [
        sys.executable,
        '-m',
        'experiments.nested_spheres',
        '--adjoint_option',
        'adjoint_gq',
        '--width',
        '8',
        '--nepochs',
        '1',
        *_folders(tmp_path),
    ]
    finished = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    folder = results.run_dir(tmp_path / 'results', 'nested_spheres', 'gtol0.1', 8, 'adjoint_gq', 1)
    run = _check_run(folder, 1)
    # 2 hidden layers of 8 on [z, t] (dim 5 + 1), plus the 5 -> 2 decoder
    assert int(run['nparams']) == (6 * 8 + 8) + (8 * 8 + 8) + (8 * 5 + 5) + (5 * 2 + 2)
    assert (tmp_path / 'data' / 'nested_spheres' / 'train.npz').exists()


@pytest.mark.parametrize('option', ADJOINT_OPTIONS)
def test_g1d_every_option(tmp_path, option):
    folder = g1d.main(
        ['--adjoint_option', option, '--nepochs', '2', '--width', '8', *_folders(tmp_path)]
    )
    _check_run(folder, 2)
    assert folder.parts[-5:] == ('g1d', 'aug3', '8', option, '1')


def test_images_digits(tmp_path):
    folder = images.main(
        [
            '--dataset',
            'digits',
            '--width',
            '4',
            '--nepochs',
            '1',
            '--batchsize',
            '256',
            *_folders(tmp_path),
        ]
    )
    run = _check_run(folder, 1)
    assert folder.parts[-6:] == ('images', 'digits', '256', '4', 'adjoint_gq', '1')
    assert 0 <= run['epoch_val_metric_history'][-1] <= 100


@pytest.mark.slow
def test_nested_spheres_loss_goes_down(tmp_path):
    # Nested spheres sits at ln 2 until the flow starts to separate the classes:
    # small batches get there within a few epochs.
    folder = nested_spheres.main(
        ['--nepochs', '6', '--width', '32', '--batchsize', '50', *_folders(tmp_path)]
    )
    losses = results.read_run(folder)['epoch_loss_history']
    assert losses[1:].min() < 0.9 * losses[0]


@pytest.mark.parametrize('regularity', ['regular', 'irregular'])
def test_sines_loss_goes_down(tmp_path, regularity):
    folder = sines.main(
        [
            '--nepochs',
            '4',
            '--width',
            '32',
            '--lr',
            '0.01',
            '--regular_times',
            regularity,
            *_folders(tmp_path),
        ]
    )
    run = _check_run(folder, 4)
    assert folder.parts[-4] == f'10_{regularity}'
    assert run['epoch_loss_history'][-1] < 0.9 * run['epoch_loss_history'][0]


def test_union_of_irregular_times_matches_solving_each_series():
    torch.manual_seed(0)
    neural_de = NeuralDE(SecondOrderVectorField(16), 'direct', tol=1e-7)
    initial = torch.randn(3, 2)
    times = torch.tensor([[0.0, 0.5, 2.0], [0.0, 1.0, 2.0], [0.0, 0.5, 3.0]])
    together = solve_on_union(neural_de, initial, times)
    assert together.shape == (3, 3, 2)
    for series in range(3):
        alone = neural_de(initial[series : series + 1], times[series])[:, 0]
        assert torch.allclose(together[series], alone, atol=1e-5)


def _first_gradient(option, tmp_path):
    args = nested_spheres.build_parser().parse_args(
        [
            '--adjoint_option',
            option,
            '--width',
            '16',
            '--tol',
            '1e-6',
            '--gtol',
            '1',
            '--data_dir',
            str(tmp_path),
        ]
    )
    runner.seed_everything(1000)
    setup = nested_spheres.make_setup(args)
    inputs, labels = (part[:100] for part in setup.train_data)
    loss = setup.loss_fn(setup.model(inputs), labels)
    params = list(setup.model.parameters())
    return torch.cat([grad.reshape(-1) for grad in torch.autograd.grad(loss, params)])


def test_options_give_the_same_first_gradient(tmp_path):
    reference = _first_gradient('direct', tmp_path)
    for option in ('adjoint_ode', 'adjoint_seminorm', 'adjoint_gq'):
        gradient = _first_gradient(option, tmp_path)
        assert ((gradient - reference).norm() / reference.norm()).item() < 1e-4, option


@pytest.mark.parametrize(
    'arguments, words',
    [
        (['--adjoint_option', 'adjoint'], "argument --adjoint_option: invalid choice: 'adjoint'"),
        (['--width', '0'], 'argument --width: must be a positive integer'),
        (['--width', 'wide'], 'argument --width: must be a positive integer'),
        (['--lr', '-0.1'], 'argument --lr: must be a positive number'),
        (['--tol', 'nan'], 'argument --tol: must be a positive number'),
        (['--gtol', '0'], 'argument --gtol: must be a positive number'),
        (['--gtol', '1e308'], 'argument --gtol: must be at most 10000'),
        (['--experiment_no', '0'], 'argument --experiment_no: must be a positive integer'),
        (['--nepochs', '0'], 'argument --nepochs: must be a positive integer'),
        (['--batchsize', '-1'], 'argument --batchsize: must be a non-negative integer'),
        (['--save_model', '2'], 'argument --save_model: must be 0 or 1'),
        (['--device', 'tpu'], 'argument --device:'),
    ],
)
def test_bad_flags_exit_2_before_any_work(tmp_path, capsys, arguments, words):
    with pytest.raises(SystemExit) as raised:
        nested_spheres.main([*arguments, *_folders(tmp_path)])
    assert raised.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'data').exists()


def test_plain_python_entry_is_the_command_line(tmp_path):
    folder = g1d.train(
        adjoint_option='adjoint_gq',
        width=8,
        nepochs=2,
        quiet=True,
        results_dir=tmp_path / 'results',
        data_dir=tmp_path / 'data',
    )
    assert folder == results.run_dir(tmp_path / 'results', 'g1d', 'aug3', 8, 'adjoint_gq', 1)
    run = _check_run(folder, 2)
    assert run['summary']['arguments']['width'] == 8
    assert run['summary']['arguments']['quiet'] is True
    with pytest.raises(TypeError, match="unknown setting 'widht'"):
        g1d.train(widht=8)
    with pytest.raises(SystemExit):  # the same checks as the command line
        g1d.train(width=0, results_dir=tmp_path / 'never')
    assert not (tmp_path / 'never').exists()


def test_sines_rejects_other_ntimes(capsys):
    with pytest.raises(SystemExit) as raised:
        sines.main(['--ntimes', '20'])
    assert raised.value.code == 2 and 'argument --ntimes' in capsys.readouterr().err


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_results(tmp_path, monkeypatch):
    common = ['--nepochs', '4', '--width', '8', '--batchsize', '500', '--save_model', '1']
    straight = nested_spheres.main([*common, *_folders(tmp_path / 'straight')])
    reference = results.read_run(straight)

    # Interrupt the second run after its second epoch, as a kill would.
    original = results.write_history
    calls = []

    def interrupting(folder, history):
        original(folder, history)
        calls.append(1)
        if len(calls) == 3:  # epochs 0, 1, 2 written
            raise KeyboardInterrupt

    monkeypatch.setattr(results, 'write_history', interrupting)
    with pytest.raises(SystemExit) as raised:
        nested_spheres.main([*common, *_folders(tmp_path / 'resumed')])
    assert raised.value.code == 130
    monkeypatch.setattr(results, 'write_history', original)
    folder = results.run_dir(
        tmp_path / 'resumed' / 'results', 'nested_spheres', 'gtol0.1', 8, 'adjoint_gq', 1
    )
    assert not results.is_complete(folder)
    # epoch 2's series were written, its summary was not: readers see epochs 0 and 1.
    assert results.read_run(folder)['epochs'].tolist() == [0, 1]

    nested_spheres.main([*common, '--load_model', '1', *_folders(tmp_path / 'resumed')])
    resumed = results.read_run(folder)
    assert results.is_complete(folder)
    assert resumed['epochs'].tolist() == [0, 1, 2, 3, 4]
    for name in ('epoch_loss_history', 'epoch_val_metric_history', 'epoch_fnfe_history'):
        assert np.array_equal(resumed[name], reference[name]), name


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / 'series.npy'
    atomic.save_npy(target, np.arange(3))

    def failing_replace(source, destination):
        raise OSError('disk full')

    monkeypatch.setattr(atomic.os, 'replace', failing_replace)
    with pytest.raises(OSError):
        atomic.save_npy(target, np.arange(10))
    assert np.load(target).tolist() == [0, 1, 2]
    assert [path.name for path in tmp_path.iterdir()] == ['series.npy']


@pytest.mark.slow
def test_lr_probe_records_losses_and_picks_the_least(tmp_path):
    from experiments import lr_probe

    found = lr_probe.main(
        [
            'g1d',
            '--grid',
            'quick',
            '--lrs',
            '0.01',
            '0.0001',
            '--epochs',
            '3',
            '--results_dir',
            str(tmp_path),
        ]
    )
    recorded = lr_probe.read_probe('g1d', results_dir=tmp_path)
    assert recorded == json.loads(json.dumps(found))
    assert set(recorded['losses']) == {'5', '20'}
    for width, losses in recorded['losses'].items():
        assert all(np.isfinite(value) for value in losses.values())
        best = min(losses, key=losses.get)
        assert recorded['chosen'][width] == float(best)
    # A width added later joins the record; the widths probed before are kept as they were.
    lr_probe.main(
        [
            'g1d',
            '--grid',
            'quick',
            '--widths',
            '7',
            '--lrs',
            '0.001',
            '--epochs',
            '3',
            '--results_dir',
            str(tmp_path),
        ]
    )
    added = lr_probe.read_probe('g1d', results_dir=tmp_path)
    assert added['chosen'] == {**recorded['chosen'], '7': 0.001}
    assert added['losses']['5'] == recorded['losses']['5']
    assert added['lrs'] == [0.01, 0.001, 0.0001]


def test_lr_probe_adds_widths_only_to_a_probe_of_the_same_settings(tmp_path, capsys):
    from experiments import lr_probe

    recorded = {
        'experiment': 'g1d',
        'grid': 'quick',
        'flags': [],
        'option': 'adjoint_gq',
        'epochs': 3,
        'last_epochs_averaged': lr_probe.LAST_EPOCHS,
        'lrs': [0.01],
        'timeout_seconds': None,
        'losses': {'5': {'0.01': 0.5}},
        'chosen': {'5': 0.01},
    }
    path = lr_probe.probe_file('g1d', results_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(recorded))
    with pytest.raises(SystemExit) as stop:
        lr_probe.main(
            [
                'g1d',
                '--grid',
                'quick',
                '--widths',
                '7',
                '--epochs',
                '4',
                '--results_dir',
                str(tmp_path),
            ]
        )
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert '--widths cannot be added: the recorded probe has epochs 3, this one 4' in error
    # A probe that timed out at some widths records its limit per width.
    merged = lr_probe.merge(
        recorded,
        {
            **recorded,
            'timeout_seconds': 60.0,
            'lrs': [0.001],
            'losses': {'7': {'0.001': 0.25}},
            'chosen': {'7': 0.001},
        },
    )
    assert merged['timeout_seconds'] == {'5': None, '7': 60.0}
    assert merged['chosen'] == {'5': 0.01, '7': 0.001} and merged['lrs'] == [0.01, 0.001]


def test_lr_probe_counts_a_timed_out_run_as_lost(tmp_path):
    from experiments import lr_probe

    loss, problem = lr_probe._probe_one(
        'experiments.g1d', ['--nepochs', '100000', '--quiet'], str(tmp_path), timeout=1.0
    )
    assert loss == float('inf') and problem == 'timed out'


def test_lr_probe_rejects_an_option_outside_the_grid(capsys):
    from experiments import lr_probe

    with pytest.raises(SystemExit) as stop:
        lr_probe.main(['images', '--option', 'direct'])
    assert stop.value.code == 2 and '--option must be one of' in capsys.readouterr().err
