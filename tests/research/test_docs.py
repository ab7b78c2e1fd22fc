"""What the documents say holds: every file they name exists, the README's speed table is
the benchmark run docs/benchmarks.md prints, and the version is written once."""

import pathlib
import re
import subprocess

import pytest

import torch_gq_adjoint

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
#: Top-level folders whose files documents and comments name.
TOP_LEVEL = (
    'torch_gq_adjoint',
    'tests',
    'gradient_tests',
    'experiments',
    'models',
    'datasets',
    'plotting',
    'benchmarks',
    'scripts',
    'common',
    'docs',
    'results',
    'examples',
    '.ci',
)
PATH = re.compile(
    r'(?<![\w/.])((?:'
    + '|'.join(re.escape(top) for top in TOP_LEVEL)
    + r')/[\w./-]*\w\.(?:py|md|txt|toml|sh|json|png|pdf|ipynb|cff|npz))'
)


def _tracked(*patterns):
    listed = subprocess.run(
        ['git', 'ls-files', '--', *patterns], capture_output=True, text=True, cwd=REPOSITORY
    )
    if listed.returncode != 0:
        pytest.skip('not a git checkout')
    return [REPOSITORY / name for name in listed.stdout.split()]


def _named_paths(text):
    return {match for match in PATH.findall(text) if not any(mark in match for mark in '*<>{}')}


def test_every_file_named_by_a_document_or_comment_exists():
    sources = _tracked('*.md', 'requirements.txt', 'pyproject.toml', '*.py', '*.sh', '.ci/run')
    missing = []
    # This file names a missing file on purpose (the check's own test).
    for source in (path for path in sources if path != pathlib.Path(__file__).resolve()):
        text = source.read_text(errors='replace')
        if source.suffix == '.py':
            # Comments and docstrings: a path in code is data the code builds.
            text = '\n'.join(
                line
                for line in text.splitlines()
                if line.strip().startswith('#') or '``' in line or '(' not in line
            )
        for path in _named_paths(text):
            if not (REPOSITORY / path).exists() and not (REPOSITORY / 'docs' / path).exists():
                missing.append(f'{source.relative_to(REPOSITORY)}: {path}')
    assert not missing, missing


def test_the_path_check_sees_a_missing_file():
    assert _named_paths('see `tests/test_checkpoint.py` and docs/usage.md.') == {
        'tests/test_checkpoint.py',
        'docs/usage.md',
    }
    assert not (REPOSITORY / 'tests/test_checkpoint.py').exists()


def _readme_speed_rows():
    text = (REPOSITORY / 'README.md').read_text()
    section = text[text.index('## How fast') : text.index('## Reproduce the paper')]
    rows = [
        line
        for line in section.splitlines()
        if line.startswith('| ') and not line.startswith('| workload')
    ]
    return [[cell.strip() for cell in row.strip('|').split('|')] for row in rows]


def test_the_readme_speed_table_is_the_committed_benchmark_run():
    from benchmarks import report

    readme = _readme_speed_rows()
    expected = report.rows(report.load())
    assert len(expected) == 7
    assert ['| ' + ' | '.join(row) + ' |' for row in readme] == expected


def test_the_targets_add_a_row_per_longer_run_from_its_own_record():
    from benchmarks import report

    record = report.load()
    longer = report.load(report.RECORD.parent / 'clients_spheres2000_long.json')
    lines = report.targets(record, [longer]).splitlines()
    assert len(lines) == 2 + 7 + 1
    figures = report.summary(longer, 'spheres2000')
    assert len(longer['training']['spheres2000']['gq default']['seconds']) == 500
    cells = [cell.strip() for cell in lines[-1].strip('|').split('|')]
    assert cells[0] == f'{report.LABELS["spheres2000"]}, 500 steps, at {longer["commit"][:7]}'
    assert cells[1] == f'{figures["versus_direct"]:.2f} (0.95)'
    assert cells[3] == f'{figures["versus_fastest"]:.2f}'
    assert report.targets(record).splitlines() == lines[:-1]


