"""The reproduction report's numbers: the verdicts' statistics and the generated blocks."""

import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from plotting import reproduction, verdicts
from tests.research.test_plotting import _fake_run

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _comparison(ratios):
    return verdicts.SpeedComparison(
        'g1d',
        20,
        'adjoint_gq',
        'direct',
        tuple(range(1, len(ratios) + 1)),
        tuple(ratios),
        tuple(ratios),
        'CPU',
        None,
        (1.0, 1.0),
    )


def test_the_speed_interval_is_a_t_interval_on_log_ratios():
    ratios = (0.6, 0.7, 0.9)
    item = _comparison(ratios)
    logs = np.log(ratios)
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    assert item.mean == pytest.approx(math.exp(logs.mean()))
    assert item.interval == pytest.approx(
        (math.exp(logs.mean() - half), math.exp(logs.mean() + half))
    )
    # The interval reaches above 1 (about 0.45 to 1.08): not distinguishable.
    assert item.interval[1] > 1 and item.verdict == 'not distinguishable'


@pytest.mark.parametrize(
    'ratios, verdict',
    [
        ((0.5, 0.5), 'faster'),
        ((0.72, 0.74, 0.71, 0.73, 0.75), 'faster'),
        ((1.7, 1.72), 'slower'),
        ((0.84, 0.93, 1.28), 'not distinguishable'),
        ((0.8,), 'one repeat'),
    ],
)
def test_the_speed_rule(ratios, verdict):
    assert _comparison(ratios).verdict == verdict


def test_fisher_three_of_three_against_one_of_three_is_not_evidence(tmp_path):
    # Nested spheres at width 500: GQ 3 of 3 at 100 %, the adjoint 1 of 3; two-sided p 0.4.
    base = tmp_path / 'results'
    for number in (1, 2, 3):
        _fake_run(base, 'nested_spheres', 'gtol0.003', 500, 'adjoint_gq', number, 1.0)
    for number in (1, 2, 3):
        _fake_run(base, 'nested_spheres', 'gtol0.003', 500, 'adjoint_ode', number, 2.0)
    # _fake_run ends every run at 90 %: raise GQ's and one adjoint run to 100 %.
    for option, numbers in (('adjoint_gq', (1, 2, 3)), ('adjoint_ode', (1,))):
        for number in numbers:
            path = base / 'nested_spheres/gtol0.003/500' / option / str(number)
            np.save(path / 'epoch_val_metric_history.npy', np.array([50.0, 70.0, 100.0]))
    item = verdicts.compare_accuracy(base, 'nested_spheres', 500, 'adjoint_ode')
    assert item.fisher[:2] == (3, 1)
    assert item.fisher[2] == pytest.approx(0.4)
    assert item.verdict == 'no difference detected'


def test_speed_comparisons_pair_by_repeat_and_prefer_cpu_time(tmp_path):
    base = tmp_path / 'results'
    for number, (mine, theirs) in enumerate(((1.0, 2.0), (3.0, 4.0)), start=1):
        _fake_run(base, 'g1d', 'aug3', 20, 'adjoint_gq', number, mine)
        _fake_run(base, 'g1d', 'aug3', 20, 'direct', number, theirs)
    # Both runs of repeat 1 and 2 recorded CPU time: the ratios are of CPU time.
    for option, cpu in (('adjoint_gq', (0.5, 1.5)), ('direct', (2.0, 2.0))):
        for number, seconds in enumerate(cpu, start=1):
            path = base / 'g1d/aug3/20' / option / str(number)
            np.save(path / 'epoch_cpu_times.npy', np.array([0.0, seconds, seconds]))
    (item,) = verdicts.speed_comparisons(base, 'g1d')
    assert item.basis == 'CPU' and item.repeats == (1, 2)
    assert item.ratios == pytest.approx((0.25, 0.75))
    assert item.wall_ratios == pytest.approx((0.5, 0.75))


