"""Figures render from small results written by the tests; missing runs are reported."""

import numpy as np

from experiments import results, toy_gradient
from plotting import plot_toy_gradient


def test_toy_gradient_figure(tmp_path, capsys):
    ends = np.array([19.0, 19.5, 20.0])
    for method in ('gq', 'direct', 'aca'):
        folder = results.toy_gradient_dir(tmp_path / 'results', method)
        folder.mkdir(parents=True)
        np.save(folder / 'end_times.npy', ends)
        for quantity in toy_gradient.QUANTITIES:
            np.save(folder / f'{quantity}_relative_error.npy', np.array([1e-6, 2e-6, 0.0]))
    png, pdf = plot_toy_gradient.main(['--results_dir', str(tmp_path / 'results'),
                                       '--plots_dir', str(tmp_path / 'plots')])
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b'%PDF-'
    captured = capsys.readouterr()
    missing = [line for line in captured.err.splitlines() if line.startswith('missing:')]
    assert len(missing) == 2 and any('adjoint' in line for line in missing)
    assert any('mali' in line for line in missing)
    assert '(3 of 5 methods)' in captured.out
