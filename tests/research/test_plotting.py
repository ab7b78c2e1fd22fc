"""Figures render from small results written by the tests; missing runs are reported."""

import numpy as np
import pytest

from experiments import toy_gradient
from plotting import plot_toy_gradient
from study import results


def test_toy_gradient_figure(tmp_path, capsys):
    ends = np.array([19.0, 19.5, 20.0])
    errors = np.array([[1e-6, 2e-6, 0.0]] * len(toy_gradient.QUANTITIES)).T
    for method in ('adjoint_gq', 'direct', 'aca'):
        results.write_toy_gradient(tmp_path / 'results', method, ends, errors, {})
    png, pdf = plot_toy_gradient.main(
        ['--results_dir', str(tmp_path / 'results'), '--plots_dir', str(tmp_path / 'plots')]
    )
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b'%PDF-'
    captured = capsys.readouterr()
    missing = [line for line in captured.err.splitlines() if line.startswith('missing:')]
    assert len(missing) == 2 and any('adjoint_ode' in line for line in missing)
    assert any('mali' in line for line in missing)
    assert '(3 of 5 methods)' in captured.out


def _fake_run(results_dir, experiment, ablation, width, option, number, seconds):
    from common.atomic import save_json

    folder = results.run_dir(results_dir, experiment, ablation, width, option, number)
    history = {
        'nparams': 100 * width,
        'epochs': [0, 1, 2],
        'epoch_times': [0.0, seconds, seconds],
        'epoch_loss_history': [1.0, 0.5, 0.25],
        'epoch_val_metric_history': [50, 70, 90],
        'epoch_fnfe_history': [14, 20, 26],
        'epoch_bnfe_history': [7, 9, 11],
    }
    results.write_history(folder, history)
    save_json(
        folder / results.SUMMARY,
        {
            'complete': True,
            'epochs_done': 2,
            'arguments': {'width': width, 'adjoint_option': option, 'experiment_no': number},
        },
    )


def test_ode_times_figure_reports_missing_runs(tmp_path, capsys):
    from plotting import plot_ode_times

    base = tmp_path / 'results'
    for width in (5, 20):
        for number in (1, 2):
            _fake_run(
                base, 'nested_spheres', 'gtol0.003', width, 'adjoint_gq', number, 0.1 * number
            )
            _fake_run(base, 'nested_spheres', 'gtol0.003', width, 'direct', number, 0.2)
    _fake_run(base, 'nested_spheres', 'gtol0.003', 5, 'adjoint_ode', 1, 1.0)
    png, pdf = plot_ode_times.main(
        [
            '--experiment',
            'nested_spheres',
            '--results_dir',
            str(base),
            '--plots_dir',
            str(tmp_path / 'plots'),
        ]
    )
    assert png.name == 'ode_times_nested_spheres.png' and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b'%PDF-'
    captured = capsys.readouterr()
    missing = sorted(line for line in captured.err.splitlines() if line.startswith('missing:'))
    # adjoint_ode at width 20, adjoint_seminorm at both widths
    assert len(missing) == 3
    assert '3 methods, widths [5, 20]' in captured.out
    # A width with no runs is refused, and nothing is written for it.
    plots = tmp_path / 'refused'
    assert (
        plot_ode_times.main(
            [
                '--experiment',
                'nested_spheres',
                '--width',
                '7',
                '--results_dir',
                str(base),
                '--plots_dir',
                str(plots),
            ]
        )
        is None
    )
    assert 'at width 7' in capsys.readouterr().err and not plots.exists()
    # The images grid runs no direct backprop (as the paper): nothing is reported missing.
    for option in ('adjoint_ode', 'adjoint_seminorm', 'adjoint_gq'):
        _fake_run(base, 'images', 'digits/32', 50, option, 1, 1.0)
    png, _ = plot_ode_times.main(
        ['--experiment', 'digits', '--results_dir', str(base), '--plots_dir', str(plots)]
    )
    captured = capsys.readouterr()
    assert png.name == 'ode_times_digits.png' and 'missing:' not in captured.err
    assert '3 methods, widths [50]' in captured.out


