"""The bash sweep scripts: a quick grid for real, resuming, SLURM generation, bad flags."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def _sweep(script, *arguments):
    environment = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(['bash', str(REPOSITORY / 'scripts' / script), *arguments],
                          capture_output=True, text=True, env=environment, timeout=600)


def test_g1d_quick_grid_runs_skips_and_resumes(tmp_path):
    folders = ['--results_dir', str(tmp_path / 'results'), '--log_dir', str(tmp_path / 'logs')]
    first = _sweep('g1d.sh', '--quick', '--jobs', '2', *folders)
    assert first.returncode == 0, first.stderr
    assert 'g1d: 8 runs: 8 done, 0 skipped, 0 failed' in first.stdout
    assert len(list((tmp_path / 'logs' / 'g1d').glob('*.log'))) == 8
    run = tmp_path / 'results' / 'g1d' / 'gtol0.1' / '20' / 'adjoint_gq' / '1'
    assert len(np.load(run / 'epochs.npy')) == 11

    # A half-finished run (summary not complete) is rerun and resumes from its checkpoint.
    summary = json.loads((run / 'summary.json').read_text())
    summary['complete'] = False
    (run / 'summary.json').write_text(json.dumps(summary))
    second = _sweep('g1d.sh', '--quick', '--jobs', '2', *folders)
    assert second.returncode == 0, second.stderr
    assert 'g1d: 8 runs: 1 done, 7 skipped, 0 failed' in second.stdout
    assert json.loads((run / 'summary.json').read_text())['complete'] is True


def test_slurm_mode_writes_a_job_array(tmp_path):
    finished = _sweep('nested_spheres.sh', '--slurm', '--no-submit', '--jobs', '4',
                      '--results_dir', str(tmp_path / 'results'), '--log_dir',
                      str(tmp_path / 'logs'))
    assert finished.returncode == 0, finished.stderr
    batch = (tmp_path / 'logs' / 'nested_spheres' / 'array.sbatch').read_text()
    # the paper's grid: 4 options × 9 widths × 10 repeats
    assert '#SBATCH --array=1-360%4' in batch
    runs = (tmp_path / 'logs' / 'nested_spheres' / 'runs.tsv').read_text().splitlines()
    assert len(runs) == 360
    folder, log, command = runs[0].split('\t')
    assert folder.endswith('nested_spheres/gtol0.1/5/direct/1')
    assert '-m experiments.nested_spheres --adjoint_option direct --width 5' in command
    assert '--save_model 1 --load_model 1' in command


def test_bad_flags(tmp_path):
    assert _sweep('g1d.sh', '--jobs', '0').returncode == 2
    unknown = _sweep('sines.sh', '--fast')
    assert unknown.returncode == 2 and "unknown flag '--fast'" in unknown.stderr
