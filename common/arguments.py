"""argparse types shared by every command line: each rejects a bad value with a message
that argparse prefixes with the flag's name, then exits with status 2."""

import argparse
import contextlib
import math
import os
import sys
import traceback


def _integer_at_least(text, minimum, description):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f'must be a {description} integer; got {text!r}')
    return value


def positive_int(text):
    """An integer > 0."""
    return _integer_at_least(text, 1, 'positive')


def non_negative_int(text):
    """An integer >= 0."""
    return _integer_at_least(text, 0, 'non-negative')


def positive_float(text):
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a positive number; got {text!r}') from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a positive number; got {text!r}')
    return value


def quadrature_factor(text):
    """The paper's node-count factor C (``--gtol``): a positive number the library takes
    (at most ``torch_gq_adjoint``'s largest, so that a bad value stops the command before
    any training)."""
    from torch_gq_adjoint._impl.checks import MAX_GTOL

    value = positive_float(text)
    if value > MAX_GTOL:
        raise argparse.ArgumentTypeError(
            f'must be at most {MAX_GTOL:g} (gtol × NFE quadrature nodes; the paper uses '
            f'0.003 to 0.4); got {text!r}'
        )
    return value


#: Solver tolerances outside this range make torchdiffeq's step size underflow (below) or
#: control nothing (above).
TOLERANCE_RANGE = (1e-12, 1.0)


def tolerance(text):
    """A solver tolerance within :data:`TOLERANCE_RANGE`."""
    low, high = TOLERANCE_RANGE
    value = positive_float(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f'must be between {low:g} and {high:g}; got {text!r}')
    return value


def flag(text):
    """0 or 1."""
    if text not in ('0', '1'):
        raise argparse.ArgumentTypeError(f'must be 0 or 1; got {text!r}')
    return int(text)


#: Seeds are 1000 × the repeat number and must stay below 2**32 (numpy's limit).
MAX_EXPERIMENT_NO = (2**32 - 1) // 1000


def experiment_number(text):
    """A repeat number: an integer from 1 (repeats are numbered 1, 2, 3, ... as in the
    paper's code) to :data:`MAX_EXPERIMENT_NO`."""
    value = _integer_at_least(text, 1, 'positive')
    if value > MAX_EXPERIMENT_NO:
        raise argparse.ArgumentTypeError(
            f'must be at most {MAX_EXPERIMENT_NO} (the seed is 1000 × it and must stay below '
            f'2**32); got {text!r}'
        )
    return value


def folder(text):
    """A folder path: non-empty text (an empty one would mean the current folder) that
    names no file, nor a place below one; refused also by commands that never read it."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f'must name a folder; got {text!r}')
    blocking = _blocking_file(text)
    if blocking is not None:
        raise argparse.ArgumentTypeError(f'{blocking} is a file, not a folder; choose a folder')
    return text


def _blocking_file(folder):
    """The existing file at ``folder`` or above it, which stops it being a folder; or None."""
    import pathlib

    path = pathlib.Path(folder)
    existing = next((place for place in (path, *path.parents) if place.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def numbers_as_values(argv):
    """``argv`` with every negative number that follows a ``--flag`` joined to it
    (``--tol -1e-3`` -> ``--tol=-1e-3``).

    argparse reads ``-1e-3`` as an unknown flag (it recognises only plain negative
    numbers such as ``-1`` or ``-0.5`` as values), so the flag would be reported as
    missing its value instead of the value being checked.
    """
    joined = []
    for token in argv:
        previous = joined[-1] if joined else ''
        if (
            token.startswith('-')
            and _is_number(token)
            and previous.startswith('--')
            and '=' not in previous
        ):
            joined[-1] = f'{previous}={token}'
        else:
            joined.append(token)
    return joined


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser that reads negative numbers after a flag as its value
    (:func:`numbers_as_values`), so that their own check names what is wrong."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(numbers_as_values(args), namespace)


def require_writable(parser, flag, folder):
    """Before any work: create ``folder`` if needed and check that a file can be written
    there; otherwise end the command through ``parser`` (one line naming ``flag``, exit
    status 2)."""
    import pathlib
    import tempfile

    blocking = _blocking_file(folder)
    if blocking is not None:
        parser.error(f'argument {flag}: {blocking} is a file, not a folder; choose a folder')
    try:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-check.', suffix='.tmp'):
            pass
    except OSError as error:
        parser.error(
            f'argument {flag}: cannot write into {folder} ({error.strerror or error}); '
            'choose a writable folder'
        )


@contextlib.contextmanager
def write_failures_named(prog, flag):
    """During work: an OSError from writing (a full disk, a folder made read-only since
    :func:`require_writable` checked it) ends the command with one line naming the error
    and ``flag``, exit status 1; ``TORCH_GQ_DEBUG=1`` prints the traceback too. The atomic
    writers (:mod:`common.atomic`) leave no half-written file behind."""
    try:
        yield
    except OSError as error:
        if os.environ.get('TORCH_GQ_DEBUG') == '1':
            traceback.print_exc()
        where = f' {error.filename}' if error.filename else ''
        print(
            f'{prog}: cannot write{where} ({error.strerror or error}); what was written '
            f'before is kept. Free space or choose another {flag}, then run the command again',
            file=sys.stderr,
        )
        raise SystemExit(1) from None