def test_sde_times_figure(tmp_path, capsys):
    from plotting import plot_sde_times

    base = tmp_path / 'results'
    for option in ('sde_direct', 'adjoint_gq'):
        _fake_run(base, 'ornstein_uhlenbeck', '10', 5, option, 1, 2.0)
    png, _ = plot_sde_times.main(['--results_dir', str(base), '--plots_dir', str(tmp_path)])
    assert png.name == 'sde_times.png' and png.stat().st_size > 10_000
    captured = capsys.readouterr()
    assert captured.err.count('missing:') == 1 and 'sde_adjoint' in captured.err
    # The KL curves go to the largest width that every option trained, not to a width
    # where GQ alone trained in full.
    runs = {(5, option): [{}] for option in plot_sde_times.SDE_OPTIONS}
    runs.update({(100, 'adjoint_gq'): [{}], (50, 'sde_direct'): [{}]})
    assert plot_sde_times.shared_width(runs) == 5
    runs.update({(50, option): [{}] for option in plot_sde_times.SDE_OPTIONS})
    assert plot_sde_times.shared_width(runs) == 50
    assert plot_sde_times.shared_width({(100, 'adjoint_gq'): [{}]}) is None


@pytest.mark.slow
def test_ou_solutions_figure(tmp_path, capsys):
    from datasets import make_ou_data
    from datasets import ornstein_uhlenbeck as ou_data
    from experiments import ornstein_uhlenbeck
    from models.sde import OUModel
    from plotting import plot_ou_solutions

    data = tmp_path / 'data'
    make_ou_data.main(
        ['--data_dir', str(data), '--n_train', '4', '--n_val', '3', '--n_paths', '12']
    )
    folders = ['--results_dir', str(tmp_path / 'results'), '--data_dir', str(data)]
    assert plot_ou_solutions.main([*folders, '--plots_dir', str(tmp_path)]) is None
    assert 'missing:' in capsys.readouterr().err
    # No checkpoint: the figure is drawn from the final weights every finished run writes.
    folder = ornstein_uhlenbeck.main(
        ['--nepochs', '1', '--batchsize', '4', '--quiet', '--save_model', '0', *folders]
    )
    assert not (folder / results.CHECKPOINT).exists()
    weights = results.read_weights(folder)
    times, _, paths = ou_data.load(data, 'val')
    fresh = OUModel(5, 'adjoint_gq', times, paths.shape[-1]).state_dict()
    assert {name: value.shape for name, value in weights.items()} == {
        name: value.shape for name, value in fresh.items()
    }
    png, pdf = plot_ou_solutions.main([*folders, '--plots_dir', str(tmp_path)])
    assert png.stat().st_size > 20_000 and pdf.read_bytes()[:5] == b'%PDF-'
    # Corrupt final weights: named in one line, no figure, no traceback.
    (folder / results.WEIGHTS).write_bytes(b'not a zip file')
    capsys.readouterr()
    assert plot_ou_solutions.main([*folders, '--plots_dir', str(tmp_path / 'again')]) is None
    error = capsys.readouterr().err
    assert 'unreadable:' in error and 'weights.npz' in error and 'Traceback' not in error


def test_an_unwritable_plots_folder_ends_in_one_line(tmp_path):
    from plotting import plot_speedup

    blocker = tmp_path / 'a file'
    blocker.write_text('')
    with pytest.raises(SystemExit) as raised:
        plot_speedup.main(
            ['--results_dir', str(results.RESULTS_DIR), '--plots_dir', str(blocker / 'plots')]
        )
    assert 'cannot write the figure into --plots_dir' in str(raised.value.code)


