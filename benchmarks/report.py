"""The README's speed table, computed from a committed run of ``benchmarks.clients``.

``python -m benchmarks.report`` prints the table's rows from
``results/benchmarks/clients.json`` (``--record`` for another file; ``--figure`` also
draws the one-step timings' memory against seconds), so that every figure the README
quotes is one this run measured; ``tests/research/test_docs.py`` checks
that the README holds exactly these rows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics

from benchmarks.training import CHUNK, FORCED, chunk_ratios, exploring, mode_of

#: The file types ``--figure`` may be written as.
FIGURE_SUFFIXES = ('.png', '.pdf', '.svg')
RECORD = pathlib.Path(__file__).resolve().parent.parent / 'results' / 'benchmarks' / 'clients.json'
HEADER = (
    '| workload | steps | the default ran | ÷ direct over the run: mean (chunks: median, '
    'quartiles) | ÷ the fastest single pass | one step ÷ adjoint | gradient error: plan / '
    'adjoint |'
)
LABELS = {
    'spiral': "spiral fit (torchdiffeq's ode_demo), 10 times",
    'latent_ode': 'latent ODE, 100 times, batch 1000',
    'cnf_exact': 'CNF, exact trace by autograd',
    'cnf_hutchinson': 'FFJORD-style CNF, Hutchinson trace',
    'bouncing_ball': 'bouncing ball, 3 events (`odeint_event`)',
    'spheres2000': "nested spheres, width 2000 (the paper's)",
    'sines10': "sines, width 1000, 10 times (the paper's)",
}


def load(path=RECORD):
    """The JSON record ``benchmarks.clients --train --output`` wrote."""
    return json.loads(pathlib.Path(path).read_text())


def summary(record, name):
    """The figures of one workload's row (a dict), or None where a mode it needs failed."""
    one_step, trained = record['one_step'].get(name, {}), record['training'].get(name, {})
    default, direct = trained.get('gq default', {}), trained.get('direct', {})
    if 'seconds' not in default or 'seconds' not in direct:
        return None
    means = {
        mode: statistics.fmean(run['seconds']) for mode, run in trained.items() if 'seconds' in run
    }
    forced = {mode: means[mode] for mode in FORCED if mode in means}
    fastest = min(forced, key=forced.get) if forced else None
    plan = max(default['passes'], key=default['passes'].get)
    explored, calls = exploring(default.get('plans', []))
    return dict(
        steps=len(default['seconds']),
        plan=plan,
        explored=explored,
        calls=calls,
        versus_direct=means['gq default'] / means['direct'],
        chunks=chunk_ratios(default['seconds'], direct['seconds']),
        fastest=fastest,
        versus_fastest=None if fastest is None else means['gq default'] / forced[fastest],
        versus_adjoint=one_step['gq default']['seconds'] / one_step['adjoint']['seconds'],
        plan_error=one_step.get(mode_of(plan), {}).get('error'),
        adjoint_error=one_step['adjoint']['error'],
    )


def rows(record):
    """The README table's rows, one per workload of the record."""
    found = []
    for name in record['training']:
        figures = summary(record, name)
        if figures is None:
            continue
        middle, lower, upper = figures['chunks']
        share = 100 * figures['explored'] / max(figures['calls'], 1)
        versus_fastest = (
            'n/a'
            if figures['fastest'] is None
            else f'{figures["versus_fastest"]:.2f} ({figures["fastest"][3:]})'
        )
        error = 'n/a' if figures['plan_error'] is None else f'{figures["plan_error"]:.1e}'
        found.append(
            f'| {LABELS.get(name, name)} | {figures["steps"]} | {figures["plan"]} '
            f'(exploring {share:.1f} % of calls) | {figures["versus_direct"]:.2f} '
            f'({middle:.2f}, {lower:.2f}–{upper:.2f}) | {versus_fastest} | '
            f'{figures["versus_adjoint"]:.2f} | {error} / {figures["adjoint_error"]:.1e} |'
        )
    return found


def _span(values, digits=2):
    low, high = min(values), max(values)
    return (
        f'{low:.{digits}f}'
        if f'{low:.{digits}f}' == f'{high:.{digits}f}'
        else (f'{low:.{digits}f}–{high:.{digits}f}')
    )


