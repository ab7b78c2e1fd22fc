"""The readers of results/ take only what a run writes: crafted or corrupted files are
named and skipped, never loaded whole, never hang, never counted twice."""

import json
import os
import zipfile

import numpy as np
import pytest
import torch

from study import results
from tests.research.test_plotting import _fake_run


def _run(tmp_path, number=1):
    base = tmp_path / 'results'
    _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_gq', number, 1.0)
    return base, base / 'g1d' / 'aug3' / '20' / 'adjoint_gq' / str(number)


def test_a_deeply_nested_summary_is_named_not_a_recursion_error(tmp_path):
    _, folder = _run(tmp_path)
    (folder / results.SUMMARY).write_text('[' * 100_000 + ']' * 100_000)
    with pytest.raises(results.ResultsError, match='nested too deeply|not an object'):
        results.read_summary(folder)


def test_a_series_whose_header_claims_too_much_is_refused_unallocated(tmp_path):
    _, folder = _run(tmp_path)
    path = folder / 'epoch_times.npy'
    header = {'descr': '<f8', 'fortran_order': False, 'shape': (100_000_000_000,)}
    with open(path, 'wb') as stream:
        np.lib.format.write_array_header_1_0(stream, header)
        stream.write(b'\0' * 64)
    with pytest.raises(results.ResultsError, match='header claims'):
        results.read_run(folder)


def test_special_files_and_links_are_refused_without_reading(tmp_path):
    _, folder = _run(tmp_path)
    series = folder / 'epoch_times.npy'
    series.unlink()
    os.mkfifo(series)  # reading it would block for ever
    with pytest.raises(results.ResultsError, match='not a regular file'):
        results.read_run(folder)
    series.unlink()
    summary = folder / results.SUMMARY
    summary.unlink()
    summary.symlink_to('/dev/zero')
    with pytest.raises(results.ResultsError, match='symbolic link'):
        results.read_summary(folder)


def test_an_oversized_summary_is_refused(tmp_path):
    _, folder = _run(tmp_path)
    (folder / results.SUMMARY).write_text(json.dumps({'pad': 'x' * (2**20 + 1)}))
    with pytest.raises(results.ResultsError, match='more than any run writes'):
        results.read_summary(folder)


@pytest.mark.parametrize('value', ['no', 0, 1, 'true', None])
def test_only_true_marks_a_run_complete(tmp_path, value):
    _, folder = _run(tmp_path)
    summary = json.loads((folder / results.SUMMARY).read_text())
    summary['complete'] = value
    (folder / results.SUMMARY).write_text(json.dumps(summary))
    assert not results.is_complete(folder)


def test_padded_unicode_and_linked_folders_are_not_counted_twice(tmp_path, capsys):
    base, folder = _run(tmp_path)
    parent = folder.parent
    for name in ('01', '١'):  # zero-padded, and an Arabic-Indic one
        (parent / name).mkdir()
        for item in folder.iterdir():
            (parent / name / item.name).write_bytes(item.read_bytes())
    (parent / '2').symlink_to(folder, target_is_directory=True)
    found = results.complete_runs(base, 'g1d', 'aug3')
    assert len(found[(20, 'adjoint_gq')]) == 1
    assert 'symbolic link' in capsys.readouterr().err


def test_weights_that_inflate_or_hold_nan_are_refused(tmp_path):
    _, folder = _run(tmp_path)
    results.write_weights(folder, {'w': torch.tensor([1.0, float('nan')])})
    with pytest.raises(results.ResultsError, match='NaN or infinite'):
        results.read_weights(folder)
    # A small archive whose member inflates to 64 MiB.
    with zipfile.ZipFile(folder / results.WEIGHTS, 'w', zipfile.ZIP_DEFLATED) as archive:
        with archive.open('w.npy', 'w') as member:
            np.lib.format.write_array(member, np.zeros(2**23))
    assert (folder / results.WEIGHTS).stat().st_size < 2**20
    with pytest.raises(results.ResultsError, match='inflate'):
        results.read_weights(folder)


def _g1d(results_dir, *extra):
    from experiments import g1d

    return g1d.main(
        ['--width', '8', '--nepochs', '2', '--quiet', '--results_dir', str(results_dir), *extra]
    )


def test_a_run_folder_reached_through_a_link_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    results_dir = tmp_path / 'results'
    (results_dir / 'g1d').mkdir(parents=True)
    (results_dir / 'g1d' / 'aug3').symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SystemExit) as raised:
        _g1d(results_dir)
    assert raised.value.code == 2 and 'is a symbolic link' in capsys.readouterr().err
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize(
    'craft, words',
    [
        (lambda state: state['history'].pop('epoch_loss_history'), 'no epoch_loss_history'),
        (lambda state: state.__setitem__('arguments', ['--lr', '1']), 'not a dict of flags'),
        (lambda state: state['history']['epoch_times'].pop(), 'no epoch_times for each'),
        (lambda state: state['history'].__setitem__('nparams', -5), 'nparams -5'),
    ],
)
def test_a_crafted_final_state_is_refused_before_training(tmp_path, capsys, craft, words):
    folder = _g1d(tmp_path / 'results', '--save_model', '0')
    path = folder / results.FINAL_STATE
    state = torch.load(path, weights_only=True)
    craft(state)
    torch.save(state, path)
    with pytest.raises(SystemExit) as raised:
        _g1d(tmp_path / 'results', '--nepochs', '3')
    message = capsys.readouterr().err
    assert raised.value.code == 1 and words in message and 'Traceback' not in message


def test_a_state_that_inflates_is_refused_unread(tmp_path):
    _, folder = _run(tmp_path)
    with zipfile.ZipFile(folder / results.CHECKPOINT, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('archive/data.pkl', b'\0' * 2**26)
    with pytest.raises(results.ResultsError, match='inflate'):
        results.read_checkpoint(folder)


def test_a_checkpoint_larger_than_the_runs_model_takes_is_refused_unread(tmp_path, capsys):
    # A state that does not inflate but is far larger than the model it claims to continue
    # (here a width-8 g1d carrying a 20 MiB tensor) is refused before it is loaded.
    folder = _g1d(tmp_path / 'results', '--save_model', '0')
    path = folder / results.FINAL_STATE
    state = torch.load(path, weights_only=True)
    state['history']['padding'] = torch.zeros(5 * 2**20)
    torch.save(state, path)
    with pytest.raises(SystemExit) as raised:
        _g1d(tmp_path / 'results', '--nepochs', '3')
    message = capsys.readouterr().err
    assert raised.value.code == 1 and 'Traceback' not in message
    assert "more than a checkpoint of this run's model takes" in message
    # Without the model's bound the reader still reads it (the plots' readers, the tests).
    assert results.read_checkpoint(folder) is not None
