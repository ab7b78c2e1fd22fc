"""The toy gradient experiment on a few end times."""

import json

import numpy as np
import pytest

from experiments import toy_gradient
from study import results


def test_methods_write_small_relative_errors(tmp_path):
    toy_gradient.main(
        [
            '--method',
            'adjoint_gq',
            '--method',
            'adjoint_ode',
            '--method',
            'direct',
            '--method',
            'aca',
            '--t_start',
            '19',
            '--t_end',
            '19.04',
            '--results_dir',
            str(tmp_path),
            '--quiet',
        ]
    )
    toy_gradient.main(
        [
            '--method',
            'mali',
            '--t_start',
            '21',
            '--t_end',
            '21',
            '--results_dir',
            str(tmp_path),
            '--quiet',
        ]
    )
    for method in toy_gradient.METHODS:
        folder = tmp_path / 'toy_gradient' / method
        ends, found = results.read_toy_gradient(tmp_path, method)
        expected = [21.0] if method == 'mali' else [19.0, 19.02, 19.04]
        assert np.allclose(ends, expected)
        for quantity in toy_gradient.QUANTITIES:
            errors = found[quantity]
            assert errors.shape == ends.shape and np.isfinite(errors).all()
            # rtol 1e-6: every method is within a few 1e-5 of the closed form here
            assert errors.max() < 1e-4, (method, quantity)
        summary = json.loads((folder / 'summary.json').read_text())
        assert summary['complete'] and summary['method'] == method


def test_exact_values_are_the_closed_forms():
    loss, grad_z0, grad_rate, grad_end = toy_gradient.exact(20.0)
    assert loss == pytest.approx(100 * np.exp(8.0))
    assert grad_z0 == pytest.approx(20 * np.exp(8.0))
    assert grad_rate == pytest.approx(2 * 20 * 100 * np.exp(8.0))
    assert grad_end == pytest.approx(2 * 0.2 * 100 * np.exp(8.0))


@pytest.mark.parametrize(
    'arguments, words',
    [
        (['--t_start', '20', '--t_end', '19'], 'argument --t_end: must not be below --t_start'),
        (['--method', 'rk45'], "argument --method: invalid choice: 'rk45'"),
        (['--t_step', '0'], 'argument --t_step: must be a positive number'),
    ],
)
def test_bad_flags_exit_2(capsys, arguments, words):
    with pytest.raises(SystemExit) as raised:
        toy_gradient.main(arguments)
    assert raised.value.code == 2 and words in capsys.readouterr().err
