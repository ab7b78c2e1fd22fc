"""The gradient tests: every way the library computes a gradient, against closed forms
and direct backprop.

``python -m gradient_tests`` runs them all and prints one row per check (its errors,
their bounds, pass or fail), exiting 1 if any fails; ``python -m pytest gradient_tests``
runs the same checks as tests. :mod:`gradient_tests.problems` holds the problems, which
the accuracy benchmark shares.
"""

from common import interrupts

# As a command: Ctrl-C prints one line, not a traceback, and a closed pipe (``| head``)
# ends it quietly.
interrupts.install()
