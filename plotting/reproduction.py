"""Every number the reproduction report and the README quote, computed from ``results/``.

The documents hold generated blocks between two markers::

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

``python -m plotting.reproduction --check`` recomputes each block from the committed runs
and benchmark records and exits 1, naming the file, line and block, where a block differs
from what the files give or a measured number stands outside every block (a number with
a decimal point, or followed by × or %, that is not one of :data:`SETTINGS`).
``python -m plotting.reproduction --write`` rewrites the blocks in place.
``python -m plotting.reproduction --show NAME`` prints one block.

The verdicts follow the rules of :mod:`plotting.verdicts`; the blocks are in
:data:`BLOCKS`.
"""

import argparse
import json
import math
import pathlib
import re
import sys

import numpy as np

from common import atomic
from plotting import summary_table, verdicts
from study import results
from study.grids import EXPERIMENTS, STUDIES

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: The documents whose blocks are generated, relative to the repository's root, and
#: whether their prose must hold no measured number outside the blocks.
#: docs/paper_notes.md is left out: it quotes the paper's own settings and figures.
DOCUMENTS = {
    'REPRODUCTION.md': True,
    'README.md': True,
    'docs/benchmarks.md': True,
    'docs/backward.md': True,
    'docs/usage.md': True,
    'docs/experiments.md': True,
    'docs/sde.md': True,
}
BEGIN = '<!-- generated: {} -->'
END = '<!-- end generated: {} -->'
_BEGIN = re.compile(r'<!-- generated: (\S+) -->')

#: Study names as the report writes them.
NAMES = {
    'nested_spheres': 'nested spheres',
    'g1d': 'g1d',
    'sines10': 'sines 10',
    'sines50': 'sines 50',
    'digits': 'digits',
    'ornstein_uhlenbeck': 'Ornstein–Uhlenbeck',
}
#: The ODE studies of the paper's Figure 2 (the report's order).
ODE_STUDIES = ('nested_spheres', 'g1d', 'sines10', 'sines50', 'digits')

#: Numbers with a decimal point that prose may hold outside the blocks: settings and
#: versions, never measurements.
SETTINGS = frozenset(
    {
        '0.003',
        '0.1',
        '0.01',
        '0.4',
        '0.7',
        '0.9',
        '2.13.0',
        '0.2.5',
        '0.2.6',
        '1.0.1',
        '0.3.0',
        '0.5',
        '2308.10644',
        '1.25',
        '1.5',
        '95',
        '100',
        '2',
        '0.05',
        '5',
    }
)
_STRAY = re.compile(r'(?<![\w.\-/])(\d+(?:\.\d+)*)(?:\s*(×|%)(?!\d)|(?=\D|$))')


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '—'
    return f'{value:.{digits}g}'


def _commit(record):
    """The commit a benchmark record measured, and the files it changed, if any."""
    changed = record.get('uncommitted') or []
    return f'commit {record["commit"][:10]}' + (
        f' with uncommitted changes to {", ".join(changed)}' if changed else ''
    )


def _mebibytes(value):
    """Bytes as MiB: one decimal below 10, whole numbers above."""
    mib = value / 2**20
    return f'{mib:.1f}' if mib < 10 else f'{mib:.0f}'


def _list(values, digits=3):
    return ', '.join(_fmt(value, digits) for value in values)


def _widths(items):
    return ', '.join(str(width) for width in items)


# ---------------------------------------------------------------- speed and accuracy