def paragraph(record):
    """The README's sentences under the table, every figure from the record."""
    found = {name: summary(record, name) for name in record['training']}
    found = {name: figures for name, figures in found.items() if figures is not None}
    shares = [100 * f['explored'] / max(f['calls'], 1) for f in found.values()]
    fastest = [f['versus_fastest'] for f in found.values() if f['versus_fastest'] is not None]
    by_plan = {}
    for name, figures in found.items():
        by_plan.setdefault(figures['plan'], []).append(name)
    parts = [
        f'Over whole runs the default takes {_span(fastest)} × the fastest single pass '
        f'forced for the whole run, exploring {_span(shares, 1)} % of the calls.'
    ]
    for plan, names in sorted(by_plan.items(), key=lambda item: -len(item[1])):
        ratios = [found[name]['versus_direct'] for name in names]
        medians = [found[name]['chunks'][0] for name in names]
        labels = ', '.join(LABELS.get(name, name).split(',')[0] for name in names)
        plural = 's' if len(names) > 1 else ''
        parts.append(
            f'It settles on {pass_name(plan)} on {len(names)} workload{plural} ({labels}), '
            f"at {_span(ratios)} × direct backprop's mean step (chunk medians {_span(medians)})."
        )
    extra = []
    for name in found:
        steps = record['one_step'][name]
        default, direct = steps['gq default'].get('memory'), steps['direct'].get('memory')
        if default is not None and direct is not None:
            extra.append((default - direct) / 2**20)
    if extra:
        above = [value for value in extra if value > 0]
        parts.append(
            "In one step its peak memory is at or below direct backprop's on "
            f'{len(extra) - len(above)} workloads'
            + (f' and {_span(above, 1)} MiB above it on {len(above)}' if above else '')
            + '.'
        )
    return ' '.join(parts)


#: The default's aims over a whole training run, per workload: its mean step at most this
#: many times direct backprop's.
VERSUS_DIRECT = {
    'spiral': 1.1,
    'latent_ode': 1.1,
    'cnf_exact': 1.1,
    'cnf_hutchinson': 1.1,
    'bouncing_ball': 1.2,
    'spheres2000': 0.95,
    'sines10': 1.5,
}
#: ... at most this many times the fastest single pass of the adjoint's accuracy ...
VERSUS_FASTEST = 1.05
#: ... with a gradient error at most this many times the adjoint's ...
VERSUS_ADJOINT_ERROR = 2.0


def _met(value, bound):
    return 'yes' if value <= bound else '**no**'


