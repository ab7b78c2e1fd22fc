"""``python -m experiments.results complete FOLDER [-- -m experiments.NAME FLAG ...]``:
exit 0 if the run in FOLDER finished (with those settings and epochs, where the run's
command follows ``--``), else 1, saying why on stderr (``--quiet``: the status alone).
The results layout itself is :mod:`study.results`.
"""

import argparse
import pathlib
import sys

from study.grids import EXPERIMENTS
from study.results import ResultsError, differences, is_complete, read_summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m experiments.results', description='Ask about runs in the results layout.'
    )
    commands = parser.add_subparsers(dest='command', required=True)
    complete = commands.add_parser(
        'complete',
        help="exit 0 if the run in FOLDER finished; with the run's command "
        'after --, only if it finished with those settings and epochs',
    )
    complete.add_argument('folder')
    complete.add_argument(
        '--quiet', action='store_true', help='print nothing (for scripts): the exit status says it'
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index('--') + 1 :] if '--' in argv else []
    args = parser.parse_args(argv[: argv.index('--')] if '--' in argv else argv)

    def answer(status, reason):
        if not args.quiet:
            print(reason, file=sys.stdout if status == 0 else sys.stderr)
        return status

    folder = pathlib.Path(args.folder)
    # The command after -- first: a wrong one is a usage error whatever the folder holds.
    spec = None
    if command:
        if len(command) >= 2 and command[0] == '-m':
            spec = next((e for e in EXPERIMENTS.values() if e.module == command[1]), None)
        if spec is None:
            print(
                f'python -m experiments.results: the command after -- must be -m and an '
                f'experiment module (e.g. -m experiments.g1d ...); got {" ".join(command)!r}',
                file=sys.stderr,
            )
            return 2
    try:
        if not folder.exists():
            return answer(1, f'not complete: {folder} does not exist')
        if not folder.is_dir():
            return answer(1, f'not complete: {folder} is a file, not a run folder')
        if not command:
            if is_complete(folder):
                return answer(0, f'complete: {folder}')
            return answer(1, f'not complete: {folder} holds no finished run')
        wanted = spec.parse(command[2:])
        summary = read_summary(folder)
        if summary is None:
            return answer(1, f'not complete: {folder} holds no summary')
        differing = differences(summary.get('arguments', {}), wanted)
        if differing:
            changes = ', '.join(
                f'--{name} {old} there, {new} asked' for name, (old, new) in differing.items()
            )
            return answer(1, f'not complete with these settings: {folder} ({changes})')
        if is_complete(folder, wanted.nepochs):
            return answer(0, f'complete: {folder} ({wanted.nepochs} epochs)')
        done = summary.get('epochs_done')
        return answer(
            1, f'not complete: {folder} holds {done} epochs of the {wanted.nepochs} asked'
        )
    except ResultsError as error:
        print(f'python -m experiments.results: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
