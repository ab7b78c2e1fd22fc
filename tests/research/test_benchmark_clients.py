"""The clients benchmark survives a mode that fails: its row says why, the rest prints."""

import shlex
import sys

import pytest
import torch
import torchdiffeq

from benchmarks import clients


def _failing_solver(func, y0, t, **kwargs):
    raise AssertionError('t must be strictly increasing or decreasing')


def test_a_failing_mode_is_reported_in_its_row(monkeypatch):
    monkeypatch.setitem(clients.MODES, 'gq restart', (_failing_solver, {}))
    results, runners = clients.measure(
        'bouncing_ball', ['direct', 'adjoint', 'gq restart'], 1, torch.device('cpu')
    )
    assert list(results) == ['direct', 'adjoint', 'gq restart']
    assert results['gq restart'] == {
        'failed': 'AssertionError: t must be strictly increasing or decreasing'
    }
    assert set(runners) == {'direct', 'adjoint'}
    for mode in ('direct', 'adjoint'):
        results[mode].update(memory=None, error=0.0)
        assert results[mode]['seconds'] > 0
    lines = clients.one_step_lines('bouncing_ball', results)
    assert len(lines) == 3
    assert lines[2].endswith('failed: AssertionError: t must be strictly increasing or decreasing')
    assert lines[0].split()[1] == 'direct' and float(lines[0].split()[4]) == 1.0


def test_paired_ratios_are_taken_turn_by_turn():
    from benchmarks.timing import paired_ratios

    # The machine slowed down in the middle turn for both: the paired ratio does not move.
    turns = {'direct': [1.0, 3.0, 1.0, 1.0, 1.0], 'gq default': [1.1, 3.3, 1.2, 0.9, 1.0]}
    middle, lower, upper = paired_ratios(turns, 'gq default', 'direct')
    assert middle == pytest.approx(1.1)
    assert (lower, upper) == (pytest.approx(1.0), pytest.approx(1.1))
    assert paired_ratios({'a': [2.0], 'b': [4.0]}, 'a', 'b') == (0.5, 0.5, 0.5)


def test_memory_is_read_several_times_in_turns(monkeypatch):
    order = []

    def reading(call, device):
        call()
        return 10 * len(order)

    monkeypatch.setattr(clients, 'peak_memory_bytes', reading)
    runners = {name: (lambda name=name: order.append(name)) for name in 'ab'}
    found = clients.memory_readings(runners, torch.device('cpu'), readings=3)
    assert order == list('ababab')
    assert found == {'a': [10, 30, 50], 'b': [20, 40, 60]}


def test_the_modes_take_every_place_in_the_turns():
    from benchmarks.timing import rotated, time_in_turns

    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in 'abc'}
    time_in_turns(calls, 3, torch.device('cpu'))
    # The warm-up in the given order, then each turn starting one mode later.
    assert order == list('abc' + 'abc' + 'bca' + 'cab')
    assert rotated(['a', 'b'], 5) == ['b', 'a'] and rotated([], 2) == []


def test_training_turns_rotate_the_modes(monkeypatch):
    from benchmarks import training

    order = []

    class Runner:
        info = None

        def __init__(self, mode):
            self.mode = mode

        def solve(self, func, y0, t, **kwargs):
            order.append(self.mode)
            return torchdiffeq.odeint(func, y0, t, **kwargs)

    training.train_in_turns(
        'bouncing_ball',
        ['x', 'y'],
        lambda workload, mode: Runner(mode),
        4,
        torch.device('cpu'),
        chunk=2,
    )
    # Turns x y, then y x (in a fixed order: x y x y); each step solves several times.
    runs = [mode for index, mode in enumerate(order) if index == 0 or order[index - 1] != mode]
    assert runs == ['x', 'y', 'x']


def test_the_default_gets_its_turn_by_turn_ratio_line():
    results, _ = clients.measure(
        'spiral', ['direct', 'adjoint', 'gq default'], 3, torch.device('cpu')
    )
    middle, lower, upper = results['gq default']['paired']
    assert 0 < lower <= middle <= upper
    for result in results.values():
        result.update(memory=None, error=0.0)
    last = clients.one_step_lines('spiral', results)[-1]
    assert last.startswith('spiral          gq default ÷ direct, turn by turn: median ')
    assert f'quartiles {lower:.2f}–{upper:.2f}' in last


def test_the_bouncing_ball_trains_through_every_reference():
    # torchdiffeq's adjoint once failed here: the third bounce restarted below the ground.
    results, _ = clients.measure(
        'bouncing_ball', ['direct', 'adjoint', 'gq default'], 1, torch.device('cpu')
    )
    assert all('failed' not in result for result in results.values()), results


@pytest.mark.slow
def test_the_compile_benchmark_prints_both_modes(capsys):
    from benchmarks import compiled

    compiled.main(['--workload', 'spiral', '--repeats', '1', '--threads', '1'])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 2
    assert rows[0][:3] == ['spiral', 'gq', 'default'] and rows[1][:2] == ['spiral', 'direct']
    for row in rows:
        plain, compiled_seconds, ratio = map(float, row[-4:-1])
        assert plain > 0 and compiled_seconds > 0
        # The printed seconds are rounded: the ratio (of the unrounded ones) agrees to 5 %.
        assert ratio == pytest.approx(compiled_seconds / plain, rel=0.05, abs=0.01)