def targets(record, longer=()):
    """A markdown table: per workload, the default's figures beside each aim (mean step
    ÷ direct over the run, ÷ the fastest single pass, gradient error ÷ the adjoint's,
    extra peak memory of one step over direct backprop's) and whether it was met.

    Args:
        record: the record of the run over every workload.
        longer: records of longer runs of single workloads; each adds its rows, the
            workload named with its steps and the record's commit, below the main run's.
    """
    lines = [
        '| workload | ÷ direct (aim) | met | ÷ fastest single pass (aim '
        f"{VERSUS_FASTEST:g}) | met | error ÷ adjoint's (aim {VERSUS_ADJOINT_ERROR:g}) | met | "
        "one step's peak memory − direct's, MiB (aim 0) | met |",
        '|---|---|---|---|---|---|---|---|---|',
    ]
    runs = [(record, name, False) for name in record['training']]
    runs += [(extra, name, True) for extra in longer for name in extra['training']]
    for source, name, is_longer in runs:
        figures = summary(source, name)
        if figures is None:
            continue
        label = LABELS.get(name, name)
        if is_longer:  # a longer run's rows name its commit: several may be of one workload
            label += f', {figures["steps"]} steps, at {source["commit"][:7]}'
        bound = VERSUS_DIRECT.get(name)
        direct = f'{figures["versus_direct"]:.2f} ({"—" if bound is None else f"{bound:g}"})'
        cells = [label, direct]
        cells.append('—' if bound is None else _met(figures['versus_direct'], bound))
        fastest = figures['versus_fastest']
        cells += (
            ['—', '—']
            if fastest is None
            else [
                f'{fastest:.2f}',
                _met(fastest, VERSUS_FASTEST),
            ]
        )
        error = figures['plan_error']
        if error is None:
            cells += ['—', '—']
        else:
            ratio = error / figures['adjoint_error']
            cells += [f'{ratio:.2f}', _met(ratio, VERSUS_ADJOINT_ERROR)]
        steps = source['one_step'][name]
        default, direct = steps['gq default'].get('memory'), steps['direct'].get('memory')
        if default is None or direct is None:
            cells += ['—', '—']
        else:
            extra = (default - direct) / 2**20
            cells += [f'{extra + 0.0:+.1f}' if round(extra, 1) else '0.0', _met(extra, 0.0)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def against_fastest(record, name):
    """``(figures, default's seconds, fastest forced pass's seconds)`` of one workload's
    training run (``figures`` from :func:`summary`), or None where it has no forced pass."""
    figures = summary(record, name)
    if figures is None or figures['fastest'] is None:
        return None
    trained = record['training'][name]
    return figures, trained['gq default']['seconds'], trained[figures['fastest']]['seconds']


#: The share of a run within which the default's first turn of exploring should fall.
FIRST_TURN_SHARE = VERSUS_FASTEST - 1


def first_turn(record, name, chunk=CHUNK):
    """Where the default's time over the fastest single pass forced went: its first
    ``chunk`` steps (the first turn, where its first plan explores and checks) against
    the rest of the run. None where the workload has no forced pass or its run is no
    longer than one turn.

    Returns:
        dict with ``fastest`` (the forced mode), ``run``, ``first`` and ``rest`` (the
        default's mean step over the forced pass's over the whole run, its first turn
        and the steps after it), ``rest_chunks`` (median and quartiles of that ratio
        over the later turns), ``excess`` (seconds over the forced pass, whole run),
        ``first_excess`` (the same over the first turn), ``first_steps`` (that in the
        forced pass's mean steps) and ``break_even`` (the run's length in steps from
        which the first turn's excess is at most :data:`FIRST_TURN_SHARE` of the forced
        pass's run, the rest running at the forced pass's speed; None where the first
        turn cost nothing).
    """
    found = against_fastest(record, name)
    if found is None or len(found[1]) <= chunk:
        return None
    figures, mine, theirs = found
    first_excess = sum(mine[:chunk]) - sum(theirs[:chunk])
    first_steps = first_excess / statistics.fmean(theirs)
    return dict(
        steps=figures['steps'],
        fastest=figures['fastest'],
        run=figures['versus_fastest'],
        first=sum(mine[:chunk]) / sum(theirs[:chunk]),
        rest=sum(mine[chunk:]) / sum(theirs[chunk:]),
        rest_chunks=chunk_ratios(mine[chunk:], theirs[chunk:], chunk),
        excess=sum(mine) - sum(theirs),
        first_excess=first_excess,
        first_steps=first_steps,
        break_even=first_steps / FIRST_TURN_SHARE if first_excess > 0 else None,
    )


def first_turns(record, chunk=CHUNK):
    """A markdown table of :func:`first_turn` per workload of ``record``."""
    lines = [
        '| workload (steps) | fastest single pass | default ÷ it: run | first '
        f'{chunk} steps | after them (chunks: median, quartiles) | first {chunk} steps over '
        "it: seconds (share of the run's) | in its mean steps | within "
        f'{100 * FIRST_TURN_SHARE:.0f} % from (steps) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name in record['training']:
        found = first_turn(record, name, chunk)
        if found is None:
            continue
        middle, lower, upper = found['rest_chunks']
        share = (
            f' ({100 * found["first_excess"] / found["excess"]:.0f} %)'
            if found['excess'] > 0 and found['first_excess'] > 0
            else ''
        )
        even = '—' if found['break_even'] is None else f'{found["break_even"]:.0f}'
        lines.append(
            f'| {LABELS.get(name, name)} ({found["steps"]}) | {found["fastest"][3:]} | '
            f'{found["run"]:.2f} | {found["first"]:.2f} | {found["rest"]:.2f} '
            f'({middle:.2f}, {lower:.2f}–{upper:.2f}) | {found["first_excess"] + 0.0:.2f}{share} | '
            f'{found["first_steps"]:.1f} | {even} |'
        )
    return '\n'.join(lines)


def pass_name(plan):
    """A pass as prose: ``'paper'`` is the paper's rule (``info['backward']``)."""
    return "the paper's rule" if plan == 'paper' else f'the {plan} pass'


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.report', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument('--record', type=pathlib.Path, default=RECORD, help='the JSON record')
    parser.add_argument(
        '--figure',
        type=pathlib.Path,
        default=None,
        help="also draw the single steps' peak memory against seconds into this PNG file",
    )
    args = parser.parse_args(argv)
    if not args.record.is_file():
        parser.error(
            f'--record: no file {args.record} (write one with benchmarks.clients --output)'
        )
    if args.figure is not None:
        if args.figure.is_dir():
            parser.error(f'--figure: {args.figure} is a folder; give a file name, e.g. memory.png')
        if args.figure.suffix.lower() not in FIGURE_SUFFIXES:
            parser.error(
                f'--figure: {args.figure} must end in {", ".join(FIGURE_SUFFIXES)}; '
                f'got {args.figure.suffix or "no suffix"!r}'
            )
        if not args.figure.parent.is_dir():
            parser.error(f'--figure: the folder {args.figure.parent} does not exist')
        if not os.access(args.figure.parent, os.W_OK):
            parser.error(f'--figure: the folder {args.figure.parent} is not writable')
    record = load(args.record)
    print(HEADER)
    print('|' + '---|' * HEADER.count(' |'))
    for row in rows(record):
        print(row)
    if args.figure is not None:
        from benchmarks.memory_time import draw

        draw(record['one_step'], args.figure)


if __name__ == '__main__':
    main()