def speed_rows(comparisons):
    """Markdown rows (header first) of :class:`plotting.verdicts.SpeedComparison` s."""
    rows = [
        '| width | GQ ÷ | compared | time | s: GQ, reference (means) | ratio per repeat '
        '| wall-time ratios | geometric mean [95 % interval] | verdict |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for item in comparisons:
        interval = item.interval
        span = '' if interval is None else f' [{_fmt(interval[0])}, {_fmt(interval[1])}]'
        rows.append(
            f'| {item.width} | {item.reference} | {item.compared} | {item.basis} | '
            f'{_fmt(item.seconds[0])}, {_fmt(item.seconds[1])} | {_list(item.ratios)} | '
            f'{_list(item.wall_ratios)} | {_fmt(item.mean)}{span} | {item.verdict} |'
        )
    return rows


def accuracy_rows(comparisons, metric):
    """Markdown rows (header first) of :class:`plotting.verdicts.AccuracyComparison` s."""
    fisher = any(item.fisher for item in comparisons)
    rows = [
        f'| width | GQ against | final val loss: GQ; other | final {metric}: GQ; other | '
        "Welch's p (log loss) |"
        + (' reaching 100 %: GQ, other (Fisher p) |' if fisher else '')
        + ' verdict |',
        '|---|---|---|---|---|' + ('---|' if fisher else '') + '---|',
    ]
    for item in comparisons:
        cell = ''
        if fisher:
            mine, theirs, p = item.fisher
            cell = (
                f' {mine} of {len(item.metrics[0])}, {theirs} of {len(item.metrics[1])} '
                f'({_fmt(p, 2)}) |'
            )
        rows.append(
            f'| {item.width} | {item.reference} | {_list(item.losses[0])}; '
            f'{_list(item.losses[1])} | {_list(item.metrics[0])}; {_list(item.metrics[1])} | '
            f'{_fmt(item.welch_p, 2)} |{cell} {item.verdict} |'
        )
    return rows


def _where(item, prefix=''):
    """A comparison's width, and its epochs where it compares only the first ones."""
    epochs = '' if item.epochs is None else f' (first {item.epochs} epochs)'
    return f'{prefix}{item.width}{epochs}'


def _by_verdict(comparisons):
    found = {}
    for item in comparisons:
        found.setdefault(item.verdict, []).append(_where(item))
    return found


def _verdict_words(comparisons):
    """'faster at widths 20, 100; not distinguishable at 5' from comparisons."""
    grouped = _by_verdict(comparisons)
    order = ('faster', 'not distinguishable', 'slower', 'one repeat')
    return '; '.join(
        f'{verdict} at {", ".join(grouped[verdict])}' for verdict in order if verdict in grouped
    )


def _accuracy_words(comparisons, where):
    """'no difference detected in 12 of 13 comparisons; not tested (one repeat) at 100
    (direct)' and the like."""
    grouped = {}
    for item in comparisons:
        grouped.setdefault(item.verdict, []).append(item)
    parts = []
    if 'differs' in grouped:
        parts.append('differs at ' + ', '.join(where(item) for item in grouped['differs']))
    if 'no difference detected' in grouped:
        parts.append(
            f'no difference detected in {len(grouped["no difference detected"])} of '
            f'{len(comparisons)} comparisons'
        )
    if 'one repeat' in grouped:
        parts.append(
            'not tested (one repeat) at ' + ', '.join(where(item) for item in grouped['one repeat'])
        )
    return '; '.join(parts)


def evidence(study, results_dir):
    """One study's speed and accuracy evidence: the verdict lines, then both tables."""
    comparisons = verdicts.speed_comparisons(results_dir, study)
    accuracy = verdicts.accuracy_comparisons(results_dir, study)
    adjoint, direct = verdicts.references(STUDIES[study].experiment)
    lines = []
    for reference in (adjoint, direct):
        mine = [item for item in comparisons if item.reference == reference]
        if mine:
            lines.append(f'- GQ ÷ {reference}: {_verdict_words(mine)} (widths).')
    if accuracy:
        lines.append(
            '- Final validation loss against every other option: '
            + _accuracy_words(accuracy, lambda item: f'{item.width} ({item.reference})')
            + '.'
        )
    lines += ['', '*Speed*, paired by repeat:', '', *speed_rows(comparisons)]
    metric = 'accuracy (%)' if STUDIES[study].experiment in verdicts.CLASSIFIERS else 'metric'
    if accuracy:
        lines += ['', '*Accuracy*:', '', *accuracy_rows(accuracy, metric)]
    return '\n'.join(lines)


def study_tables(study, results_dir):
    """The study's summary tables: full runs, then its short timing runs."""
    spec = STUDIES[study]
    ablation = spec.ablation()
    parts = [summary_table.table(results_dir, spec.experiment, ablation)]
    timing = summary_table.timing_table(results_dir, spec.experiment, ablation)
    if timing:
        parts.append(timing)
    return '\n'.join(part.rstrip('\n') for part in parts if part)


# ---------------------------------------------------------------- the claims table


def _speed_claim(comparisons):
    grouped = {}
    for item in comparisons:
        grouped.setdefault(item.verdict, []).append(_where(item, f'{NAMES[item.study]} '))
    faster, slower = grouped.get('faster', []), grouped.get('slower', [])
    if faster and not slower and len(faster) == len(comparisons):
        verdict = 'reproduced'
    elif faster and not slower:
        verdict = 'reproduced where distinguishable'
    elif faster:
        verdict = 'partly'
    else:
        verdict = 'not reproduced'
    order = ('faster', 'not distinguishable', 'slower', 'one repeat')
    evidence_text = '; '.join(
        f'{key} at {", ".join(grouped[key])}' for key in order if key in grouped
    )
    return verdict, f'{evidence_text} ({len(comparisons)} comparisons)'


def _growth_claim(by_study):
    """Whether GQ ÷ adjoint falls from the smallest to the largest width of each study."""
    parts, falls = [], []
    for study, found in by_study.items():
        if len(found) < 2:
            continue
        first, last = found[0], found[-1]
        falls.append(last.mean < first.mean)
        parts.append(
            f'{NAMES[study]} {_fmt(first.mean)} at {_where(first)} → {_fmt(last.mean)} at '
            f'{_where(last)}'
        )
    verdict = 'reproduced' if falls and all(falls) else 'partly' if any(falls) else 'not reproduced'
    return verdict, '; '.join(parts)


def claims(results_dir):
    """The claims table: each claim of the paper, the evidence and the verdict."""
    speed = {study: verdicts.speed_comparisons(results_dir, study) for study in STUDIES_SHOWN}
    accuracy = {study: verdicts.accuracy_comparisons(results_dir, study) for study in ODE_STUDIES}
    ode_accuracy = [item for study in ODE_STUDIES for item in accuracy[study]]
    differing = [item for item in ode_accuracy if item.verdict == 'differs']
    same = (
        'reproduced' if not differing else 'partly',
        'final validation loss: '
        + _accuracy_words(
            ode_accuracy, lambda item: f'{NAMES[item.study]} {item.width} ({item.reference})'
        ),
    )
    versus = {}
    for study in STUDIES_SHOWN:
        adjoint, direct = verdicts.references(STUDIES[study].experiment)
        versus.setdefault('adjoint', {})[study] = [
            item for item in speed[study] if item.reference == adjoint
        ]
        versus.setdefault('direct', {})[study] = [
            item for item in speed[study] if item.reference == direct
        ]
    ode_adjoint = [item for study in ODE_STUDIES for item in versus['adjoint'][study]]
    ode_direct = [item for study in ('nested_spheres', 'g1d') for item in versus['direct'][study]]
    many_times = [item for study in ('sines10', 'sines50') for item in versus['direct'][study]]
    ou_adjoint = versus['adjoint']['ornstein_uhlenbeck']
    ou_direct = versus['direct']['ornstein_uhlenbeck']
    ou_accuracy = [
        item
        for item in verdicts.accuracy_comparisons(results_dir, 'ornstein_uhlenbeck')
        if item.reference == 'sde_direct'
    ]
    ou_differs = [item.width for item in ou_accuracy if item.verdict == 'differs']
    slower_direct = [item for item in many_times if item.verdict == 'slower']
    rows = [
        "| claim (the paper's §3–§4, Figures 2–3) | evidence (GQ ÷ reference: geometric "
        'mean of the paired ratios, verdict by the 95 % interval) | verdict |',
        '|---|---|---|',
        f'| GQ reaches the same validation metric as the other options (nested spheres, '
        f'g1d, sines 10 and 50, digits) | {same[1]} | {same[0]} |',
    ]
    verdict, text = _speed_claim(ode_adjoint)
    rows.append(f'| GQ trains faster than the adjoint (same studies) | {text} | {verdict} |')
    verdict, text = _growth_claim(
        {study: versus['adjoint'][study] for study in ODE_STUDIES if versus['adjoint'][study]}
    )
    rows.append(
        "| GQ's advantage over the adjoint grows with model size (GQ ÷ adjoint, smallest → "
        f'largest width) | {text} | {verdict} |'
    )
    verdict, text = _speed_claim(ode_direct)
    rows.append(
        '| GQ is often faster than direct backprop on CPU (nested spheres, g1d) | '
        f'{text} | {"partly" if verdict != "not reproduced" else verdict} |'
    )
    rows.append(
        '| with many observation times GQ is slower than direct (sines 10 and 50) | '
        + '; '.join(
            f'{NAMES[item.study]} {item.width}: {_fmt(item.mean)} ({item.verdict})'
            for item in many_times
        )
        + ' | '
        + (
            'reproduced'
            if len(slower_direct) == len(many_times)
            else 'reproduced where distinguishable'
            if slower_direct
            else 'not distinguishable'
        )
        + ' |'
    )
    adjoint_verdict, adjoint_text = _speed_claim(ou_adjoint)
    direct_verdict, direct_text = _speed_claim(ou_direct)
    rows.append(
        "| GQ trains SDEs faster than torchsde's adjoint with comparable KL "
        f'(Ornstein–Uhlenbeck) | against sde_adjoint: {adjoint_text}; against sde_direct: '
        f'{direct_text}; final KL against sde_direct: '
        + _accuracy_words(ou_accuracy, lambda item: f'width {item.width}')
        + f' | faster: {adjoint_verdict}; KL: '
        + ('no difference detected' if not ou_differs else 'partly')
        + ' |'
    )
    del direct_verdict
    rows.append(
        '| the speed-up is smaller on GPU | no GPU was available to this work | not checked |'
    )
    return '\n'.join(rows)


#: The studies whose speed the claims and figure compare.
STUDIES_SHOWN = ODE_STUDIES + ('ornstein_uhlenbeck',)


# ---------------------------------------------------------------- other blocks


def settings(results_dir):
    """Learning rate per width: the reduced grid's, the probe behind it, the paper's
    default."""
    rows = [
        '| experiment | probe (GQ alone): epochs, candidate rates | width → lr (ours) | '
        "the paper's default (its default width) |",
        '|---|---|---|---|',
    ]
    for name in ('nested_spheres', 'sines', 'g1d', 'images'):
        spec = EXPERIMENTS[name]
        grid = spec.grids['reduced']
        path = pathlib.Path(results_dir) / 'lr_probe' / f'{name}.json'
        probe = json.loads(path.read_text()) if path.exists() else {}
        tried = sorted(
            {float(lr) for losses in probe.get('losses', {}).values() for lr in losses},
            reverse=True,
        )
        paper_widths = set(spec.grids['paper'].trained_widths())
        chosen = ', '.join(
            f'{width} → {grid.lr[width]:g}'
            + ('' if str(width) in probe.get('chosen', {}) else ' (not probed)')
            + ('' if width in paper_widths else " (not one of the paper's widths)")
            for width in sorted(grid.lr)
        )
        defaults = spec.parse([])
        rows.append(
            f'| {name} | {probe.get("epochs", "—")} epochs; '
            f'{", ".join(f"{lr:g}" for lr in tried)} | {chosen} | '
            f'{defaults.lr:g} ({defaults.width}) |'
        )
    return '\n'.join(rows)


def toy_gradient(results_dir):
    """Median relative errors of the toy gradient's methods (Figure 1)."""
    quantities = results.TOY_QUANTITIES
    rows = ['| method | ' + ' | '.join(quantities) + ' |', '|---|' + '---|' * len(quantities)]
    for method in results.TOY_METHODS:
        try:
            found = results.read_toy_gradient(results_dir, method)
        except (FileNotFoundError, results.ResultsError):
            continue
        if found is None:
            continue
        _, errors = found
        cells = ' | '.join(f'{np.median(errors[name]):.1e}' for name in quantities)
        rows.append(f'| {method} | {cells} |')
    return '\n'.join(rows)


def ou_cosines(results_dir):
    """The cosines ablation's table (GQ, width 5)."""
    from plotting import plot_ou_cosines

    return '\n'.join(plot_ou_cosines.table(plot_ou_cosines.collect(results_dir, 5)))


def propagator(results_dir):
    """The propagator backward against the restarting GQ and direct, in training."""
    rows = [
        '| study | width | propagator ÷ restart (ratio per repeat; mean) | '
        'propagator ÷ direct | final val MSE: restart; propagator |',
        '|---|---|---|---|---|',
    ]
    for study in ('sines10', 'sines50'):
        full, _ = runs = verdicts._runs(results_dir, study)
        widths = sorted(w for w, option in full if option == 'adjoint_gq_propagator')
        for width in widths:
            cells = []
            for reference in ('adjoint_gq', 'direct'):
                item = verdicts.compare_speed(
                    results_dir, study, width, reference, 'adjoint_gq_propagator', runs
                )
                cells.append('—' if item is None else f'{_list(item.ratios)}; {_fmt(item.mean)}')
            mse = [
                _list(run['epoch_loss_history'][-1] for run in full.get((width, option), []))
                for option in ('adjoint_gq', 'adjoint_gq_propagator')
            ]
            rows.append(
                f'| {NAMES[study]} | {width} | {cells[0]} | {cells[1]} | {"; ".join(mse)} |'
            )
    return '\n'.join(rows)


def clients(results_dir):
    """The training-run benchmark's table (``results/benchmarks/clients.json``)."""
    from benchmarks import report

    record = _clients_record(results_dir)
    return '\n'.join([report.HEADER, '|---|---|---|---|---|---|---|', *report.rows(record)])


def one_step(results_dir):
    """One training step of each option, from ``results/benchmarks/gradient_speed.json``:
    per case, the paper's GQ and the library's default ÷ the adjoint and ÷ direct, as the
    median (and range) of the ratios of steps timed in the same turn, and peak memory."""
    from benchmarks.timing import paired_ratios

    path = pathlib.Path(results_dir) / 'benchmarks' / 'gradient_speed.json'
    record = json.loads(path.read_text())
    rows = [
        f'Record: `{record["command"]}`, {_commit(record)}, torch '
        f'{record["versions"]["torch"]}, {record["machine"]["threads"]} thread(s) on '
        f'{record["machine"]["cpus"]} CPUs.',
        '',
        '| case | option | ÷ adjoint_ode: median (quartiles) | ÷ direct: median (quartiles) | '
        'peak MiB: option / adjoint_ode / direct | gradient error vs direct |',
        '|---|---|---|---|---|---|',
    ]
    for name, case in record['cases'].items():
        options = case['options']
        turns = {option: found['turns'] for option, found in options.items()}
        for option in ('adjoint_gq', 'adjoint_gq_default'):
            if option not in options:
                continue
            cells = []
            for reference in ('adjoint_ode', 'direct'):
                if reference not in turns:
                    cells.append('—')
                    continue
                middle, lower, upper = paired_ratios(turns, option, reference)
                cells.append(f'{_fmt(middle)} ({_fmt(lower)}–{_fmt(upper)})')
            memory = ' / '.join(
                _mebibytes(options[key]['memory']) if key in options else '—'
                for key in (option, 'adjoint_ode', 'direct')
            )
            rows.append(
                f'| {name} | {option} | {cells[0]} | {cells[1]} | {memory} | '
                f'{options[option]["error"]:.1e} |'
            )
    return '\n'.join(rows)


def main_run(results_dir):
    """The README's main command: how long its committed runs trained."""
    spec = STUDIES['nested_spheres']
    found = results.complete_runs(results_dir, spec.experiment, spec.ablation()).get(
        (2000, 'adjoint_gq'), []
    )
    minutes = [float(np.sum(run['epoch_times'])) / 60 for run in found]
    if not minutes:
        return 'No committed run of this command was found.'
    return (
        f'Its {len(minutes)} committed repeats trained for {min(minutes):.0f} to '
        f'{max(minutes):.0f} minutes each (mean {np.mean(minutes):.0f}; wall time on one '
        'thread of a 2-core CPU machine, beside another run), fewer with more threads.'
    )


def gradient_speed_table(results_dir):
    """The one-step benchmark's whole table as its command prints it, from the record."""
    path = pathlib.Path(results_dir) / 'benchmarks' / 'gradient_speed.json'
    record = json.loads(path.read_text())
    header = (
        f'{"case":<16} {"option":<23} {"params":>9} {"s/step":>9} {"peak MiB":>9} '
        f'{"rel err":>9} {"÷ adj_ode":>9} {"÷ direct":>9}'
    )
    lines = ['```', f'$ {record["command"]}', header, '-' * len(header)]
    for name, case in record['cases'].items():
        options = case['options']
        for option, found in options.items():
            versus_adjoint = (
                f'{found["seconds"] / options["adjoint_ode"]["seconds"]:.3f}'
                if 'adjoint_ode' in options
                else '-'
            )
            lines.append(
                f'{name:<16} {option:<23} {case["parameters"]:>9} {found["seconds"]:>9.4f} '
                f'{found["memory"] / 2**20:>9.1f} {found["error"]:>9.1e} {versus_adjoint:>9} '
                f'{found["seconds"] / options["direct"]["seconds"]:>9.3f}'
            )
    lines += [
        '```',
        '',
        f'({_commit(record)}, torch {record["versions"]["torch"]}, '
        f'{record["machine"]["threads"]} thread.)',
    ]
    return '\n'.join(lines)


def pending(results_dir):
    """The runs of the reduced grids not committed yet (``Grid.pending``), by study."""
    from study.grids import runs as grid_runs
    from study.grids import studies_of

    lines = []
    for name, spec in STUDIES.items():
        grid = EXPERIMENTS[spec.experiment].grids['reduced']
        if not grid.pending:
            continue
        wanted = [
            run
            for run in grid_runs(spec.experiment, 'reduced', spec.flags_of('reduced'), results_dir)
            if any(
                run.folder.relative_to(results_dir).as_posix().startswith(prefix)
                for prefix in grid.pending
            )
        ]
        missing = [
            run.folder.relative_to(results_dir).as_posix()
            for run in wanted
            if not results.is_complete(
                run.folder, EXPERIMENTS[spec.experiment].parse(run.argv[2:]).nepochs
            )
        ]
        if missing and name in dict(studies_of('reduced')):
            lines.append(f'- {NAMES.get(name, name)}: ' + ', '.join(f'`{m}`' for m in missing))
    return '\n'.join(lines) if lines else 'None: every run of the reduced grids is committed.'


#: The record of the training-run benchmark over every workload.
CLIENTS_RECORD = 'clients.json'
#: The records of its longer run of nested spheres alone (half the paper's run, the
#: default against direct backprop and forced passes), oldest first: the run that showed
#: the default's worst miss, and the same run after the planner's changes it led to.
LONG_RUN_RECORDS = ('clients_spheres2000_long.json', 'clients_spheres2000_long_6130825.json')


def _clients_record(results_dir, name=CLIENTS_RECORD):
    from benchmarks import report

    return report.load(pathlib.Path(results_dir) / 'benchmarks' / name)


def clients_output(results_dir, name=CLIENTS_RECORD):
    """Everything the training-run benchmark printed, rebuilt from its record."""
    from benchmarks import clients as client_benchmark

    lines = client_benchmark.output_lines(_clients_record(results_dir, name))
    return '\n'.join(['```', *lines, '```'])


def _long_records(results_dir):
    """The longer runs' records that are committed, oldest first."""
    return [
        _clients_record(results_dir, name)
        for name in LONG_RUN_RECORDS
        if (pathlib.Path(results_dir) / 'benchmarks' / name).exists()
    ]


def clients_targets(results_dir):
    """The default's figures over the training runs beside each aim."""
    from benchmarks import report

    return report.targets(_clients_record(results_dir), _long_records(results_dir))


#: Where the longer run's stretches end (steps): the loss plateau of the nested spheres
#: (the first 100 steps), the model leaving it, and the rest of the run.
LONG_RUN_STRETCHES = (100, 150)


def clients_long_summary(results_dir):
    """One sentence per longer run's record (oldest first): which passes the default ran,
    and its mean step over the fastest pass forced, over the run (with the spread over
    chunks of 20 steps) and over each stretch of :data:`LONG_RUN_STRETCHES`."""
    from benchmarks import report
    from benchmarks.training import chunk_ratios

    sentences = []
    for record in _long_records(results_dir):
        for workload in record['training']:
            found = report.against_fastest(record, workload)
            if found is None:
                continue
            figures, mine, theirs = found
            default = record['training'][workload]['gq default']
            middle, lower, upper = chunk_ratios(mine, theirs)
            ends = [0, *LONG_RUN_STRETCHES, len(mine)]
            stretches = ', '.join(
                f'steps {first + 1}–{last} {sum(mine[first:last]) / sum(theirs[first:last]):.2f}'
                for first, last in zip(ends, ends[1:])
            )
            ran = ', '.join(
                f'{report.pass_name(what)} {count}'
                for what, count in sorted(default['passes'].items(), key=lambda item: -item[1])
            )
            share = 100 * figures['explored'] / max(figures['calls'], 1)
            # Where the default's time over the forced pass's went: the steps that took
            # more than twice the forced pass's same step (exploring, a check of
            # accuracy, or a slower pass kept).
            slow = [(m, t) for m, t in zip(mine, theirs) if m > 2 * t]
            excess = sum(mine) - sum(theirs)
            where = (
                f"; {len(slow)} of its steps took more than twice the forced pass's same "
                f'step, {100 * sum(m - t for m, t in slow) / excess:.0f} % of its time over '
                "the forced pass's"
                if excess > 0
                else ''
            )
            sentences.append(
                f'At {record["commit"][:7]} the default ran {ran} of its {len(mine)} steps '
                f'(exploring {share:.1f} % of its calls), and took '
                f'{figures["versus_fastest"]:.2f} × the {figures["fastest"][3:]} pass '
                f'forced over the run (chunks of 20 steps: median {middle:.2f}, quartiles '
                f'{lower:.2f}–{upper:.2f}); by stretch: {stretches}{where}.'
            )
    return ' '.join(sentences)


def _accuracy_record(results_dir):
    path = pathlib.Path(results_dir) / 'benchmarks' / 'gradient_accuracy.json'
    return json.loads(path.read_text())


def gradient_accuracy_table(results_dir):
    """The accuracy benchmark's table as its command printed it, from the record."""
    from benchmarks import gradient_accuracy

    record = _accuracy_record(results_dir)
    return '\n'.join(
        [
            '```',
            *gradient_accuracy.output_lines(record),
            '```',
            '',
            f'({_commit(record)}, torch {record["versions"]["torch"]}.)',
        ]
    )


def gradient_accuracy_summary(results_dir):
    """Each error-controlled mode's error over the adjoint's, across the problems."""
    record = _accuracy_record(results_dir)
    errors = record['errors']
    sentences = []
    for mode, words in (
        ('gq interp', 'The interpolating pass'),
        ('gq restart', 'Restarting'),
        ('gq default', 'The default'),
        ('gq gtol=0.1', "The paper's rule (`gtol=0.1`)"),
    ):
        ratios = [
            found[mode] / found['adjoint']
            for found in errors.values()
            if found['adjoint'] > 0 and mode in found
        ]
        if not ratios:
            continue
        below = sum(ratio <= 1 for ratio in ratios)
        sentences.append(
            f"{words}: {_fmt(min(ratios), 2)}–{_fmt(max(ratios), 2)} × the adjoint's error "
            f'(at or below it on {below} of {len(ratios)} problems).'
        )
    settled = {}
    for name, ran in record.get('ran', {}).items():
        settled.setdefault(ran.get('gq default') or 'unknown', []).append(name)
    if settled:
        sentences.append(
            'The default settled on '
            + '; '.join(
                f'the {what} pass for {", ".join(names)}'
                for what, names in sorted(settled.items(), key=lambda item: -len(item[1]))
            )
            + '.'
        )
    return ' '.join(sentences)


def clients_first_turn(results_dir):
    """Per workload, the default's first turn of steps (its first plan) against the rest
    of its run, over the fastest single pass forced."""
    from benchmarks import report

    return report.first_turns(_clients_record(results_dir))


def clients_summary(results_dir):
    """The sentences under the training-run table."""
    from benchmarks import report

    return report.paragraph(_clients_record(results_dir))


def _block_table():
    found = {
        'claims': claims,
        'settings': settings,
        'toy_gradient': toy_gradient,
        'ou_cosines': ou_cosines,
        'propagator': propagator,
        'clients': clients,
        'clients_summary': clients_summary,
        'clients_output': clients_output,
        'clients_long_output': lambda d: clients_output(d, LONG_RUN_RECORDS[0]),
        'clients_long_after_output': lambda d: clients_output(d, LONG_RUN_RECORDS[1]),
        'clients_long_summary': clients_long_summary,
        'clients_targets': clients_targets,
        'clients_first_turn': clients_first_turn,
        'gradient_accuracy_table': gradient_accuracy_table,
        'gradient_accuracy_summary': gradient_accuracy_summary,
        'one_step': one_step,
        'main_run': main_run,
        'gradient_speed_table': gradient_speed_table,
        'pending': pending,
    }
    for study in STUDIES_SHOWN:
        found[f'evidence:{study}'] = lambda d, s=study: evidence(s, d)
        found[f'tables:{study}'] = lambda d, s=study: study_tables(s, d)
    return found


#: Block name -> ``function(results_dir) -> markdown``.
BLOCKS = _block_table()


# ---------------------------------------------------------------- check and write


class BlockError(Exception):
    """A document's markers are malformed."""


def blocks_of(text):
    """``[(name, first line, last line)]`` of a document's generated blocks: the lines
    (0-based) of the two markers."""
    lines = text.split('\n')
    found, index = [], 0
    while index < len(lines):
        match = _BEGIN.fullmatch(lines[index].strip())
        if match:
            name = match.group(1)
            end = next(
                (i for i in range(index + 1, len(lines)) if lines[i].strip() == END.format(name)),
                None,
            )
            if end is None:
                raise BlockError(f'line {index + 1}: block {name!r} has no end marker')
            found.append((name, index, end))
            index = end
        index += 1
    return found


def render(text, results_dir, cache=None):
    """The document with every block regenerated."""
    cache = {} if cache is None else cache
    lines = text.split('\n')
    output, last = [], 0
    for name, begin, end in blocks_of(text):
        if name not in BLOCKS:
            raise BlockError(f'line {begin + 1}: no block named {name!r}')
        if name not in cache:
            try:
                cache[name] = BLOCKS[name](results_dir).rstrip('\n')
            except (OSError, ValueError, KeyError, results.ResultsError) as error:
                raise BlockError(
                    f'line {begin + 1}: block {name!r} cannot be computed from '
                    f'{results_dir} ({type(error).__name__}: {error})'
                ) from None
        output += lines[last : begin + 1] + [cache[name]]
        last = end
    output += lines[last:]
    return '\n'.join(output)


def stray_numbers(text):
    """``[(line number, number)]`` of measured-looking numbers outside every block and
    code fence: a decimal point, or × or % after it, unless in :data:`SETTINGS`."""
    inside = set()
    for _, begin, end in blocks_of(text):
        inside.update(range(begin, end + 1))
    found, fenced = [], False
    for number, line in enumerate(text.split('\n')):
        if line.lstrip().startswith('```'):
            fenced = not fenced
            continue
        if fenced or number in inside:
            continue
        prose = re.sub(r'`[^`]*`|\([^)]*\.(png|md|pdf|json)\)|https?://\S+', '', line)
        for match in _STRAY.finditer(prose):
            value, unit = match.group(1), match.group(2)
            if ('.' in value or unit) and value not in SETTINGS:
                found.append((number + 1, match.group(0).strip()))
    return found


def _rendered(results_dir, root):
    """``(name, path, text, wanted)`` for every document, ``wanted`` the text with its
    blocks regenerated (a :class:`BlockError` where its markers are malformed)."""
    cache = {}
    for name in DOCUMENTS:
        path = pathlib.Path(root) / name
        text = path.read_text()
        try:
            wanted = render(text, results_dir, cache)
        except BlockError as error:
            wanted = error
        yield name, path, text, wanted


def check(results_dir, root=ROOT):
    """Problems (strings naming file and line) of every document; empty when all agree."""
    problems = []
    for name, _, text, wanted in _rendered(results_dir, root):
        if isinstance(wanted, BlockError):
            problems.append(f'{name}: {wanted}')
            continue
        if wanted != text:
            have, want = text.split('\n'), wanted.split('\n')
            for number, (old, new) in enumerate(zip(have, want)):
                if old != new:
                    block = next((b for b, s, e in blocks_of(text) if s <= number <= e), 'a block')
                    problems.append(
                        f'{name}:{number + 1}: {block} differs from the results; the '
                        f'files give: {new.strip()[:160]!r}'
                    )
                    break
            else:
                problems.append(f'{name}: a block has another length than the results give')
        for line, value in stray_numbers(text) if DOCUMENTS[name] else ():
            problems.append(
                f'{name}:{line}: the number {value!r} stands outside every generated block'
            )
    return problems


def write(results_dir, root=ROOT):
    """Rewrite every document's blocks; returns the names of the files that changed."""
    changed = []
    # Every document rendered before any is written: a block that cannot be computed
    # leaves every file as it was.
    rendered = list(_rendered(results_dir, root))
    for name, _, _, wanted in rendered:
        if isinstance(wanted, BlockError):
            raise BlockError(f'{name}: {wanted}')
    for name, path, text, wanted in rendered:
        if wanted != text:
            atomic.write_bytes(path, wanted.encode())
            changed.append(name)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m plotting.reproduction', description=__doc__.split('\n\n')[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument('--check', action='store_true', help='exit 1 where a number differs')
    action.add_argument('--write', action='store_true', help='rewrite the generated blocks')
    action.add_argument('--show', metavar='NAME', choices=sorted(BLOCKS), help='print one block')
    parser.add_argument(
        '--results_dir',
        default=str(results.RESULTS_DIR),
        help=f'the runs and records to compute from (default {results.RESULTS_DIR})',
    )
    args = parser.parse_args(argv)
    if not pathlib.Path(args.results_dir).is_dir():
        parser.error(f'--results_dir {args.results_dir} is not a folder')
    if args.show:
        print(BLOCKS[args.show](args.results_dir))
        return 0
    if args.write:
        try:
            changed = write(args.results_dir)
        except BlockError as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
        print(f'rewrote {", ".join(changed)}' if changed else 'every block was up to date')
        return 0
    problems = check(args.results_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(
            f'{len(problems)} problem(s); python -m plotting.reproduction --write rewrites '
            'the generated blocks',
            file=sys.stderr,
        )
        return 1
    print('every generated number agrees with the results')
    return 0


if __name__ == '__main__':
    sys.exit(main())