def test_the_report_holds_what_the_results_give():
    result = subprocess.run(
        [sys.executable, '-m', 'plotting.reproduction', '--check'],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    assert result.returncode == 0, result.stderr
    assert 'agrees' in result.stdout


def _document(tmp_path, body):
    (tmp_path / 'docs').mkdir()
    for name in reproduction.DOCUMENTS:
        (tmp_path / name).write_text('nothing measured here\n')
    (tmp_path / 'REPRODUCTION.md').write_text(body)
    return tmp_path


def test_every_document_but_the_papers_notes_is_checked():
    documents = {path.relative_to(REPOSITORY).as_posix() for path in REPOSITORY.glob('docs/*.md')}
    assert documents - set(reproduction.DOCUMENTS) == {'docs/paper_notes.md'}
    assert all(reproduction.DOCUMENTS.values())


def test_a_pasted_benchmark_figure_in_the_docs_is_caught(tmp_path):
    root = _document(tmp_path, 'nothing\n')
    (root / 'docs' / 'backward.md').write_text(
        'The propagator took 0.252 s a step (2.6 × direct).\n'
    )
    assert reproduction.check(REPOSITORY / 'results', root) == [
        "docs/backward.md:1: the number '0.252' stands outside every generated block",
        "docs/backward.md:1: the number '2.6 ×' stands outside every generated block",
    ]


def test_the_check_names_the_line_of_a_changed_number(tmp_path):
    text = (REPOSITORY / 'REPRODUCTION.md').read_text()
    start = text.index(reproduction.BEGIN.format('settings'))
    block = text[start : text.index(reproduction.END.format('settings'))]
    edited = block.replace('0.0001', '0.0002', 1)
    assert edited != block
    root = _document(tmp_path, text.replace(block, edited))
    problems = reproduction.check(REPOSITORY / 'results', root)
    line = text[:start].count('\n') + 1 + block.count('\n', 0, block.index('0.0001')) + 0
    assert len(problems) == 1
    assert problems[0].startswith(f'REPRODUCTION.md:{line}: settings differs')
    # --write puts the block back as the results give it.
    assert reproduction.write(REPOSITORY / 'results', root) == ['REPRODUCTION.md']
    assert (root / 'REPRODUCTION.md').read_text() == text


def test_the_check_refuses_a_measured_number_outside_the_blocks(tmp_path):
    root = _document(
        tmp_path,
        'GQ took 0.84 × direct; seeds are 1000 times the repeat; gtol 0.003; 8×8 digits;\n'
        '```\npython -m x --lr 0.37\n```\n95 % intervals; 12.5 % faster\n',
    )
    problems = reproduction.check(REPOSITORY / 'results', root)
    assert problems == [
        "REPRODUCTION.md:1: the number '0.84 ×' stands outside every generated block",
        "REPRODUCTION.md:5: the number '12.5 %' stands outside every generated block",
    ]


def test_a_block_without_its_end_marker_is_named(tmp_path):
    root = _document(tmp_path, 'x\n<!-- generated: claims -->\n| a |\n')
    assert reproduction.check(REPOSITORY / 'results', root) == [
        "REPRODUCTION.md: line 2: block 'claims' has no end marker"
    ]


def test_an_accuracy_comparison_with_one_repeat_is_not_tested():
    item = verdicts.AccuracyComparison(
        'ornstein_uhlenbeck',
        100,
        'adjoint_gq',
        'sde_direct',
        ((0.04, 0.038), (0.05,)),
        ((-1.9, -1.9), (-2.0,)),
        None,
        None,
    )
    assert item.verdict == 'one repeat'
    words = reproduction._accuracy_words([item], lambda found: f'width {found.width}')
    assert words == 'not tested (one repeat) at width 100'


def test_a_results_folder_without_the_records_is_named_and_nothing_is_written(tmp_path):
    # REPRODUCTION.md's block can be computed from the folder (and differs); a later
    # document's cannot: --write must leave both as they were.
    root = _document(
        tmp_path, 'x\n<!-- generated: pending -->\nstale\n<!-- end generated: pending -->\n'
    )
    (root / 'docs' / 'backward.md').write_text(
        'y\n<!-- generated: one_step -->\n<!-- end generated: one_step -->\n'
    )
    empty = tmp_path / 'empty'
    empty.mkdir()
    problems = reproduction.check(empty, root)
    assert any(
        problem.startswith("docs/backward.md: line 2: block 'one_step' cannot be computed")
        and 'gradient_speed.json' in problem
        for problem in problems
    ), problems
    before = {name: (root / name).read_text() for name in reproduction.DOCUMENTS}
    with pytest.raises(reproduction.BlockError, match='one_step'):
        reproduction.write(empty, root)
    assert {name: (root / name).read_text() for name in reproduction.DOCUMENTS} == before


def test_the_long_run_summary_is_computed_from_each_record():
    import json

    results = reproduction.ROOT / 'results'
    text = reproduction.clients_long_summary(results)
    sentences = text.split('. At ')
    assert len(sentences) == len(reproduction.LONG_RUN_RECORDS)
    for name, sentence in zip(reproduction.LONG_RUN_RECORDS, sentences):
        record = json.loads((results / 'benchmarks' / name).read_text())
        trained = record['training']['spheres2000']
        default = trained['gq default']['seconds']
        forced = {
            mode: sum(run['seconds']) / len(run['seconds'])
            for mode, run in trained.items()
            if mode.startswith('gq ') and mode != 'gq default'
        }
        fastest = min(forced, key=forced.get)
        ratio = sum(default) / len(default) / forced[fastest]
        assert record['commit'][:7] in sentence
        assert f'took {ratio:.2f} × the {fastest[3:]} pass forced over the run' in sentence
        plateau = sum(default[:100]) / sum(trained[fastest]['seconds'][:100])
        assert f'steps 1–100 {plateau:.2f}' in sentence
        forced_steps = trained[fastest]['seconds']
        slow = sum(mine > 2 * theirs for mine, theirs in zip(default, forced_steps))
        assert f'; {slow} of its steps took more than twice' in sentence
        checkpoint = trained['gq default']['passes']['checkpoint']
        assert f'the checkpoint pass {checkpoint}' in sentence


def test_the_first_turn_table_is_computed_from_the_record():
    import json

    results = reproduction.ROOT / 'results'
    record = json.loads((results / 'benchmarks' / reproduction.CLIENTS_RECORD).read_text())
    trained = record['training']['spheres2000']
    default, forced = trained['gq default']['seconds'], trained['gq gtol=0.1']['seconds']
    first = sum(default[:20]) / sum(forced[:20])
    rest = sum(default[20:]) / sum(forced[20:])
    excess = sum(default[:20]) - sum(forced[:20])
    steps = excess / (sum(forced) / len(forced))
    row = next(
        line
        for line in reproduction.clients_first_turn(results).splitlines()
        if line.startswith('| nested spheres')
    )
    cells = [cell.strip() for cell in row.strip('|').split('|')]
    assert cells[1] == 'gtol=0.1'
    assert cells[3] == f'{first:.2f}'
    assert cells[4].startswith(f'{rest:.2f} (')
    assert cells[5].startswith(f'{excess:.2f} (')
    assert cells[6] == f'{steps:.1f}'
    assert cells[7] == f'{steps / 0.05:.0f}'
