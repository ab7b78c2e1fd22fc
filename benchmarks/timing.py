"""What the speed benchmarks share: the machine flags and timing calls in turns."""

import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time

import torch

import torch_gq_adjoint
from common.arguments import positive_int
from common.devices import add_device_flag, synchronise


def add_machine_flags(parser):
    """Add ``--device`` and ``--threads`` to a benchmark's ``parser``."""
    add_device_flag(parser)
    parser.add_argument(
        '--threads',
        type=positive_int,
        default=None,
        help='torch CPU threads (default: torch default)',
    )


def time_in_turns(calls, repeats, device, turns=None):
    """``{name: (median seconds, result of the warm-up call)}`` for ``calls``
    (``{name: callable with no arguments}``).

    One warm-up call each first; then the calls take turns, repeat by repeat, so that
    drifts of the machine (other load, allocator state) touch all of them alike, the
    order rotated each repeat (:func:`rotated`). Pass a
    dict as ``turns`` to receive every call's seconds, turn by turn (``{name: list}``).
    """
    results = {name: call() for name, call in calls.items()}
    seconds = {name: [] for name in calls}
    for repeat in range(repeats):
        for name in rotated(list(calls), repeat):
            call = calls[name]
            synchronise(device)
            start = time.perf_counter()
            call()
            synchronise(device)
            seconds[name].append(time.perf_counter() - start)
    if turns is not None:
        turns.update(seconds)
    return {name: (statistics.median(seconds[name]), results[name]) for name in calls}


def rotated(names, turn):
    """``names`` starting at entry ``turn`` (modulo their number).

    Modes that take turns in a fixed order do not share the machine alike: a step that
    follows another mode's pays for the allocator and caches that mode left (on the
    spiral of :mod:`benchmarks.workloads`, the same forward took 16.6 ms right after a
    direct-backprop step and 15.3 ms when it came last of six modes, over 200 interleaved
    steps each). Rotating
    the order gives every mode each place in turn.
    """
    if not names:
        return []
    start = turn % len(names)
    return names[start:] + names[:start]


def paired_ratios(turns, name, reference):
    """``(median, lower quartile, upper quartile)`` of ``name``'s seconds over
    ``reference``'s in the same turn (from :func:`time_in_turns`'s ``turns``): the spread
    of a ratio measured side by side, which the ratio of two medians does not show."""
    ratios = sorted(mine / theirs for mine, theirs in zip(turns[name], turns[reference]))
    if len(ratios) < 2:
        return (ratios[0],) * 3
    lower, _, upper = statistics.quantiles(ratios, n=4, method='inclusive')
    return statistics.median(ratios), lower, upper


#: The most calls a warm-up makes while the default's planner explores.
SETTLE_CALLS = 30


def settle_plans(call, limit=SETTLE_CALLS):
    """Call ``call`` until every call site's plan of ``backward='auto'`` has settled (at
    most ``limit`` calls), after forgetting the plans: one-step timings of the default are
    then of its plan (the training runs of ``benchmarks.clients --train`` show what
    planning costs)."""
    torch_gq_adjoint.reset_plans()
    for _ in range(limit):
        call()
        plans = torch_gq_adjoint.plans()
        if plans and all(plan.state in ('settled', 'pinned') for plan in plans):
            return


def record_header(module, device):
    """What every benchmark record starts with: the command, the machine, the versions, the
    commit measured (``''`` outside a git checkout) and whether the library, benchmark or
    test code differed from it (``uncommitted``: the changed files, or an empty list).
    Taken when the run starts: the code that ran, whatever the tree holds by its end."""
    root = pathlib.Path(__file__).resolve().parent.parent

    def git(*arguments):
        try:
            found = subprocess.run(
                ['git', *arguments], capture_output=True, text=True, check=False, cwd=root
            )
        except OSError:
            return ''
        return found.stdout if found.returncode == 0 else ''

    changed = [
        line[3:]
        for line in git('status', '--porcelain', '--untracked-files=no').splitlines()
        if line[3:].endswith('.py')
    ]
    return dict(
        # Quoted as a shell would need it, so the line can be pasted back.
        command=f'python -m {module} {shlex.join(sys.argv[1:])}'.rstrip(),
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor(),
            cpus=os.cpu_count(),
            threads=torch.get_num_threads(),
            device=str(device),
        ),
        versions=dict(python=platform.python_version(), torch=torch.__version__),
        commit=git('rev-parse', 'HEAD').strip(),
        uncommitted=changed,
    )


def add_output_flag(parser, what):
    """Add ``--output FILE`` (``what`` says what is written) to a benchmark's ``parser``;
    :func:`check_output` refuses a bad one before any work."""
    parser.add_argument(
        '--output', type=pathlib.Path, default=None, help=f'also write {what} to this JSON file'
    )


def check_output(parser, path):
    """Refuse, through ``parser``, an ``--output`` that is a folder or whose folder is
    missing or not writable: found only at the end, it would lose the whole run."""
    if path is None:
        return
    if path.is_dir():
        parser.error(f'--output: {path} is a folder; give a file name, e.g. {path / "record.json"}')
    if not path.parent.is_dir():
        parser.error(f'--output: the folder {path.parent} does not exist')
    probe = path.parent / f'.{path.name}.probe'
    try:  # as the record will be written: a file created beside it, then renamed
        probe.touch()
        probe.unlink()
    except OSError as error:
        parser.error(f'--output: cannot write in the folder {path.parent} ({error.strerror})')


def write_record(path, record):
    """Write a benchmark's JSON record whole or not at all (renamed over ``path``)."""
    path = pathlib.Path(path)
    temporary = path.with_suffix(path.suffix + '.partial')
    temporary.write_text(json.dumps(record, indent=1, default=str))
    os.replace(temporary, path)
