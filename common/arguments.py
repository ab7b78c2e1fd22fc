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


def flag(text):
    """0 or 1."""
    if text not in ('0', '1'):
        raise argparse.ArgumentTypeError(f'must be 0 or 1; got {text!r}')
    return int(text)
