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
