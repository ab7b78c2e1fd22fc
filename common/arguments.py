"""argparse types shared by every command line: each rejects a bad value with a message
that argparse prefixes with the flag's name, then exits with status 2."""

import argparse
import math


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
MAX_EXPERIMENT_NO = (2 ** 32 - 1) // 1000


def experiment_number(text):
    """A repeat number: an integer from 0 to :data:`MAX_EXPERIMENT_NO`."""
    value = _integer_at_least(text, 0, 'non-negative')
    if value > MAX_EXPERIMENT_NO:
        raise argparse.ArgumentTypeError(
            f'must be at most {MAX_EXPERIMENT_NO} (the seed is 1000 × it and must stay below '
            f'2**32); got {text!r}')
    return value
