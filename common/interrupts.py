"""Ctrl-C and SIGTERM in a command outside its own handlers (while it imports, or in a
command without them): one line, not a traceback.

SIGTERM (what ``kill``, ``timeout`` and SLURM send) is raised as :class:`Terminated`, a
KeyboardInterrupt, so that every handler of Ctrl-C serves it too and nothing is left
half-written; the exit status says which signal came (130 for SIGINT, 143 for SIGTERM,
as the shell reports a program the signal ended). A command's own handlers
(:mod:`experiments.runner`) take over once it runs; before that, torch and the other
imports take seconds, and an interrupt there would print the import machinery's
traceback. :func:`install` replaces that with one line; ``TORCH_GQ_DEBUG=1`` keeps the
traceback.
"""

import os
import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def raise_interrupt(number, frame):
    """Signal handler: :class:`Terminated` for SIGTERM, KeyboardInterrupt otherwise."""
    if number == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def _interrupt_of(error):
    """The KeyboardInterrupt ``error`` is, or was raised while handling; None if none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__context__
    return None


def signal_of(error):
    """The signal behind the interrupt ``error`` (SIGTERM for :class:`Terminated`)."""
    return signal.SIGTERM if isinstance(_interrupt_of(error), Terminated) else signal.SIGINT


def exit_status(error):
    """The exit status of a command the interrupt ``error`` stopped: 143 for SIGTERM, 130
    for SIGINT (128 + the signal's number, as the shell reports it)."""
    return 128 + signal_of(error)


#: Signals the handler of :func:`install` received (numbers), in order.
_RECEIVED = []


def raise_if_received():
    """Raise the interrupt again if one was received and then swallowed (a module that
    catches every exception while it is imported can do that): a command checks before
    its long work, so that Ctrl-C during its imports is never lost."""
    if _RECEIVED:
        raise Terminated if _RECEIVED[-1] == signal.SIGTERM else KeyboardInterrupt


def install():
    """Print one line for an uncaught KeyboardInterrupt, or SIGTERM, if this process is a
    command started with ``python -m`` (never inside another program, such as pytest)."""
    if sys.argv[:1] != ['-m'] or os.environ.get('TORCH_GQ_DEBUG') == '1':
        return
    # Output piped into a reader that stops early (``| head``): end quietly, as other
    # command-line tools do, instead of a BrokenPipeError's traceback. The files a command
    # writes are written atomically, so nothing is left half-written.
    if hasattr(signal, 'SIGPIPE'):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    previous = sys.excepthook
    received = _RECEIVED

    def note_and_interrupt(number, frame):
        # Remembered: an interrupt that breaks a module half-imported can surface later
        # as another error (numpy's RecursionError), with no trace of the interrupt.
        received.append(number)
        raise_interrupt(number, frame)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, note_and_interrupt)

    def one_line(kind, value, trace):
        if not received and _interrupt_of(value) is None:
            previous(kind, value, trace)
            return
        print('interrupted; no file is left half-written', file=sys.stderr)
        # End as a program the signal stopped does (status 130 or 143 to the shell), also
        # where the interrupt broke a module half-imported and another error followed it.
        number = received[-1] if received else signal_of(value)
        sys.stderr.flush()
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    sys.excepthook = one_line
