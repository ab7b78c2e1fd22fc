"""The runs committed under results/ are exactly the reduced grids, whole, and every
figure of the report renders from them."""

import json
import subprocess

import numpy as np
import pytest

from experiments import lr_probe
from study import grids, results

COMMITTED = results.RESULTS_DIR


def _study_id(study):
    experiment, flags = study
    return ' '.join([experiment, *flags])


def _present(study):
    experiment, flags = study
    return [
        run for run in grids.runs(experiment, 'reduced', flags, COMMITTED) if run.folder.exists()
    ]


def _pending(experiment, run):
    """Whether the grid names ``run`` as not committed yet (see grids.Grid.pending)."""
    relative = run.folder.relative_to(COMMITTED).as_posix()
    return any(
        relative.startswith(prefix)
        for prefix in grids.EXPERIMENTS[experiment].grids['reduced'].pending
    )


@pytest.mark.parametrize('study', grids.REDUCED_STUDIES, ids=_study_id)
def test_committed_study_is_whole(study):
    experiment, flags = study
    listed = grids.runs(experiment, 'reduced', flags, COMMITTED)
    expected = [run for run in listed if not _pending(experiment, run)]
    if not expected:
        pytest.skip(f'every run of {_study_id(study)} is pending')
    present = _present(study)
    assert present, f'no committed runs of {_study_id(study)}'
    missing = [str(run.folder.relative_to(COMMITTED)) for run in expected if run not in present]
    assert not missing, f'runs missing from results/: {missing}'
    spec = grids.EXPERIMENTS[experiment]
    for run in expected:
        wanted = spec.parse(run.argv[2:])
        summary = results.read_summary(run.folder)
        assert summary is not None and summary['complete'], run.folder
        assert summary['epochs_done'] == wanted.nepochs, run.folder
        # The committed run was made with exactly the grid's settings.
        assert not results.differences(summary['arguments'], wanted), run.folder
        series = results.read_run(run.folder)
        for name in results.SERIES:
            if name in results.OPTIONAL_SERIES and name not in series:
                continue
            if name != 'nparams':
                assert len(series[name]) == wanted.nepochs + 1, (run.folder, name)
        assert np.all(np.isfinite(series['epoch_loss_history'])), run.folder
        if experiment == 'ornstein_uhlenbeck':
            # Its solutions figure redraws the trained model from these.
            assert results.read_weights(run.folder) is not None, run.folder


def test_every_pending_prefix_names_a_missing_run():
    # A pending entry whose runs are all committed is stale: the report would call
    # finished runs unfinished.
    for experiment, spec in grids.EXPERIMENTS.items():
        listed = [
            run
            for _, study in grids.studies_of('reduced')
            if study.experiment == experiment
            for run in grids.runs(experiment, 'reduced', study.flags_of('reduced'), COMMITTED)
        ]
        for prefix in spec.grids['reduced'].pending:
            runs = [
                run
                for run in listed
                if run.folder.relative_to(COMMITTED).as_posix().startswith(prefix)
            ]
            assert runs, f'{experiment}: pending {prefix!r} names no run of the grid'
            assert not all(
                results.is_complete(run.folder, spec.parse(run.argv[2:]).nepochs) for run in runs
            ), f'{experiment}: every run under {prefix!r} is committed; it is not pending'


def test_only_small_final_states_are_committed():
    listed = subprocess.run(
        ['git', 'ls-files', '--', str(COMMITTED)],
        capture_output=True,
        text=True,
        cwd=COMMITTED.parent,
    )
    if listed.returncode != 0:
        pytest.skip('not a git checkout')
    states = [name for name in listed.stdout.split() if name.endswith('.pt')]
    assert all(name.endswith('/' + results.FINAL_STATE) for name in states), states
    for name in states:
        path = COMMITTED.parent / name
        assert path.stat().st_size <= results.FINAL_STATE_LIMIT, name


def test_no_run_outside_the_reduced_grids():
    expected = {
        run.folder
        for experiment, flags in grids.REDUCED_STUDIES
        for run in grids.runs(experiment, 'reduced', flags, COMMITTED)
    }
    found = {
        path.parent
        for path in COMMITTED.glob('*/**/' + results.SUMMARY)
        if 'toy_gradient' not in path.parts
    }
    assert not found - expected, f'runs not in any reduced grid: {sorted(found - expected)}'


def test_grid_learning_rates_are_the_probes_choice():
    for name, spec in grids.EXPERIMENTS.items():
        grid = spec.grids['reduced']
        if not grid.lr:
            continue
        probe = lr_probe.read_probe(name)
        assert probe is not None, f'{name}: its reduced grid sets --lr without a recorded probe'
        assert {int(width): lr for width, lr in probe['chosen'].items()} == grid.lr, name
        assert probe['grid'] == 'reduced' and probe['flags'] == [], name


def test_figures_render_from_committed_results(tmp_path):
    from plotting import figures

    written, missing = figures.main(['--results_dir', str(COMMITTED), '--plots_dir', str(tmp_path)])
    assert not missing, f'figures that did not render from the committed runs: {missing}'
    for name, *_ in figures.FIGURES:
        assert name in written
        path = tmp_path / f'{name}.png'
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_committed_summaries_hold_no_absolute_paths():
    summaries = sorted(COMMITTED.glob('**/' + results.SUMMARY))
    assert len(summaries) > 100
    for path in summaries:
        found = [
            text
            for text in _strings(json.loads(path.read_text()))
            if text.startswith('/') or text[1:3] == ':\\'
        ]
        assert not found, (path, found)


def test_paths_inside_the_repository_are_recorded_relative_to_it(tmp_path):
    assert results.portable(results.REPOSITORY / 'datasets' / 'data') == 'datasets/data'
    assert results.portable(tmp_path) == str(tmp_path)


def test_figures_rebuild_to_the_same_bytes(tmp_path):
    # The solutions figure samples paths (seeded, Brownian motions included); every PDF
    # would carry its creation date if not told otherwise.
    from plotting import plot_ou_solutions, plot_sde_times

    built = []
    for attempt in ('first', 'second'):
        folder = tmp_path / attempt
        for module in (plot_ou_solutions, plot_sde_times):
            assert (
                module.main(['--results_dir', str(COMMITTED), '--plots_dir', str(folder)])
                is not None
            )
        built.append({path.name: path.read_bytes() for path in sorted(folder.iterdir())})
    assert len(built[0]) == 4 and built[0] == built[1]
