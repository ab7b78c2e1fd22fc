"""``python -m gradient_tests``: every gradient check, one row each; exit 1 on a failure.

Flags: ``--method M`` and ``--backward B`` (repeatable) keep only those checks.
"""

import argparse
import sys

from gradient_tests.checks import METHOD_SETTINGS, all_checks, run
from torch_gq_adjoint._impl.choice import BACKWARDS

COMPARISONS = ('closed form', 'direct', 't direct')


def _cell(outcome, comparison):
    if comparison not in outcome.errors:
        return f'{"—":>19}'
    error, bound = outcome.errors[comparison]
    return f'{error:>9.1e} ≤ {bound:<7.0e}'


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m gradient_tests', description=__doc__.split('\n\n')[0].strip('`: ')
    )
    parser.add_argument(
        '--method',
        action='append',
        choices=sorted(METHOD_SETTINGS),
        help='only this solver method (repeatable; default all)',
    )
    parser.add_argument(
        '--backward',
        action='append',
        choices=BACKWARDS,
        help='only this backward pass (repeatable; default all)',
    )
    args = parser.parse_args(argv)
    checks = [
        check
        for check in all_checks()
        if (not args.method or check.method in args.method)
        and (not args.backward or check.backward in args.backward)
    ]
    if not checks:
        parser.error(
            'no check has that method and backward pass (the passes other than '
            'auto are checked with dopri5)'
        )
    header = (
        f'{"method":<15}{"problem":<10}{"t grad":<8}{"backward":<14}'
        + ''.join(f'{name:^19}' for name in COMPARISONS)
        + '  result'
    )
    print(header)
    print('-' * len(header))
    failed = []
    for check in checks:
        outcome = run(check)
        if not outcome.passed:
            failed.append(check.name)
        print(
            f'{check.method:<15}{check.problem:<10}{"yes" if check.time_gradients else "no":<8}'
            f'{check.backward:<14}'
            + ''.join(_cell(outcome, name) for name in COMPARISONS)
            + ('  pass' if outcome.passed else '  FAIL'),
            flush=True,
        )
    print(
        f'{len(checks) - len(failed)} of {len(checks)} checks passed'
        + (f'; failed: {", ".join(failed)}' if failed else '')
    )
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
