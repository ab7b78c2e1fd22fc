"""One script per paper figure (``python -m plotting.<name>``); reads results through
:mod:`experiments.results`, writes PNG and PDF into ``--plots_dir``: by default the
folder ``figures`` beside the runs it draws (``<results_dir>/figures``), so that a user's
figures never overwrite the report's (``docs/figures``, written only when asked)."""

import pathlib

from common import interrupts

# Ctrl-C while the command imports torch: one line, not a traceback.
interrupts.install()

#: The figures' folder under ``--results_dir`` when no ``--plots_dir`` is given.
FIGURES_FOLDER = 'figures'
#: The help of every plotting command's ``--plots_dir``.
PLOTS_DIR_HELP = (
    f'where the figures go (default: <results_dir>/{FIGURES_FOLDER}, beside the runs; '
    "the report's figures are rebuilt with --plots_dir docs/figures)"
)


def add_plots_dir(parser):
    """Add ``--plots_dir`` (default None: see :func:`plots_dir`) to ``parser``."""
    parser.add_argument('--plots_dir', default=None, help=PLOTS_DIR_HELP)


def plots_dir(args):
    """The folder the figures of parsed ``args`` go to: ``--plots_dir``, else
    ``<results_dir>/figures``."""
    if args.plots_dir is not None:
        return args.plots_dir
    return str(pathlib.Path(args.results_dir) / FIGURES_FOLDER)
