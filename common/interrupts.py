"""Ctrl-C while a command is still importing: one line, not a traceback.

A command's own handlers (:mod:`experiments.runner`) take over once it runs; before that,
torch and the other imports take seconds, and an interrupt there would print the import
machinery's traceback. :func:`install` replaces that with one line (the exit status stays
130, as Python gives an interrupted program); ``TORCH_GQ_DEBUG=1`` keeps the traceback.
"""

import os
import sys


def install():
    """Print one line for an uncaught KeyboardInterrupt, if this process is a command
    started with ``python -m`` (never inside another program, such as pytest)."""
    if sys.argv[:1] != ['-m'] or os.environ.get('TORCH_GQ_DEBUG') == '1':
        return
    previous = sys.excepthook

    def one_line(kind, value, trace):
        if issubclass(kind, KeyboardInterrupt):
            print('interrupted while starting; nothing was run', file=sys.stderr)
            return
        previous(kind, value, trace)

    sys.excepthook = one_line
