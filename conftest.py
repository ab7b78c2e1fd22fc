"""Shared fixtures of the test suite."""

import pathlib
import sys

# Tests run the repository's modules (models, benchmarks, gradient_tests) from a checkout.
REPOSITORY = pathlib.Path(__file__).resolve().parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


import pytest  # noqa: E402

from torch_gq_adjoint._impl import notices, planner  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_call_sites():
    """Each test sees the library's once-per-call-site warnings and plans afresh."""
    notices.forget()
    planner.reset_plans()
    planner.set_planning(None)


@pytest.fixture
def estimate_planning():
    """``backward='auto'`` plans by estimate in this test: the passes it takes do not
    depend on timings (the planner's own tests measure)."""
    planner.set_planning('estimate')
    yield
    planner.set_planning(None)
