"""The bash sweep scripts: a quick grid for real, resuming, SLURM generation, bad flags."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import grids as grids_command
from study import grids
from study.grids import EXPERIMENTS

# Every test here runs a command in a subprocess, end to end.
pytestmark = pytest.mark.slow

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _sweep(script, *arguments):
    environment = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ['bash', str(REPOSITORY / 'scripts' / script), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def test_g1d_quick_grid_runs_skips_and_resumes(tmp_path):
    # A space in the paths: every argument travels as its own field.
    results_dir = tmp_path / 'my results'
    folders = ['--results_dir', str(results_dir), '--log_dir', str(tmp_path / 'logs')]
    first = _sweep('g1d.sh', '--quick', '--jobs', '2', *folders)
    assert first.returncode == 0, first.stderr
    grid = EXPERIMENTS['g1d'].grids['quick']
    total = len(grid.options) * len(grid.widths) * grid.repeats
    assert f'g1d: {total} runs: {total} done, 0 skipped, 0 failed' in first.stdout
    assert len(list((tmp_path / 'logs' / 'g1d').glob('*.log'))) == total
    run = results_dir / 'g1d' / 'aug3' / '20' / 'adjoint_gq' / '1'
    assert len(np.load(run / 'epochs.npy')) == 11

    # A half-finished run (summary not complete) is rerun and resumes from its checkpoint.
    summary = json.loads((run / 'summary.json').read_text())
    summary['complete'] = False
    (run / 'summary.json').write_text(json.dumps(summary))
    second = _sweep('g1d.sh', '--quick', '--jobs', '2', *folders)
    assert second.returncode == 0, second.stderr
    assert f'g1d: {total} runs: 1 done, {total - 1} skipped, 0 failed' in second.stdout
    assert json.loads((run / 'summary.json').read_text())['complete'] is True


def test_slurm_mode_writes_a_job_array(tmp_path):
    finished = _sweep(
        'nested_spheres.sh',
        '--slurm',
        '--no-submit',
        '--jobs',
        '4',
        '--results_dir',
        str(tmp_path / 'results'),
        '--log_dir',
        str(tmp_path / 'logs'),
    )
    assert finished.returncode == 0, finished.stderr
    batch = (tmp_path / 'logs' / 'nested_spheres' / 'array.sbatch').read_text()
    # the paper's grid: 4 options × 9 widths × 10 repeats
    assert '#SBATCH --array=1-360%4' in batch
    runs = (tmp_path / 'logs' / 'nested_spheres' / 'runs.tsv').read_text().splitlines()
    assert len(runs) == 360
    folder, log, *argv = runs[0].split('\t')
    assert folder.endswith('nested_spheres/gtol0.003/5/direct/1')
    assert argv[:6] == [
        '-m',
        'experiments.nested_spheres',
        '--adjoint_option',
        'direct',
        '--width',
        '5',
    ]
    assert '--save_model 1 --load_model 1' in ' '.join(argv)
    # The sweep's runs are exactly the table's.
    table = grids.runs('nested_spheres', 'paper', (), tmp_path / 'results', tmp_path / 'logs')
    assert [run.split('\t')[0] for run in runs] == [str(entry.folder) for entry in table]
    # A job a cluster user submits as is: resources, one thread per CPU, started where it
    # was submitted from, and a figures job.
    for line in (
        '#SBATCH --time=04:00:00',
        '#SBATCH --cpus-per-task=1',
        '#SBATCH --mem=8G',
        'cd "$SLURM_SUBMIT_DIR"',
        'export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK',
    ):
        assert line in batch, line
    figures = (tmp_path / 'logs' / 'nested_spheres' / 'figures.sbatch').read_text()
    assert f'-m plotting.figures --results_dir {tmp_path / "results"}' in figures


def test_slurm_submits_the_figures_after_the_array(tmp_path):
    # A stand-in for sbatch that records its arguments and answers a job id.
    fake = tmp_path / 'bin' / 'sbatch'
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$@" >> "$(dirname "$0")/calls"\necho 4242\n')
    fake.chmod(0o755)
    environment = dict(
        os.environ,
        PYTHON=sys.executable,
        PATH=f'{fake.parent}:{os.environ["PATH"]}',
        VIRTUAL_ENV='/opt/venv',
    )
    finished = subprocess.run(
        [
            'bash',
            str(REPOSITORY / 'scripts' / 'g1d.sh'),
            '--quick',
            '--slurm',
            '--time',
            '01:00:00',
            '--cpus',
            '2',
            '--mem',
            '4G',
            '--results_dir',
            str(tmp_path / 'r'),
            '--log_dir',
            str(tmp_path / 'l'),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    calls = (fake.parent / 'calls').read_text().splitlines()
    batch = tmp_path / 'l' / 'g1d' / 'array.sbatch'
    assert calls == [
        f'--parsable {batch}',
        f'--dependency=afterany:4242 {tmp_path / "l" / "g1d" / "figures.sbatch"}',
    ]
    text = batch.read_text()
    assert '#SBATCH --array=1-8\n' in text  # no limit on tasks at once unless --jobs
    assert '#SBATCH --time=01:00:00' in text and '#SBATCH --cpus-per-task=2' in text
    assert 'source /opt/venv/bin/activate' in text


@pytest.mark.parametrize(
    'flags, words',
    [
        (('--cpus', '0'), '--cpus must be a positive integer'),
        (('--mem', 'lots'), '--time takes sbatch'),
    ],
)
def test_slurm_resources_are_checked(tmp_path, flags, words):
    finished = _sweep(
        'g1d.sh', '--quick', '--slurm', '--no-submit', '--log_dir', str(tmp_path / 'l'), *flags
    )
    assert finished.returncode == 2 and words in finished.stderr


def test_flags_after_a_double_dash_reach_every_run(tmp_path):
    finished = _sweep(
        'sines.sh',
        '--reduced',
        '--slurm',
        '--no-submit',
        '--log_dir',
        str(tmp_path / 'logs'),
        '--results_dir',
        str(tmp_path / 'results'),
        '--',
        '--ntimes',
        '50',
        '--regular_times',
        'irregular',
        '--nepochs',
        '7',
    )
    assert finished.returncode == 0, finished.stderr
    runs = (tmp_path / 'logs' / 'sines' / 'runs.tsv').read_text().splitlines()
    grid = EXPERIMENTS['sines'].grids['reduced']
    # This study runs its own widths (two of the grid's three).
    widths = grid.widths_of('50_irregular')
    assert len(widths) == 2 and set(widths) < set(grid.widths)
    assert len(runs) == len(grid.options) * len(widths) * grid.repeats
    for line in runs:
        folder, _, *argv = line.split('\t')
        assert '/sines/50_irregular/' in folder
        assert ' --nepochs 7 ' in ' '.join(argv)


def test_reduced_studies_are_listed_for_the_reproduction_script():
    listed = subprocess.run(
        [sys.executable, '-m', 'experiments.grids', 'studies'],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        check=True,
    )
    studies = [tuple(line.split('\t')) for line in listed.stdout.splitlines()]
    assert studies == [(name, *flags) for name, flags in grids.REDUCED_STUDIES]


def test_the_paper_grid_runs_every_study_with_the_papers_epochs():
    listed = subprocess.run(
        [sys.executable, '-m', 'experiments.grids', 'studies', '--grid', 'paper'],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        check=True,
    )
    studies = [tuple(line.split('\t')) for line in listed.stdout.splitlines()]
    assert len(studies) == len(grids.STUDIES)
    assert ('images', '--dataset', 'mnist', '--batchsize', '32') in studies
    assert not [study for study in studies if '--nepochs' in study]


def test_figures_and_tables_name_their_studies_in_one_place():
    from plotting import figures, summary_table

    assert [figure[0] for figure in figures.FIGURES] == list(grids.FIGURES)
    for name, *_, study in figures.FIGURES:
        wanted = grids.FIGURES[name]
        assert study == (
            None
            if wanted is None
            else (grids.STUDIES[wanted].experiment, grids.STUDIES[wanted].flags)
        )
    assert not hasattr(summary_table, 'TABLES')


def test_bad_flags(tmp_path):
    assert _sweep('g1d.sh', '--jobs', '0').returncode == 2
    unknown = _sweep('sines.sh', '--fast')
    assert unknown.returncode == 2 and "unknown flag '--fast'" in unknown.stderr
    bad_grid = _sweep('sines.sh', '--grid', 'huge', '--log_dir', str(tmp_path / 'logs'))
    assert bad_grid.returncode == 2 and "invalid choice: 'huge'" in bad_grid.stderr
    environment = dict(os.environ, PYTHON=sys.executable, NTIMES='7')
    bad_study = subprocess.run(
        ['bash', str(REPOSITORY / 'scripts' / 'sines.sh'), '--log_dir', str(tmp_path / 'logs')],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert bad_study.returncode == 2 and 'argument --ntimes' in bad_study.stderr


def test_every_grid_parses_with_its_experiments_flags(tmp_path):
    for name, spec in EXPERIMENTS.items():
        for grid in grids.GRID_NAMES:
            found = grids.runs(name, grid, (), tmp_path, tmp_path)
            chosen = spec.grids[grid]
            assert len(found) == sum(
                len(block.options) * len(block.widths) * block.repeats for block in chosen.blocks()
            )
            assert found[0].argv[:2] == ('-m', spec.module)
            assert found[0].folder.parts[-3:] == (str(chosen.widths[0]), chosen.options[0], '1')


def _runs_of(results_dir):
    listing = subprocess.run(['pgrep', '-f', str(results_dir)], capture_output=True, text=True)
    return [pid for pid in listing.stdout.split() if pid.strip()]


def _start(script, tmp_path, *flags):
    """Start ``scripts/<script>`` on the quick grid in the background; returns the process
    and its results folder."""
    results_dir = tmp_path / 'results'
    environment = dict(os.environ, PYTHON=sys.executable)
    process = subprocess.Popen(
        [
            'bash',
            str(REPOSITORY / 'scripts' / script),
            '--quick',
            *flags,
            '--results_dir',
            str(results_dir),
            '--log_dir',
            str(tmp_path / 'logs'),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    return process, results_dir


def _wait_for_a_run(results_dir):
    deadline = time.time() + 120
    while not list(results_dir.glob('**/summary.json')) and time.time() < deadline:
        time.sleep(0.2)


def test_sigterm_stops_the_sweep_and_its_runs(tmp_path):
    sweep, results_dir = _start('nested_spheres.sh', tmp_path, '--jobs', '2')
    _wait_for_a_run(results_dir)
    assert _runs_of(results_dir), 'no run started'
    sweep.send_signal(signal.SIGTERM)
    _, error = sweep.communicate(timeout=60)
    assert sweep.returncode == 143
    assert 'stopped by SIGTERM' in error
    assert not _runs_of(results_dir)  # the sweep returns once its runs have ended
    # what was stopped resumes: nothing finished is lost
    assert list(results_dir.glob('**/checkpoint.pt'))


def test_budget_times_each_option_and_width_of_a_grid(capsys):
    total = grids_command.main(['budget', 'g1d', '--grid', 'quick', '--epochs', '1'])
    printed = capsys.readouterr().out.splitlines()
    grid = EXPERIMENTS['g1d'].grids['quick']
    rows = [line.split() for line in printed[1:-1]]
    assert [(row[0], int(row[1])) for row in rows] == [
        (option, width) for option in grid.options for width in grid.widths
    ]
    per_run = [float(row[3]) for row in rows]
    assert all(seconds > 0 for seconds in per_run)
    # repeats × Σ per run / 2 jobs, as printed on the last line
    assert total == pytest.approx(sum(float(row[3]) for row in rows) * grid.repeats / 2, rel=0.05)
    assert printed[-1].startswith('g1d quick: about ') and '--jobs 2' in printed[-1]


def test_sigint_while_the_runs_are_listed_stops_the_sweep_before_any_run(tmp_path):
    sweep, results_dir = _start('g1d.sh', tmp_path)
    time.sleep(0.3)  # Python is still importing to list the runs
    sweep.send_signal(signal.SIGINT)
    _, error = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, error
    assert 'stopped by SIGINT before any run started' in error
    assert not list(results_dir.glob('**/summary.json'))


@pytest.mark.parametrize('number, code', [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_reproduce_stops_it_and_every_child(tmp_path, number, code):
    reproduce, results_dir = _start('reproduce.sh', tmp_path, '--jobs', '2')
    _wait_for_a_run(results_dir)
    assert list(results_dir.glob('nested_spheres/**/summary.json')), 'no run started'
    reproduce.send_signal(number)
    _, error = reproduce.communicate(timeout=120)
    assert reproduce.returncode == code, error
    assert 'reproduce: stopped by' in error
    assert not _runs_of(results_dir)  # no sweep, xargs or run left
    # It did not go on to the next study.
    assert not (results_dir / 'g1d').exists()


def test_each_study_has_its_own_results_folder():
    folders = {name: study.ablation() for name, study in grids.STUDIES.items()}
    assert folders['mnist'] == 'mnist/32' and folders['digits'] == 'digits/32'
    experiments_and_folders = [
        (study.experiment, folders[name]) for name, study in grids.STUDIES.items()
    ]
    assert len(set(experiments_and_folders)) == len(experiments_and_folders)


def test_a_grid_part_adds_options_at_further_widths_and_short_timing_runs(tmp_path):
    found = grids.runs('nested_spheres', 'reduced', (), tmp_path / 'results', tmp_path / 'logs')
    by_folder = {run.folder.relative_to(tmp_path / 'results'): run for run in found}
    full = pathlib.Path('nested_spheres', 'gtol0.003')
    timed = pathlib.Path('epoch_times', 'nested_spheres', 'gtol0.003')
    # The paper's four options at the small widths, 3 repeats each.
    assert all(full / '500' / option / '3' in by_folder for option in grids.ODE_OPTIONS)
    # At widths 1000 and 2000 direct, GQ and the adjoint train in full, 100 epochs (direct
    # and GQ 2 repeats at 1000, 5 at 2000; the adjoint 2 at 1000, 1 at 2000)...
    assert {
        (path.parts[2], path.parts[3])
        for path in by_folder
        if path.parts[0] == 'nested_spheres' and path.parts[2] in ('1000', '2000')
    } == {
        (width, option)
        for width in ('1000', '2000')
        for option in ('direct', 'adjoint_gq', 'adjoint_ode')
    }
    assert full / '1000' / 'adjoint_gq' / '2' in by_folder
    assert full / '1000' / 'adjoint_gq' / '3' not in by_folder
    assert full / '2000' / 'direct' / '5' in by_folder
    assert full / '2000' / 'adjoint_gq' / '6' not in by_folder
    assert full / '1000' / 'adjoint_ode' / '2' in by_folder
    assert full / '2000' / 'adjoint_ode' / '2' not in by_folder
    assert ' --nepochs ' not in ' '.join(by_folder[full / '2000' / 'direct' / '1'].argv)
    # ... and every option trains 3 epochs there in a folder of its own, with its own log.
    short = by_folder[timed / '2000' / 'adjoint_ode' / '1']
    argv = ' '.join(short.argv)
    assert ' --nepochs 3 ' in argv and ' --lr 0.0001 ' in argv
    assert short.log.parent == tmp_path / 'logs' / 'nested_spheres' / 'epoch_times'
    assert len([path for path in by_folder if path.parts[0] == 'epoch_times']) == 4 * 2 * 2
    # A study of fewer widths (sines with 50 irregular times) runs none of the part's widths.
    irregular = grids.runs(
        'sines', 'reduced', ('--ntimes', '50', '--regular_times', 'irregular'), tmp_path, tmp_path
    )
    assert {run.folder.parts[-3] for run in irregular} == {'20', '200'}
    regular = grids.runs('sines', 'reduced', ('--ntimes', '10'), tmp_path, tmp_path)
    assert '1000' in {run.folder.parts[-3] for run in regular}


def test_a_second_sweep_on_the_same_log_folder_is_refused(tmp_path):
    logs = tmp_path / 'logs'
    (logs / 'g1d').mkdir(parents=True)
    holder = subprocess.Popen(['flock', str(logs / 'g1d' / '.sweep.lock'), 'sleep', '30'])
    try:
        time.sleep(0.5)
        finished = _sweep(
            'g1d.sh', '--quick', '--results_dir', str(tmp_path / 'r'), '--log_dir', str(logs)
        )
    finally:
        holder.kill()
    assert finished.returncode == 2
    assert 'another sweep of g1d is using --log_dir' in finished.stderr
    assert not (tmp_path / 'r').exists() and not (logs / 'g1d' / 'runs.tsv').exists()


@pytest.mark.parametrize('flag', ['--results_dir', '--log_dir', '--jobs'])
def test_a_flag_whose_value_is_forgotten_is_refused(tmp_path, flag):
    for arguments in ((flag,), (flag, '--quick')):
        finished = _sweep('g1d.sh', '--quick', *arguments)
        assert finished.returncode == 2, finished.stderr
        assert f'{flag} needs a value' in finished.stderr
    assert not (REPOSITORY / 'g1d').exists()


def test_slurm_scripts_quote_every_path(tmp_path):
    # A results folder named to break out of a quoted string and run a command.
    results_dir = tmp_path / 'r"a`touch INJECTED`b'
    logs = tmp_path / 'logs'
    finished = _sweep(
        'g1d.sh',
        '--quick',
        '--slurm',
        '--no-submit',
        '--results_dir',
        str(results_dir),
        '--log_dir',
        str(logs),
    )
    assert finished.returncode == 0, finished.stderr
    environment = dict(os.environ, SLURM_SUBMIT_DIR=str(tmp_path), SLURM_CPUS_PER_TASK='1')
    subprocess.run(
        ['bash', str(logs / 'g1d' / 'figures.sbatch')],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        cwd=tmp_path,
    )
    assert not (tmp_path / 'INJECTED').exists()
    # A task past the end of the array fails, naming the line.
    beyond = subprocess.run(
        ['bash', str(logs / 'g1d' / 'array.sbatch')],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=dict(environment, SLURM_ARRAY_TASK_ID='99'),
    )
    assert beyond.returncode == 1 and 'no run on line 99' in beyond.stderr
    # A log folder that sbatch's own lines cannot hold is refused.
    refused = _sweep(
        'g1d.sh', '--quick', '--slurm', '--no-submit', '--log_dir', str(tmp_path / 'my logs')
    )
    assert refused.returncode == 2 and 'must not contain blanks' in refused.stderr