def test_the_record_prints_what_the_run_printed(tmp_path, capsys, monkeypatch):
    # docs/benchmarks.md shows the output rebuilt from the committed record: it must be
    # exactly what the command printed while it ran.
    import json

    output = tmp_path / 'clients.json'
    argv = ['--workload', 'spiral', '--mode', 'gq checkpoint', '--repeats', '2']
    argv += ['--threads', '1', '--train', '--steps', '3', '--output', str(output)]
    monkeypatch.setattr('sys.argv', ['clients.py', *argv])
    clients.main(argv)
    printed = capsys.readouterr().out.splitlines()
    record = json.loads(output.read_text())
    assert record['command'] == 'python -m benchmarks.clients ' + shlex.join(argv)
    rebuilt = clients.output_lines(record)
    assert rebuilt[0] == '$ ' + record['command']
    assert rebuilt[1:] == printed
    trained = [line for line in printed if ' steps ' in line and 's/step' in line]
    assert [line.split()[1:3] for line in trained] == [
        ['direct', '3'],
        ['gq', 'default'],
        ['gq', 'checkpoint'],
    ]
    assert printed[-1].startswith('spiral          gq default ran: ')
    assert 'explored ' in printed[-1] and ' of 3 calls' in printed[-1]


def test_a_failed_reference_is_recorded_and_rebuilt(tmp_path, capsys, monkeypatch):
    import json

    def failing(name, device):
        raise RuntimeError('no reference today')

    monkeypatch.setattr(clients, 'reference_gradient', failing)
    output = tmp_path / 'clients.json'
    argv = ['--workload', 'spiral', '--repeats', '1', '--output', str(output)]
    monkeypatch.setattr('sys.argv', ['clients.py', *argv])
    clients.main(argv)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == 'spiral          reference failed: RuntimeError: no reference today'
    assert clients.output_lines(json.loads(output.read_text()))[1:] == printed


def test_record_header_quotes_the_command_as_a_shell_needs(monkeypatch):
    # A mode name holds a space; the recorded line must paste back as one argument.
    from benchmarks.timing import record_header

    monkeypatch.setattr(sys, 'argv', ['clients.py', '--mode', 'gq default', '--steps', '5'])
    header = record_header('benchmarks.clients', torch.device('cpu'))
    assert header['command'] == "python -m benchmarks.clients --mode 'gq default' --steps 5"
    assert shlex.split(header['command'])[4] == 'gq default'


def _one_step(errors, seconds):
    return {
        mode: dict(seconds=seconds.get(mode, 1.0), error=error) for mode, error in errors.items()
    }


@pytest.mark.parametrize(
    'tight, checkpoint_error, trained',
    [
        (True, 9.0, ['gq checkpoint']),  # tight: the checkpoint unchecked, no paper's rule
        (False, 1.5, ['gq checkpoint', 'gq gtol=0.1']),  # coarse: both within 2 times
        (False, 9.0, ['gq gtol=0.1']),  # coarse: the checkpoint's error too large
    ],
)
def test_training_takes_the_passes_the_default_may_take(tight, checkpoint_error, trained):
    results = _one_step(
        {
            'direct': 1.0,
            'adjoint': 1.0,
            'gq default': 1.0,
            'gq checkpoint': checkpoint_error,
            'gq gtol=0.1': 1.9,
            'gq restart': 1.0,
        },
        seconds={'gq restart': 10.0},  # beyond TRAIN_WITHIN of the fastest: not trained
    )
    assert clients.training_modes(results, tight) == ['direct', 'gq default'] + trained


def _trained_record(default, forced, direct):
    """A record of one workload's training run: the default, one forced pass and direct."""
    one_step = {
        mode: dict(seconds=1.0, error=1e-6)
        for mode in ('direct', 'adjoint', 'gq default', 'gq checkpoint')
    }
    trained = {
        'direct': dict(seconds=direct),
        'gq default': dict(seconds=default, passes={'checkpoint': len(default)}, plans=[]),
        'gq checkpoint': dict(seconds=forced),
    }
    return dict(one_step=dict(toy=one_step), training=dict(toy=trained))


def test_the_first_turn_is_split_from_the_rest_of_the_run():
    from benchmarks import report

    # The default pays 20 s over the forced pass in its first 20 steps, then runs at its
    # speed: 20 forced steps of excess, within 5 % of runs of 400 steps or more.
    record = _trained_record([2.0] * 20 + [1.0] * 40, [1.0] * 60, [1.5] * 60)
    found = report.first_turn(record, 'toy')
    assert found['fastest'] == 'gq checkpoint'
    assert found['first'] == pytest.approx(2.0)
    assert found['rest'] == pytest.approx(1.0)
    assert found['run'] == pytest.approx(80 / 60)
    assert found['first_excess'] == pytest.approx(20.0)
    assert found['first_steps'] == pytest.approx(20.0)
    assert found['break_even'] == pytest.approx(400.0)
    row = report.first_turns(record).splitlines()[2]
    assert row == (
        '| toy (60) | checkpoint | 1.33 | 2.00 | 1.00 (1.00, 1.00–1.00) | 20.00 (100 %) | '
        '20.0 | 400 |'
    )
    # A first turn that cost nothing has no break-even length; a run of one turn no row.
    even = _trained_record([1.0] * 40, [1.0] * 40, [1.0] * 40)
    assert report.first_turn(even, 'toy')['break_even'] is None
    short = _trained_record([2.0] * 20, [1.0] * 20, [1.0] * 20)
    assert report.first_turn(short, 'toy') is None
    assert len(report.first_turns(short).splitlines()) == 2
