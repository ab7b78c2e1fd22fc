"""Shared fixtures of the test suite."""

import pathlib
import sys

# Tests run the repository's modules (models, benchmarks, gradient_tests) from a checkout.
REPOSITORY = pathlib.Path(__file__).resolve().parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


import pytest  # noqa: E402

from torch_gq_adjoint._impl import notices  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees the library's once-per-call-site warnings afresh."""
    notices.forget()
