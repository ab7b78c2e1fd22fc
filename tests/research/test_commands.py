"""The repository's commands, run for real on tiny settings."""

import json
import pathlib
import subprocess
import sys

import pytest

# Every test here runs a command in a subprocess, end to end.
pytestmark = pytest.mark.slow

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _run(*arguments, timeout=300):
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quickstart_example_trains_and_agrees():
    result = _run('-m', 'examples.quickstart', '--steps', '2', '--width', '16')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == [
        'method',
        's/step',
        '÷',
        'direct',
        'final',
        'loss',
        'grad',
        'rel.',
        'error',
    ]
    assert lines[-1].startswith('÷ direct: seconds per step over direct backprop')
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert float(rows['odeint'][3]) == 1.0
    assert set(rows) == {'odeint', 'odeint_adjoint', 'odeint_adjoint_gq'}
    assert float(rows['odeint'][-1]) == 0.0
    assert float(rows['odeint_adjoint_gq'][-1]) < 1e-3
    assert float(rows['odeint_adjoint'][-1]) < 1e-3


def test_benchmark_prints_one_row_per_option():
    result = _run('-m', 'benchmarks.gradient_speed', '--case', 'spheres20', '--repeats', '1')
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith('spheres20')]
    assert [row[1] for row in rows] == [
        'direct',
        'adjoint_ode',
        'adjoint_seminorm',
        'adjoint_gq',
        'adjoint_gq_restart',
        'adjoint_gq_interpolated',
        'adjoint_gq_default',
    ]
    for row in rows:
        assert int(row[2]) == 677  # 2 hidden layers of 20 on [z, t] plus the decoder
        assert float(row[3]) > 0
        assert float(row[5]) < 1e-3  # gradient agrees with direct


@pytest.mark.parametrize(
    'arguments, words',
    [
        (['--case', 'spheres7'], "invalid choice: 'spheres7'"),
        (['--repeats', '0'], 'argument --repeats: must be a positive integer'),
        (['--device', 'gpu'], 'argument --device: must be'),
    ],
)
def test_benchmark_rejects_bad_flags(arguments, words):
    result = _run('-m', 'benchmarks.gradient_speed', *arguments)
    assert result.returncode == 2
    assert words in result.stderr


def test_accuracy_benchmark_prints_errors_of_every_mode(tmp_path):
    output = tmp_path / 'accuracy.json'
    result = _run(
        '-m', 'benchmarks.gradient_accuracy', '--problem', 'linear', '--output', str(output)
    )
    assert result.returncode == 0, result.stderr
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith('linear')]
    default, restart, interpolated, paper, paper_one, adjoint, ratio = (
        float(value) for value in row[1:]
    )
    record = json.loads(output.read_text())
    assert record['errors']['linear']['gq default'] == pytest.approx(default, rel=0.06)
    # The default is measured once its plan settled: the error of the pass it kept.
    ran = record['ran']['linear']
    assert ran['gq restart'] == 'restart' and ran['gq interp'] == 'interpolated'
    assert ran['adjoint'] is None
    if ran['gq default'] == 'interpolated':
        assert default == interpolated
    elif ran['gq default'] == 'restart':
        assert default == restart
    else:  # no batch_dim: the propagator cannot serve; tolerances of 1e-6 admit the checkpoint
        assert ran['gq default'] == 'checkpoint'
        assert default > adjoint  # the forward discretisation's error, as direct backprop's
    assert 0 < default < 1e-5 and 0 < adjoint < 1e-5 and 0 < restart < 1e-5  # rtol 1e-6
    if ran['gq gtol=0.1'] != 'checkpoint':
        assert paper > restart  # one node per interval with gtol = 0.1
    else:  # the same pass as the default (gtol does not enter the checkpoint)
        assert paper == default
    assert ratio == pytest.approx(default / adjoint, rel=0.02)


@pytest.mark.parametrize(
    'arguments, words',
    [
        (['--problem', 'quadratic'], "invalid choice: 'quadratic'"),
    ],
)
def test_accuracy_benchmark_rejects_bad_flags(arguments, words):
    result = _run('-m', 'benchmarks.gradient_accuracy', *arguments)
    assert result.returncode == 2
    assert words in result.stderr


def test_client_benchmark_prints_every_mode_and_what_ran():
    result = _run(
        '-m',
        'benchmarks.clients',
        '--workload',
        'spiral',
        '--mode',
        'gq default',
        '--mode',
        'gq restart',
        '--repeats',
        '1',
        '--threads',
        '1',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith('spiral')]
    # The last line is the default's turn-by-turn ratio to direct backprop.
    assert lines[-1].startswith('spiral          gq default ÷ direct, turn by turn: median')
    rows = [line.split() for line in lines[:-1]]
    assert [' '.join(row[1:3]) if row[1] == 'gq' else row[1] for row in rows] == [
        'direct',
        'adjoint',
        'gq default',
        'gq restart',
    ]
    # 10 output times at tolerance 1e-7: the default takes the checkpoint, through the
    # forward's kept graph (nothing evaluated again).
    assert 'checkpoint nfe 20+0' in result.stdout and 'restart nfe' in result.stdout
    errors = [float(row[7 if row[1] == 'gq' else 6]) for row in rows]
    assert all(0 < error < 1e-4 for error in errors), errors


def test_client_benchmark_rejects_an_unknown_workload():
    result = _run('-m', 'benchmarks.clients', '--workload', 'pendulum')
    assert result.returncode == 2
    assert "invalid choice: 'pendulum'" in result.stderr