def test_summary_table(tmp_path):
    from plotting import summary_table

    base = tmp_path / 'results'
    for number in (1, 2):
        _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_gq', number, 1.0 * number)
        _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_ode', number, 4.0)
    _fake_run(base, 'g1d', 'aug3', 20, 'direct', 1, 0.5)
    # A short timing run is shown in a table of its own, after the study's.
    _fake_run(base / 'epoch_times', 'g1d', 'aug3', 500, 'direct', 1, 7.0)
    text = summary_table.main(['--results_dir', str(base)])
    assert '**g1d / aug3**' in text
    # two repeats of 2 epochs at 1 s and 2 s per epoch against adjoint_ode's 4 s and
    # direct's 0.5 s; the target is 10 % of the loss before training (1.0), which no run
    # reaches
    assert (
        '| 20 | adjoint_gq | 2 | 1.5 ± 0.5 | 23, 10 | 3 ± 1 | 0.375 | 3 | 0.25 ± 0 | '
        '90 ± 0 | 0.1 | never |'
    ) in text
    assert '| 20 | adjoint_ode | 2 | 4 ± 0 | 23, 10 | 8 ± 0 | 1 | 8 |' in text
    main_table, timing = text.split('**g1d / aug3**: short timing runs, the first 2 epochs')
    assert '| 500 |' not in main_table
    assert '| 500 | direct | 1 | 7 ± 0 | 23, 10 | 14 ± 0 | — | 1 |' in timing


def test_time_to_target_loss():
    from plotting import summary_table

    run = {
        'epoch_times': np.array([0.0, 2.0, 3.0, 5.0]),
        'epoch_loss_history': np.array([1.0, 0.6, 0.4, 0.5]),
    }
    assert summary_table.time_to_loss(run, 0.45) == 5.0
    assert summary_table.time_to_loss(run, 0.3) is None


def test_speedup_figure_pairs_repeats_over_the_same_epochs(tmp_path, capsys):
    from plotting import plot_speedup

    base = tmp_path / 'results'
    assert (
        plot_speedup.main(['--results_dir', str(base), '--plots_dir', str(tmp_path / 'none')])
        is None
    )
    assert 'nothing to plot' in capsys.readouterr().err
    # Two repeats of GQ (1 s and 3 s per epoch), the adjoint and direct only in repeat 1:
    # only repeat 1 pairs.
    for number, seconds in ((1, 1.0), (2, 3.0)):
        _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_gq', number, seconds)
    _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_ode', 1, 4.0)
    _fake_run(base, 'g1d', 'aug3', 20, 'direct', 1, 1.0)
    # At width 500 the adjoint ran only a short timing run: 8 s per epoch against GQ's
    # own short run at 2 s (not its full runs' 3 s).
    for number in (1, 2):
        _fake_run(base, 'g1d', 'aug3', 500, 'adjoint_gq', number, 3.0)
    _fake_run(base, 'g1d', 'aug3', 500, 'direct', 1, 6.0)
    timed = base / 'epoch_times'
    _fake_run(timed, 'g1d', 'aug3', 500, 'adjoint_gq', 1, 2.0)
    _fake_run(timed, 'g1d', 'aug3', 500, 'adjoint_ode', 1, 8.0)
    # At width 1000 GQ trained in full (4 s per epoch) and direct was only timed (16 s):
    # GQ's full run over the same first epochs.
    _fake_run(base, 'g1d', 'aug3', 1000, 'adjoint_gq', 1, 4.0)
    _fake_run(timed, 'g1d', 'aug3', 1000, 'direct', 1, 16.0)
    found = plot_speedup.ratios(base, 'g1d')
    adjoint, direct = found['adjoint'], found['direct']
    assert [(c.width, c.ratios, c.epochs) for c in adjoint] == [
        (20, (0.25,), None),
        (500, (0.25,), 2),
    ]
    assert [(c.width, c.ratios, c.epochs) for c in direct] == [
        (20, (1.0,), None),
        (500, (0.5,), None),
        (1000, (0.25,), 2),
    ]
    png, _ = plot_speedup.main(['--results_dir', str(base), '--plots_dir', str(tmp_path)])
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
