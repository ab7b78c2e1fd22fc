"""The shared command line of the ``make_*_data`` scripts: parse, generate, say where."""

import argparse

from common.arguments import require_writable, write_failures_named
from datasets import DATA_DIR


def make_data(prog, description, generate, written, add_arguments=None, argv=None):
    """Parse ``--data_dir`` (and the script's own flags), generate, print what was written.

    Args:
        prog, description: of the command line.
        generate: ``generate(args)``, writes the files.
        written: ``written(args) -> str``, the files written, for the closing line.
        add_arguments: optional ``add_arguments(parser)`` for the script's own flags.
        argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--data_dir', default=str(DATA_DIR), help=f'default {DATA_DIR}')
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    require_writable(parser, '--data_dir', args.data_dir)
    with write_failures_named(prog, '--data_dir'):
        generate(args)
    print(f'wrote {written(args)}')
