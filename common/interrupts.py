"""Ctrl-C in a command outside its own handlers (while it imports, or in a command
without them): one line, not a traceback.

A command's own handlers (:mod:`experiments.runner`) take over once it runs; before that,
torch and the other imports take seconds, and an interrupt there would print the import
machinery's traceback. :func:`install` replaces that with one line (the exit status stays
130, as Python gives an interrupted program); ``TORCH_GQ_DEBUG=1`` keeps the traceback.
"""

import os
import signal
import sys


def _interrupted(error):
    """Whether ``error`` is a KeyboardInterrupt or was raised while handling one."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__context__
    return False


def install():
    """Print one line for an uncaught KeyboardInterrupt, if this process is a command
    started with ``python -m`` (never inside another program, such as pytest)."""
    if sys.argv[:1] != ['-m'] or os.environ.get('TORCH_GQ_DEBUG') == '1':
        return
    previous = sys.excepthook
    received = []

    def note_and_interrupt(number, frame):
        # Remembered: an interrupt that breaks a module half-imported can surface later
        # as another error (numpy's RecursionError), with no trace of the interrupt.
        received.append(number)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_interrupt)

    def one_line(kind, value, trace):
        if not received and not _interrupted(value):
            previous(kind, value, trace)
            return
        print('interrupted; no file is left half-written', file=sys.stderr)
        # End as an interrupted program does (status 130 to the shell), also where the
        # interrupt broke a module half-imported and another error followed it.
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)

    sys.excepthook = one_line
