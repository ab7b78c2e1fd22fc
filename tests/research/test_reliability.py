"""Runs never mix settings, stop cleanly, and name every broken file."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from experiments import g1d, nested_spheres
from experiments import results as results_command
from plotting import plot_ode_times
from study import results

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _g1d(tmp_path, *extra):
    return g1d.main(
        [
            '--width',
            '8',
            '--nepochs',
            '3',
            '--quiet',
            '--save_model',
            '1',
            '--results_dir',
            str(tmp_path / 'results'),
            *extra,
        ]
    )


def _exit(capsys, function, *arguments):
    with pytest.raises(SystemExit) as raised:
        function(*arguments)
    return raised.value.code, capsys.readouterr().err


def test_resuming_with_other_settings_stops_and_names_them(tmp_path, capsys):
    folder = _g1d(tmp_path)
    before = results.read_run(folder)
    code, message = _exit(
        capsys,
        _g1d,
        tmp_path,
        '--load_model',
        '1',
        '--lr',
        '0.5',
        '--tol',
        '1e-4',
        '--nepochs',
        '5',
    )
    assert code == 2
    assert '--lr 0.01 there, 0.5 now' in message and '--tol 0.001 there, 0.0001 now' in message
    after = results.read_run(folder)
    assert np.array_equal(before['epoch_loss_history'], after['epoch_loss_history'])
    assert after['summary']['arguments']['lr'] == 0.01
    # Writing over it without --load_model is refused as well.
    code, _ = _exit(capsys, _g1d, tmp_path, '--lr', '0.5')
    assert code == 2


def test_extending_nepochs_is_the_one_legitimate_resume(tmp_path, capsys):
    folder = _g1d(tmp_path)
    _g1d(tmp_path, '--load_model', '1', '--nepochs', '5')
    run = results.read_run(folder)
    assert run['epochs'].tolist() == [0, 1, 2, 3, 4, 5]
    assert run['summary']['arguments']['nepochs'] == 5 and run['summary']['complete']
    code, message = _exit(capsys, _g1d, tmp_path, '--load_model', '1', '--nepochs', '2')
    assert code == 2 and 'already holds 5 epochs' in message


def test_a_checkpoint_from_other_settings_is_refused(tmp_path, capsys):
    folder = _g1d(tmp_path)
    (folder / results.SUMMARY).unlink()  # only the checkpoint tells
    code, message = _exit(capsys, _g1d, tmp_path, '--load_model', '1', '--tol', '1e-4')
    assert code == 2 and 'checkpoint.pt belongs to a run with other settings' in message
    assert '--tol 0.001 there, 0.0001 now' in message


def test_the_sweep_check_sees_other_epochs_and_settings(tmp_path):
    folder = _g1d(tmp_path)
    command = [
        '-m',
        'experiments.g1d',
        '--width',
        '8',
        '--nepochs',
        '3',
        '--results_dir',
        str(tmp_path / 'results'),
    ]

    def complete(*flags):
        return results_command.main(['complete', str(folder), '--', *command, *flags])

    assert complete() == 0
    assert complete('--nepochs', '10') == 1  # a quick grid's run is not the full grid's
    assert complete('--lr', '0.5') == 1
    assert results_command.main(['complete', str(tmp_path / 'nowhere')]) == 1


def test_the_probe_of_epoch_0_changes_nothing(tmp_path, monkeypatch):
    from models.trainer import Trainer

    common = ['--width', '8', '--nepochs', '1', '--batchsize', '500', '--quiet']
    probed = nested_spheres.main([*common, '--results_dir', str(tmp_path / 'probed')])
    monkeypatch.setattr(Trainer, 'probe_nfe', lambda self: (0.0, 0.0))
    skipped = nested_spheres.main([*common, '--results_dir', str(tmp_path / 'skipped')])
    first, second = results.read_run(probed), results.read_run(skipped)
    for name in ('epoch_loss_history', 'epoch_val_metric_history'):
        assert np.array_equal(first[name], second[name]), name


def test_interrupt_says_what_was_saved_and_how_to_resume(tmp_path, capsys, monkeypatch):
    original = results.write_history
    calls = []

    def interrupting(folder, history):
        original(folder, history)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(results, 'write_history', interrupting)
    code, message = _exit(capsys, _g1d, tmp_path)
    assert code == 130
    assert 'interrupted: epochs 0 to 0 are saved in' in message
    # Resuming is the default: the same command resumes.
    assert 'rerun the same command to resume after epoch 0' in message
    assert 'Traceback' not in message
    # Started with --load_model 0: the same command would start afresh, so the message
    # names the flag that resumes.
    calls.clear()
    folder = tmp_path / 'again'
    code, message = _exit(
        capsys,
        g1d.main,
        [
            '--width',
            '8',
            '--nepochs',
            '3',
            '--quiet',
            '--save_model',
            '1',
            '--load_model',
            '0',
            '--results_dir',
            str(folder),
        ],
    )
    assert code == 130
    assert 'rerun the same command with --load_model 1 to resume after epoch 0' in message


@pytest.mark.slow
def test_sigterm_stops_a_run_with_the_same_message(tmp_path):
    command = [
        sys.executable,
        '-m',
        'experiments.g1d',
        '--width',
        '8',
        '--nepochs',
        '100000',
        '--quiet',
        '--save_model',
        '1',
        '--results_dir',
        str(tmp_path),
    ]
    process = subprocess.Popen(command, cwd=REPOSITORY, stderr=subprocess.PIPE, text=True)
    folder = results.run_dir(tmp_path, 'g1d', 'aug3', 8, 'adjoint_gq', 1)
    deadline = time.time() + 60
    while not (folder / results.CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 143
    assert 'interrupted: epochs 0 to' in error and 'Traceback' not in error


def test_files_follow_the_umask_and_stale_temporaries_go(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = _g1d(tmp_path)
    finally:
        os.umask(previous)
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name
    stale = folder / '.checkpoint.pt.x1y2z3.tmp'
    stale.write_bytes(b'half a checkpoint')
    _g1d(tmp_path, '--load_model', '1', '--nepochs', '4')
    assert not stale.exists()


def test_readers_see_only_what_the_summary_reports(tmp_path):
    folder = _g1d(tmp_path)
    # A kill between the series and the summary: one more epoch in a series.
    np.save(folder / 'epoch_times.npy', np.arange(5.0))
    summary = json.loads((folder / results.SUMMARY).read_text())
    summary['epochs_done'] = 3
    (folder / results.SUMMARY).write_text(json.dumps(summary))
    run = results.read_run(folder)
    assert len(run['epoch_times']) == len(run['epochs']) == 4


@pytest.mark.parametrize(
    'name, words',
    [
        (results.CHECKPOINT, 'delete it, or rerun with --load_model 0'),
        (results.SUMMARY, 'delete the run folder and run it again'),
    ],
)
def test_a_corrupt_file_is_named(tmp_path, capsys, name, words):
    folder = _g1d(tmp_path)
    (folder / name).write_bytes(b'')
    code, message = _exit(capsys, _g1d, tmp_path, '--load_model', '1', '--nepochs', '4')
    assert code == 1 and str(folder / name) in message and words in message


def test_a_corrupt_series_is_named_by_readers(tmp_path):
    folder = _g1d(tmp_path)
    (folder / 'epochs.npy').write_bytes(b'\x93NUMPY')
    with pytest.raises(results.ResultsError, match='epochs.npy cannot be read'):
        results.read_run(folder)


def test_final_weights_round_trip_and_a_corrupt_file_is_named(tmp_path):
    model = torch.nn.Linear(3, 2)
    results.write_weights(tmp_path, model.state_dict())
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(results.read_weights(tmp_path))
    assert torch.equal(restored.weight, model.weight) and torch.equal(restored.bias, model.bias)
    assert results.read_weights(tmp_path / 'none') is None
    (tmp_path / results.WEIGHTS).write_bytes(b'PK\x03\x04')
    with pytest.raises(results.ResultsError, match='weights.npz cannot be read'):
        results.read_weights(tmp_path)


def test_a_corrupt_generated_data_set_is_made_again(tmp_path):
    from datasets import nested_spheres as data

    expected = data.load(tmp_path, 'train')
    path = data.folder(tmp_path) / 'train.npz'
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match='train.npz cannot be read'):
        again = data.load(tmp_path, 'train')
    assert all(torch.equal(first, second) for first, second in zip(expected, again))


def test_an_unwritable_results_dir_fails_before_any_work(tmp_path, capsys, monkeypatch):
    from experiments import runner

    blocker = tmp_path / 'a file'
    blocker.write_text('not a folder')
    monkeypatch.setattr(runner, 'seed_everything', lambda seed: pytest.fail('work started'))
    code, message = _exit(capsys, g1d.main, ['--results_dir', str(blocker), '--quiet'])
    assert code == 2
    assert f'argument --results_dir: {blocker} is a file, not a folder' in message
    # A folder below a file: refused the same way, as the flag is read.
    code, message = _exit(capsys, g1d.main, ['--results_dir', str(blocker / 'below'), '--quiet'])
    assert code == 2 and f'{blocker} is a file, not a folder' in message


def test_experiment_no_beyond_the_seed_range_exits_2(capsys):
    code, message = _exit(capsys, g1d.main, ['--experiment_no', '4294968'])
    assert code == 2 and 'argument --experiment_no: must be at most 4294967' in message


def test_divergence_stops_with_advice_and_keeps_finished_epochs(tmp_path, capsys):
    code, message = _exit(capsys, _g1d, tmp_path, '--lr', '1e300')
    assert code == 1 and 'training diverged in epoch' in message
    assert 'smaller --lr' in message
    folder = results.run_dir(tmp_path / 'results', 'g1d', 'aug3', 8, 'adjoint_gq', 1)
    run = results.read_run(folder)
    assert run['epochs'][0] == 0 and not run['summary']['complete']


def test_plotting_refuses_to_write_an_empty_figure(tmp_path, capsys):
    plots = tmp_path / 'plots'
    plots.mkdir()
    (plots / 'ode_times_g1d.png').write_bytes(b'a good figure')
    assert (
        plot_ode_times.main(
            [
                '--experiment',
                'g1d',
                '--results_dir',
                str(tmp_path / 'typo'),
                '--plots_dir',
                str(plots),
            ]
        )
        is None
    )
    assert 'nothing to plot' in capsys.readouterr().err
    assert (plots / 'ode_times_g1d.png').read_bytes() == b'a good figure'
    command = subprocess.run(
        [
            sys.executable,
            '-m',
            'plotting.plot_ode_times',
            '--experiment',
            'g1d',
            '--results_dir',
            str(tmp_path / 'typo'),
            '--plots_dir',
            str(plots),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    assert command.returncode == 1


def test_plotting_leaves_out_repeats_that_differ(tmp_path, capsys):
    for number, nepochs in ((1, 3), (2, 3), (3, 2)):
        _g1d(tmp_path, '--experiment_no', str(number), '--nepochs', str(nepochs))
    png, _ = plot_ode_times.main(
        [
            '--experiment',
            'g1d',
            '--results_dir',
            str(tmp_path / 'results'),
            '--plots_dir',
            str(tmp_path),
        ]
    )
    assert png.exists()
    error = capsys.readouterr().err
    assert 'inconsistent:' in error and 'adjoint_gq/3' in error and 'epochs_done 2' in error


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing(tmp_path):
    """Runs killed hard, again and again, then resumed: the same results as no kill."""

    def command(results_dir):
        return [
            sys.executable,
            '-m',
            'experiments.g1d',
            '--width',
            '64',
            '--nepochs',
            '40',
            '--quiet',
            '--save_model',
            '1',
            '--load_model',
            '1',
            '--results_dir',
            str(results_dir),
        ]

    subprocess.run(command(tmp_path / 'straight'), cwd=REPOSITORY, check=True)
    chooser = np.random.default_rng(0)
    killed = tmp_path / 'killed'
    for _ in range(5):
        process = subprocess.Popen(command(killed), cwd=REPOSITORY)
        time.sleep(chooser.uniform(0.5, 3.0))
        process.kill()
        process.wait()
    subprocess.run(command(killed), cwd=REPOSITORY, check=True)
    folders = [
        results.run_dir(base, 'g1d', 'aug3', 64, 'adjoint_gq', 1)
        for base in (tmp_path / 'straight', killed)
    ]
    reference, resumed = (results.read_run(folder) for folder in folders)
    assert resumed['summary']['complete'] and resumed['epochs'].tolist() == list(range(41))
    for name in (
        'epoch_loss_history',
        'epoch_val_metric_history',
        'epoch_fnfe_history',
        'epoch_bnfe_history',
    ):
        assert np.array_equal(reference[name], resumed[name]), name
    assert not list(folders[1].glob('.*.tmp'))


def test_a_stale_checkpoint_is_never_mixed_into_a_fresh_run(tmp_path, capsys):
    folder = _g1d(tmp_path, '--nepochs', '10')
    capsys.readouterr()
    # A fresh run over it, without checkpoints: it says what it replaces, and the old
    # run's checkpoint goes with it.
    _g1d(tmp_path, '--nepochs', '3', '--save_model', '0', '--load_model', '0')
    assert 'replacing the finished run' in capsys.readouterr().err
    assert not (folder / results.CHECKPOINT).exists()
    final = _g1d(tmp_path, '--nepochs', '5', '--load_model', '1')
    run = results.read_run(final)
    assert run['summary']['epochs_done'] == 5 and run['summary']['complete']
    assert run['epochs'].tolist() == [0, 1, 2, 3, 4, 5]
    # The same as a run of 5 epochs made in one go.
    alone = g1d.main(
        ['--width', '8', '--nepochs', '5', '--quiet', '--results_dir', str(tmp_path / 'alone')]
    )
    assert np.array_equal(run['epoch_loss_history'], results.read_run(alone)['epoch_loss_history'])


def test_a_checkpoint_with_more_epochs_than_asked_is_refused(tmp_path, capsys):
    folder = _g1d(tmp_path, '--nepochs', '5')
    (folder / results.SUMMARY).unlink()
    code, message = _exit(capsys, _g1d, tmp_path, '--nepochs', '3', '--load_model', '1')
    assert code == 2 and 'holds 5 epochs, more than --nepochs 3' in message


def test_a_checkpoint_that_disagrees_with_the_summary_is_refused(tmp_path, capsys):
    folder = _g1d(tmp_path, '--nepochs', '4')
    checkpoint = torch.load(folder / results.CHECKPOINT, weights_only=True)
    summary = json.loads((folder / results.SUMMARY).read_text())
    summary['epochs_done'] = 2
    (folder / results.SUMMARY).write_text(json.dumps(summary))
    code, message = _exit(capsys, _g1d, tmp_path, '--nepochs', '6', '--load_model', '1')
    assert code == 2 and 'belongs to another run' in message
    assert checkpoint['history']['epochs'][-1] == 4


def test_a_series_shorter_than_the_summary_is_refused_by_every_reader(tmp_path, capsys):
    folder = _g1d(tmp_path)
    losses = np.load(folder / 'epoch_loss_history.npy')
    np.save(folder / 'epoch_loss_history.npy', losses[:2])
    with pytest.raises(results.ResultsError, match='holds 2 epochs but .* records 4'):
        results.read_run(folder)
    assert results_command.main(['complete', str(folder)]) == 1
    assert 'holds 2 epochs' in capsys.readouterr().err
    assert results.complete_runs(tmp_path / 'results', 'g1d', 'aug3') == {}


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path, capsys):
    from experiments import run_folder

    folder = g1d.main(
        ['--width', '8', '--nepochs', '1', '--quiet', '--results_dir', str(tmp_path / 'results')]
    )
    with run_folder.FolderLock(folder):
        code, message = _exit(capsys, _g1d, tmp_path, '--nepochs', '1', '--load_model', '1')
    assert code == 2 and 'another run is writing' in message
    # Once the first one is done, the folder is free again.
    _g1d(tmp_path, '--nepochs', '2', '--load_model', '1')


def test_flags_after_the_double_dash_win_over_the_grids():
    listed = subprocess.run(
        [
            sys.executable,
            '-m',
            'experiments.grids',
            'runs',
            'g1d',
            '--grid',
            'quick',
            '--',
            '--nepochs',
            '2',
            '--gtol',
            '0.5',
        ],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        check=True,
    )
    lines = listed.stdout.splitlines()
    assert lines
    for line in lines:
        argv = line.split('\t')[2:]
        # argparse keeps the last value of a flag: the user's must come last.
        last = {
            name: max(i for i, item in enumerate(argv) if item == name)
            for name in ('--nepochs', '--gtol')
        }
        assert argv[last['--nepochs'] + 1] == '2' and argv[last['--gtol'] + 1] == '0.5'


def _command(*arguments, environment=None):
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
        env=environment,
    )


def _one_line(result):
    assert 'Traceback' not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    'arguments, code, words',
    [
        (['-m', 'experiments.g1d', '--tol', '1e-300'], 2, '--tol: must be between 1e-12 and 1'),
        (['-m', 'experiments.g1d', '--tol', '1e300'], 2, '--tol: must be between 1e-12 and 1'),
        (
            ['-m', 'experiments.g1d', '--width', '100000000', '--nepochs', '1'],
            2,
            'not enough memory to build this model',
        ),
        (
            ['-m', 'experiments.toy_gradient', '--t_step', '1e-300'],
            2,
            'at most 100000 (choose a larger --t_step)',
        ),
        (
            ['-m', 'experiments.results', 'complete', 'nowhere', '--', '-m', 'nosuchmodule'],
            2,
            'the command after -- must be -m and an experiment module',
        ),
        (
            [
                '-m',
                'experiments.images',
                '--dataset',
                'mnist',
                '--width',
                '4',
                '--nepochs',
                '1',
                '--data_dir',
                'DATA',
            ],
            2,
            'not found under',
        ),
    ],
)
def test_user_errors_end_in_one_line(tmp_path, arguments, code, words):
    arguments = [str(tmp_path / 'data') if item == 'DATA' else item for item in arguments]
    result = _command(*arguments, '--results_dir', str(tmp_path / 'results'), '--quiet')
    assert result.returncode == code, result.stderr
    assert words in _one_line(result)


def test_data_dir_problems_are_named(tmp_path):
    data = tmp_path / 'data'
    (data / 'nested_spheres' / 'train.npz').mkdir(parents=True)
    common = [
        '-m',
        'experiments.nested_spheres',
        '--width',
        '8',
        '--nepochs',
        '1',
        '--quiet',
        '--results_dir',
        str(tmp_path / 'results'),
    ]
    result = _command(*common, '--data_dir', str(data))
    assert (
        result.returncode == 2
        and 'is a folder, where a generated data file belongs' in _one_line(result)
    )
    afile = tmp_path / 'afile'
    afile.write_text('')
    # Refused as it is read, also by an experiment that never reads data.
    for experiment in ('experiments.nested_spheres', 'experiments.g1d'):
        result = _command('-m', experiment, *common[2:], '--data_dir', str(afile))
        assert result.returncode == 2
        assert f'argument --data_dir: {afile} is a file, not a folder' in _one_line(result)
    # A file where the generator writes its folder: named when the data are generated.
    blocked = tmp_path / 'blocked'
    blocked.mkdir()
    (blocked / 'nested_spheres').write_text('')
    result = _command(*common, '--data_dir', str(blocked))
    assert result.returncode == 2 and 'choose a writable folder as --data_dir' in _one_line(result)
    # The traceback is there on request.
    debug = _command(
        *common, '--data_dir', str(blocked), environment=dict(os.environ, TORCH_GQ_DEBUG='1')
    )
    assert debug.returncode == 2 and 'Traceback' in debug.stderr


def test_a_data_file_of_the_wrong_dtype_is_generated_again(tmp_path):
    from datasets import nested_spheres as data

    points, labels = data.load(tmp_path, 'train')
    np.savez(
        data.folder(tmp_path) / 'train.npz',
        points=points.numpy().astype(np.float64),
        labels=labels.numpy(),
    )
    with pytest.warns(RuntimeWarning, match=re.escape("expected float32 with shape ('any', 2)")):
        again, _ = data.load(tmp_path, 'train')
    assert torch.equal(again, points)
    # Of the right dtype but the wrong shape: generated again as well.
    np.savez(
        data.folder(tmp_path) / 'train.npz',
        points=np.zeros((len(points), 3), dtype=np.float32),
        labels=labels.numpy(),
    )
    with pytest.warns(RuntimeWarning, match=re.escape('shape (2000, 3), expected float32')):
        again, _ = data.load(tmp_path, 'train')
    assert torch.equal(again, points)


def test_a_data_file_holding_nan_is_generated_again(tmp_path):
    from datasets import nested_spheres as data

    points, labels = data.load(tmp_path, 'train')
    spoiled = points.numpy().copy()
    spoiled[0, 1] = np.nan
    spoiled[5, 0] = np.inf
    np.savez(data.folder(tmp_path) / 'train.npz', points=spoiled, labels=labels.numpy())
    with pytest.warns(RuntimeWarning, match='points holds 2 NaN or infinite values'):
        again, _ = data.load(tmp_path, 'train')
    assert torch.equal(again, points)


def test_a_summary_that_is_not_an_object_is_named(tmp_path):
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / results.SUMMARY).write_text('[1, 2]')
    with pytest.raises(results.ResultsError, match='a JSON list, not an object'):
        results.read_summary(folder)


def test_a_full_disk_during_training_keeps_the_finished_epochs(tmp_path, capsys, monkeypatch):
    from experiments import runner

    writes = {'count': 0}
    original = results.write_history

    def failing(folder, history):
        writes['count'] += 1
        if writes['count'] > 1:
            raise OSError(28, 'No space left on device')
        original(folder, history)

    monkeypatch.setattr(runner.results, 'write_history', failing)
    code, message = _exit(capsys, _g1d, tmp_path)
    assert code == 1
    assert 'No space left on device' in message and 'epochs 0 to 0 are kept' in message


def test_an_interrupt_while_preparing_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    from experiments import runner

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, 'seed_everything', interrupted)
    code, message = _exit(capsys, _g1d, tmp_path)
    assert code == 130 and 'no epoch was written' in message


def test_a_checkpoint_one_epoch_ahead_of_its_summary_resumes(tmp_path):
    # A run killed between writing its checkpoint and its summary.
    folder = _g1d(tmp_path, '--nepochs', '4')
    summary = json.loads((folder / results.SUMMARY).read_text())
    summary['epochs_done'], summary['complete'] = 3, False
    (folder / results.SUMMARY).write_text(json.dumps(summary))
    resumed = results.read_run(_g1d(tmp_path, '--nepochs', '5', '--load_model', '1'))
    assert resumed['epochs'].tolist() == [0, 1, 2, 3, 4, 5] and resumed['summary']['complete']


@pytest.mark.parametrize(
    'flags, words',
    [
        (('--nosuch',), "unknown flag '--nosuch'"),
        (('--jobs', '-1'), "--jobs must be a positive integer; got '-1'"),
        (('--grid', 'big'), "--grid must be paper, reduced or quick; got 'big'"),
        (('--reduced', '--log_dir'), '--log_dir needs a value'),
    ],
)
def test_reproduce_refuses_a_bad_flag_before_any_step(tmp_path, flags, words):
    finished = subprocess.run(
        [
            'bash',
            str(REPOSITORY / 'scripts' / 'reproduce.sh'),
            '--results_dir',
            str(tmp_path / 'results'),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert words in finished.stderr and 'nothing was run' in finished.stderr
    assert not (tmp_path / 'results').exists()


@pytest.mark.parametrize(
    'flags, words',
    [
        (('--tol', '-1e-3'), "argument --tol: must be a positive number; got '-1e-3'"),
        (('--lr', '-2.5e-4'), "argument --lr: must be a positive number; got '-2.5e-4'"),
        (('--results_dir', ''), "argument --results_dir: must name a folder; got ''"),
        (('--data_dir', ' '), "argument --data_dir: must name a folder; got ' '"),
    ],
)
def test_negative_numbers_and_empty_folders_are_checked_as_values(capsys, flags, words):
    code, message = _exit(capsys, g1d.main, ['--quiet', *flags])
    assert code == 2 and words in message


@pytest.mark.parametrize(
    'command, delay, number',
    [
        # Still importing torch (which takes a few seconds).
        (['experiments.g1d'], 1.0, signal.SIGINT),
        (['experiments.g1d'], 1.0, signal.SIGTERM),
        (['plotting.figures'], 1.0, signal.SIGINT),
        # In the middle of their work: neither has a handler of its own.
        (['experiments.toy_gradient', '--method', 'mali', '--results_dir'], 6.0, signal.SIGINT),
        (['experiments.toy_gradient', '--method', 'mali', '--results_dir'], 6.0, signal.SIGTERM),
        # While one of its probe runs trains in a child process.
        (
            ['experiments.lr_probe', 'g1d', '--widths', '5', '20', '--results_dir'],
            8.0,
            signal.SIGTERM,
        ),
    ],
)
def test_a_signal_to_a_command_prints_one_line(tmp_path, command, delay, number):
    arguments = [*command, str(tmp_path)] if command[-1] == '--results_dir' else command
    started = subprocess.Popen(
        [sys.executable, '-m', *arguments],
        cwd=REPOSITORY,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(delay)
    started.send_signal(number)
    _, error = started.communicate(timeout=60)
    # The command ends as the signal would end it (the shell sees 130 or 143): by the
    # signal itself, or past its imports by the experiment's own handler, which says what
    # was saved.
    assert started.returncode in (-number, 128 + number), error
    assert 'Traceback' not in error
    assert error.splitlines()[-1] == 'interrupted; no file is left half-written' or (
        started.returncode == 128 + number and 'interrupted' in error.splitlines()[-1]
    )
    assert not [path for path in tmp_path.rglob('*') if path.name.endswith('.tmp')]


def _break_summary(key, value):
    def breaking(folder):
        summary = json.loads((folder / results.SUMMARY).read_text())
        if key == 'width':
            summary['arguments']['width'] = value
        else:
            summary[key] = value
        (folder / results.SUMMARY).write_text(json.dumps(summary))

    return breaking


def _break_series(name, make):
    def breaking(folder):
        path = folder / f'{name}.npy'
        if make is None:
            path.unlink()
        else:
            np.save(path, make(np.load(path)))

    return breaking


@pytest.mark.parametrize(
    'breaking, words',
    [
        (_break_series('epoch_times', None), 'lacks epoch_times.npy'),
        (_break_series('epoch_loss_history', lambda s: s.astype(str)), 'not numbers'),
        (_break_series('epoch_loss_history', lambda s: np.stack([s, s], 1)), 'has shape'),
        (_break_series('epoch_times', lambda s: s * np.nan), 'NaN or infinite'),
        (_break_series('epoch_times', lambda s: -s - 1), 'negative values'),
        (_break_series('epochs', lambda s: s[::-1].copy()), 'does not count the epochs'),
        (_break_summary('epochs_done', -1), 'not a non-negative whole number'),
        (_break_summary('epochs_done', '2'), 'not a non-negative whole number'),
        (_break_summary('width', 99), 'records width 99 but the folder is named for 8'),
    ],
    ids=['missing', 'strings', 'shape', 'nan', 'negative', 'epochs', 'done-1', 'done-str', 'width'],
)
def test_a_broken_run_is_left_out_by_name_and_its_repeat_kept(tmp_path, capsys, breaking, words):
    first = _g1d(tmp_path, '--nepochs', '2')
    _g1d(tmp_path, '--nepochs', '2', '--experiment_no', '2')
    breaking(first)
    groups = results.complete_runs(tmp_path / 'results', 'g1d', 'aug3')
    error = capsys.readouterr().err
    assert f'left out: {first}' in error and words in error, error
    kept = groups[(8, 'adjoint_gq')]
    assert [run['summary']['arguments']['experiment_no'] for run in kept] == [2]


@pytest.mark.parametrize(
    'command',
    [
        ['-m', 'experiments.toy_gradient', '--t_step', '5', '--results_dir'],
        ['-m', 'datasets.make_ou_data', '--data_dir'],
        ['-m', 'experiments.lr_probe', 'g1d', '--results_dir'],
    ],
)
def test_a_file_where_a_folder_is_wanted_is_named_before_any_work(tmp_path, command):
    blocking = tmp_path / 'a file'
    blocking.write_text('')
    finished = subprocess.run(
        [sys.executable, *command, str(blocking / 'below')],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=120,
    )
    assert finished.returncode == 2 and 'Traceback' not in finished.stderr
    assert f'{blocking} is a file, not a folder' in finished.stderr


def _full_disk(monkeypatch):
    """Every atomic write fails as on a full disk (after its temporary file was opened)."""
    import errno

    from common import atomic

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, 'fsync', no_space)


def _make_toy_gradient(folder):
    from experiments import toy_gradient

    toy_gradient.main(['--t_step', '5', '--quiet', '--results_dir', str(folder)])


def _make_data(folder):
    from datasets import make_nested_spheres_data

    make_nested_spheres_data.main(['--data_dir', str(folder)])


def _make_probe(folder):
    from experiments import lr_probe

    lr_probe.main(['g1d', '--widths', '5', '--results_dir', str(folder)])


@pytest.mark.parametrize(
    'command, flag',
    [
        (_make_toy_gradient, '--results_dir'),
        (_make_data, '--data_dir'),
        (_make_probe, '--results_dir'),
    ],
)
def test_a_full_disk_during_work_is_named_in_one_line(tmp_path, capsys, monkeypatch, command, flag):
    from experiments import lr_probe

    # The probe's training is not what is tested: it finds one rate at once.
    monkeypatch.setattr(
        lr_probe, 'probe', lambda *arguments, **keywords: {'chosen': {'5': 0.01}, 'widths': {}}
    )
    _full_disk(monkeypatch)
    with pytest.raises(SystemExit) as raised:
        command(tmp_path)
    error = capsys.readouterr().err
    assert raised.value.code == 1, error
    assert 'No space left on device' in error and f'choose another {flag}' in error
    assert len(error.strip().splitlines()) == 1 and 'Traceback' not in error
    # Nothing half-written: the atomic writer removed its temporary file.
    assert not [path for path in tmp_path.rglob('*') if path.is_file()]


@pytest.mark.parametrize(
    'content, words',
    [
        ('[1, 2]', 'a JSON list, not an object'),
        ('', 'Expecting value'),
        ('{"experiment": "g1d"}', 'it lacks grid'),
        (None, 'Is a directory'),
    ],
)
def test_a_broken_probe_record_is_named(tmp_path, capsys, content, words):
    from experiments import lr_probe

    path = lr_probe.probe_file('g1d', (), tmp_path)
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(SystemExit) as raised:
        lr_probe.main(['g1d', '--widths', '5', '--results_dir', str(tmp_path)])
    error = capsys.readouterr().err
    assert raised.value.code == 1 and f'{path} cannot be read as a probe' in error
    assert words in error


def test_a_listing_piped_into_head_ends_quietly():
    finished = subprocess.run(
        f'{sys.executable} -m experiments.grids runs nested_spheres --grid paper | head -1',
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=120,
    )
    assert finished.returncode == 0 and finished.stdout.count('\n') == 1
    assert finished.stderr == ''


def test_a_lock_that_is_a_folder_is_named(tmp_path, capsys):
    folder = _g1d(tmp_path, '--nepochs', '1')
    (folder / '.lock').unlink()
    (folder / '.lock').mkdir()
    code, message = _exit(capsys, _g1d, tmp_path, '--nepochs', '2', '--load_model', '1')
    assert code == 2 and f'{folder / ".lock"} cannot be opened as the run folder' in message


def test_broken_toy_gradient_series_are_left_out_by_name(tmp_path, capsys):
    from plotting import plot_toy_gradient

    for method, truncate in (('adjoint_gq', False), ('direct', True)):
        errors = np.full((5, len(results.TOY_QUANTITIES)), 1e-6)
        folder = results.write_toy_gradient(tmp_path, method, np.arange(5.0), errors, {})
        if truncate:
            np.save(folder / 'loss_relative_error.npy', np.arange(3.0))
    paths = plot_toy_gradient.main(
        ['--results_dir', str(tmp_path), '--plots_dir', str(tmp_path / 'plots')]
    )
    error = capsys.readouterr().err
    assert paths is not None and 'Traceback' not in error
    assert 'left out: ' in error and 'holds 3 values for 5 end times' in error


def test_weights_that_do_not_fit_are_named(tmp_path, capsys):
    import shutil

    from plotting import plot_ou_solutions

    source = results.RESULTS_DIR / 'ornstein_uhlenbeck' / '10' / '5' / 'adjoint_gq' / '1'
    folder = tmp_path / 'ornstein_uhlenbeck' / '10' / '5' / 'adjoint_gq' / '1'
    shutil.copytree(source, folder)
    np.savez(folder / results.WEIGHTS, nonsense=np.ones(3))
    assert (
        plot_ou_solutions.main(
            ['--results_dir', str(tmp_path), '--plots_dir', str(tmp_path / 'plots')]
        )
        is None
    )
    error = capsys.readouterr().err
    assert f'{folder / results.WEIGHTS} does not fit the model of width 5' in error