def test_the_report_reads_the_plans_as_the_library_prints_them():
    import torch

    import torch_gq_adjoint
    from benchmarks import report

    func = torch.nn.Linear(2, 2).double()
    y0 = torch.ones(3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    for _ in range(3):
        torch_gq_adjoint.odeint_adjoint_gq(
            lambda t, z: func(z), y0, t, adjoint_params=tuple(func.parameters())
        )[-1].sum().backward()
    (plan,) = torch_gq_adjoint.plans()
    assert plan.calls == 3 and plan.explored >= 1
    assert report.exploring([str(plan)]) == (plan.explored, plan.calls)


def test_the_version_is_written_once():
    version = torch_gq_adjoint.__version__
    pyproject = (REPOSITORY / 'pyproject.toml').read_text()
    project = pyproject[pyproject.index('[project]') :]
    project = project[: project.index('\n[', 1)]
    assert 'dynamic = ["version"]' in project and '\nversion =' not in project
    assert 'version = {attr = "torch_gq_adjoint.__version__"}' in pyproject
    citation = (REPOSITORY / 'CITATION.cff').read_text()
    assert f'\nversion: {version}\n' in citation
    changelog = (REPOSITORY / 'CHANGELOG.md').read_text()
    assert re.search(r'^## (\S+)', changelog, re.M).group(1) == version


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPOSITORY / 'README.md').read_text()
    command = readme[readme.index('## Test') :].split('```bash\n')[1].split('\n```')[0]
    assert command.startswith('pip install -r requirements.txt')
    assert '\n' + command + '\n' in (REPOSITORY / '.ci' / 'run').read_text()


def test_the_rule_of_auto_quotes_the_constants_of_the_code():
    from torch_gq_adjoint._impl import checks, choice

    text = (REPOSITORY / 'docs' / 'backward.md').read_text()
    rule = text[text.index("## `'auto'`: the default") :]
    rule = rule[: rule.index('\n## ')] if '\n## ' in rule else rule
    assert f'`rtol` ≤ {checks.TIGHT_RTOL:.0e}'.replace('e-0', 'e-') in rule
    assert f'evaluations, `{choice.CHECKPOINT_COST:g}` each' in rule
    assert f'`max(NFE, {choice.STEP_EVALUATIONS} · intervals)`' in rule
    assert f'{2 * choice.STEP_EVALUATIONS} per interval with `gtol=None`' in rule
    assert f'`{choice.RIDING_COST:g} · max(' in rule
    assert choice.MARGIN == 2 and 'less than half the cheapest quadrature' in rule


def test_the_check_of_accuracy_quotes_the_constants_of_the_code():
    from torch_gq_adjoint._impl import paper_rule

    text = (REPOSITORY / 'docs' / 'backward.md').read_text()
    heading = "**The paper's rule and the checkpoint, checked.**"
    check = text[text.index(heading) :].split('\n\n')[0]
    assert f'`gtol={paper_rule.PAPER_GTOL:g}`' in check
    assert f'{paper_rule.TIGHTER:g} times tighter' in check
    assert f'at least {paper_rule.MIN_TIGHTER:g} times tighter' in check
    assert f'{paper_rule.EPSILONS:g} machine epsilons' in check
    assert f'at most {paper_rule.ERROR_FACTOR:g} times as far' in check


def test_the_readme_main_command_is_a_committed_study_and_writes_elsewhere():
    from experiments import results as results_command
    from study import results

    readme = (REPOSITORY / 'README.md').read_text()
    block = readme[readme.index('## Install') :].split('```bash\n')[1].split('\n```')[0]
    command = next(line for line in block.splitlines() if 'experiments.' in line).split()
    assert command[:3] == ['python', '-m', 'experiments.nested_spheres']
    folder = 'results/nested_spheres/gtol0.003/2000/adjoint_gq/1'
    assert folder in readme
    # The committed run was made with exactly these settings ...
    assert (
        results_command.main(
            [
                'complete',
                str(REPOSITORY / folder),
                '--',
                *command[1:],
                '--results_dir',
                str(results.RESULTS_DIR),
            ]
        )
        == 0
    )
    # ... and the command itself writes outside the committed results.
    from experiments import nested_spheres

    args = nested_spheres.build_parser().parse_args(command[3:])
    assert pathlib.Path(args.results_dir).resolve() == results.RUNS_DIR


def test_the_data_layer_imports_none_of_the_commands():
    import ast

    forbidden = ('experiments', 'plotting', 'benchmarks')
    for path in sorted((REPOSITORY / 'study').glob('*.py')):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split('.')[0] not in forbidden, f'{path.name} imports {name}'
    # ... and the figures read runs through it, not through the commands.
    for path in sorted((REPOSITORY / 'plotting').glob('*.py')):
        assert 'from experiments' not in path.read_text(), path.name
