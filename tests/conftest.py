"""Shared fixtures of the test suite."""

import pathlib
import sys

# Tests run the repository's modules (models, benchmarks, gradient_tests) from a checkout.
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))
