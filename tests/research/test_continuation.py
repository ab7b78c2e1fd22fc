"""A finished run can be extended to more epochs from its committed final state, exactly
as if it had been trained in one go; and loading a state never runs code."""

import pickle

import numpy as np
import pytest
import torch

from experiments import g1d
from study import results

COMPARED = (
    'epoch_loss_history',
    'epoch_val_metric_history',
    'epoch_fnfe_history',
    'epoch_bnfe_history',
    'epochs',
)


def _run(folder, nepochs, *extra):
    # No checkpoints (--save_model 0): what extends these runs is the final state alone,
    # as on a fresh clone of the committed results.
    return g1d.main(
        [
            '--width',
            '8',
            '--nepochs',
            str(nepochs),
            '--quiet',
            '--save_model',
            '0',
            '--results_dir',
            str(folder),
            *extra,
        ]
    )


def _same_runs(first, second):
    one, other = results.read_run(first), results.read_run(second)
    for name in COMPARED:
        assert np.array_equal(one[name], other[name]), name
    model_one = torch.load(first / results.FINAL_STATE, weights_only=True)['model']
    model_other = torch.load(second / results.FINAL_STATE, weights_only=True)['model']
    for name, tensor in model_one.items():
        assert torch.equal(tensor, model_other[name]), name


def test_a_finished_run_extends_from_its_final_state_alone(tmp_path):
    # As on a fresh clone: the run's series, summary and final state, no checkpoint.
    folder = _run(tmp_path / 'extended', 3)
    assert (folder / results.FINAL_STATE).exists()
    assert not (folder / results.CHECKPOINT).exists()
    summary = results.read_summary(folder)
    assert summary['complete'] and summary['epochs_done'] == 3
    extended = _run(tmp_path / 'extended', 5, '--load_model', '1')
    assert extended == folder
    alone = _run(tmp_path / 'alone', 5)
    _same_runs(extended, alone)
    run = results.read_run(extended)
    assert run['summary']['epochs_done'] == 5 and run['summary']['complete']
    assert len(run['epoch_cpu_times']) == 6 and run['epoch_cpu_times'][0] == 0.0
    assert np.all(run['epoch_cpu_times'][1:] > 0)


def test_an_extension_stopped_without_checkpoints_trains_its_epochs_again(tmp_path, capsys):
    folder = _run(tmp_path / 'extended', 2)
    state = (folder / results.FINAL_STATE).read_bytes()
    _run(tmp_path / 'extended', 4, '--load_model', '1')
    # The extension stopped after epoch 3 without --save_model 1: the final state is still
    # the one of epoch 2, the series and summary record epoch 3.
    (folder / results.FINAL_STATE).write_bytes(state)
    summary = results.read_summary(folder)
    summary['epochs_done'], summary['complete'] = 3, False
    results.write_summary(folder, summary)
    capsys.readouterr()
    _run(tmp_path / 'extended', 4, '--load_model', '1')
    assert 'epochs 3 to 3 are trained again' in capsys.readouterr().err
    _same_runs(folder, _run(tmp_path / 'alone', 4))


def test_a_state_of_another_run_is_refused(tmp_path, capsys):
    folder = _run(tmp_path / 'one', 3)
    other = _run(tmp_path / 'other', 3, '--experiment_no', '2')
    (folder / results.FINAL_STATE).write_bytes((other / results.FINAL_STATE).read_bytes())
    with pytest.raises(SystemExit) as raised:
        _run(tmp_path / 'one', 4, '--load_model', '1')
    message = capsys.readouterr().err
    assert raised.value.code == 2
    assert 'experiment_no 1 there' in message or 'belongs to' in message


def test_states_too_large_to_commit_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(results, 'FINAL_STATE_LIMIT', 100)
    folder = _run(tmp_path / 'large', 2)
    assert results.is_complete(folder) and not (folder / results.FINAL_STATE).exists()


class _Payload:
    """Unpickling this calls ``exec``: what a hostile checkpoint would do."""

    def __reduce__(self):
        return exec, ('open(__import__("os").environ["PWNED"], "w").write("ran")',)


@pytest.mark.parametrize(
    'content, words',
    [
        (None, 'not a zip archive'),
        ([1, 2], 'a list, not a checkpoint'),
        ({'model': {}}, 'it lacks optimiser'),
    ],
)
def test_a_hostile_or_malformed_state_is_refused_unread(
    tmp_path, capsys, monkeypatch, content, words
):
    marker = tmp_path / 'marker'
    monkeypatch.setenv('PWNED', str(marker))
    folder = _run(tmp_path / 'results', 2)
    path = folder / results.FINAL_STATE
    if content is None:
        hostile = pickle.dumps({'model': _Payload()}, protocol=2)
        # The payload is live: plain unpickling runs it.
        monkeypatch.setenv('PWNED', str(tmp_path / 'live'))
        pickle.loads(hostile)
        assert (tmp_path / 'live').read_text() == 'ran'
        monkeypatch.setenv('PWNED', str(marker))
        path.write_bytes(hostile)
    else:
        torch.save(content, path)
    with pytest.raises(SystemExit) as raised:
        _run(tmp_path / 'results', 3, '--load_model', '1')
    message = capsys.readouterr().err
    assert raised.value.code == 1 and not marker.exists()
    assert f'{path} cannot be read' in message and words in message
    assert 'delete it, or rerun with --load_model 0' in message