def test_ci_runs_the_readmes_test_command_verbatim():
    readme = (REPOSITORY / 'README.md').read_text()
    section = readme[readme.index('## Test') :]
    command = section.split('```bash\n', 1)[1].split('\n```', 1)[0].strip()
    ci = (REPOSITORY / '.ci' / 'run').read_text().splitlines()
    assert command in ci, (command, ci)
    assert 'ruff check' in command and 'python -m pytest' in command


def test_gpu_check_dry_run_prints_both_tables_on_the_cpu():
    result = subprocess.run(
        ['bash', 'scripts/gpu_check.sh', '--dry-run'],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '== client workloads (device cpu) ==' in out
    assert "== the paper's models (device cpu) ==" in out
    spiral = [line for line in out.splitlines() if line.startswith('spiral ')]
    assert 'gq default ÷ direct, turn by turn' in spiral[-1]
    modes = [line[16:31].strip() for line in spiral[:-1]]
    assert modes == ['direct', 'adjoint', 'gq default', 'gq interpolated']
    assert 'failed' not in out
    paper = [line.split()[1] for line in out.splitlines() if line.startswith('spheres20 ')]
    assert paper == ['direct', 'adjoint_gq_interpolated', 'adjoint_gq_default']


def test_gpu_check_refuses_an_unknown_flag():
    result = subprocess.run(
        ['bash', 'scripts/gpu_check.sh', '--nosuch'],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown argument '--nosuch'" in result.stderr


HELPED = (
    'experiments.g1d',
    'experiments.sines',
    'experiments.images',
    'experiments.nested_spheres',
    'experiments.ornstein_uhlenbeck',
    'experiments.toy_gradient',
    'experiments.lr_probe',
    'experiments.grids',
    'plotting.figures',
    'plotting.plot_ode_times',
    'plotting.plot_sde_times',
    'plotting.plot_speedup',
    'plotting.plot_toy_gradient',
    'plotting.plot_ou_solutions',
    'plotting.plot_ou_cosines',
    'plotting.summary_table',
    'benchmarks.clients',
    'benchmarks.gradient_speed',
    'benchmarks.gradient_accuracy',
    'benchmarks.compiled',
    'gradient_tests.__main__',
)


@pytest.mark.parametrize('module', HELPED)
def test_help_describes_the_command_in_whole_sentences(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as raised:
        importlib.import_module(module).main(['--help'])
    assert raised.value.code == 0
    lines = capsys.readouterr().out.split('\n\n')
    description = ' '.join(lines[1].split())
    assert description[-1] in '.)', description
    assert description.count('(') == description.count(')'), description


@pytest.mark.parametrize('module', ['plotting.summary_table', 'gradient_tests'])
def test_a_reader_that_stops_early_ends_the_command_quietly(module):
    # `| head -1`: the pipe closes while the command still writes.
    finished = subprocess.run(
        f'{sys.executable} -m {module} | head -1',
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
    )
    assert len(finished.stdout.splitlines()) == 1
    assert 'Traceback' not in finished.stderr and 'BrokenPipe' not in finished.stderr


def test_results_complete_says_why_a_run_is_not_complete(tmp_path, capsys):
    from experiments import results as results_command

    run = 'results/g1d/aug3/20/direct/1'
    cases = [
        ([str(tmp_path / 'missing')], 1, 'does not exist'),
        ([str(REPOSITORY / 'README.md')], 1, 'is a file, not a run folder'),
        ([str(tmp_path)], 1, 'holds no finished run'),
        ([str(REPOSITORY / run), '--', '-m'], 2, 'must be -m and an experiment module'),
        (
            [
                str(REPOSITORY / run),
                '--',
                '-m',
                'experiments.g1d',
                '--width',
                '20',
                '--adjoint_option',
                'direct',
                '--lr',
                '0.5',
            ],
            1,
            '--lr 0.01 there, 0.5 asked',
        ),
        ([str(REPOSITORY / run)], 0, 'complete: '),
    ]
    for arguments, status, words in cases:
        assert results_command.main(['complete', *arguments]) == status, arguments
        captured = capsys.readouterr()
        assert words in captured.out + captured.err, (arguments, captured)
    assert results_command.main(['complete', '--quiet', str(tmp_path / 'missing')]) == 1
    assert capsys.readouterr() == ('', '')


@pytest.mark.parametrize(
    'name, words',
    [
        ('', 'is a folder'),
        ('memory.xyz', "must end in .png, .pdf, .svg; got '.xyz'"),
        ('missing/memory.png', 'does not exist'),
    ],
)
def test_the_report_refuses_a_figure_it_cannot_write(tmp_path, capsys, name, words):
    from benchmarks import report

    with pytest.raises(SystemExit) as raised:
        report.main(['--figure', str(tmp_path / name)])
    assert raised.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize('module', ['gradient_speed', 'clients', 'gradient_accuracy'])
def test_a_benchmark_refuses_an_output_it_could_not_write_before_any_work(tmp_path, module):
    for output, words in (
        (tmp_path, 'is a folder'),
        (tmp_path / 'missing' / 'x.json', 'does not exist'),
    ):
        result = _run('-m', f'benchmarks.{module}', '--output', str(output))
        assert result.returncode == 2, result.stderr
        assert '--output: ' in result.stderr and words in result.stderr
        assert 'Traceback' not in result.stderr
