"""Warnings shown once per place in the user's code, not once per training step.

A training loop calls :func:`odeint_adjoint_gq` thousands of times with the same
function; a fall-back that applies to one call applies to all of them, and saying so
every time buries everything else the run prints. Python's own "once per location"
registry does not help here: the backward pass runs inside the autograd engine, with no
user frame on the stack, and ``warnings.warn_explicit`` keeps no registry.
"""

from __future__ import annotations

import sys
import warnings
from typing import Hashable, Optional

_SHOWN: set[tuple[Hashable, Optional[tuple[str, int]]]] = set()


def call_site(depth: int = 2) -> tuple[str, int]:
    """``(filename, lineno)`` of the caller ``depth`` frames up (the user's call)."""
    frame = sys._getframe(depth)
    return frame.f_code.co_filename, frame.f_lineno


def warn_once(
    message: str,
    location: Optional[tuple[str, int]],
    key: Hashable = None,
    category: type[Warning] = RuntimeWarning,
) -> None:
    """Warn with ``message`` at ``location`` (``(filename, lineno)``), once per process for
    each ``(key, location)`` (``key`` defaults to the message)."""
    identity = (message if key is None else key, location)
    if identity in _SHOWN:
        return
    _SHOWN.add(identity)
    filename, lineno = location if location is not None else ('<unknown>', 0)
    warnings.warn_explicit(message, category, filename, lineno)


def forget() -> None:
    """Show every warning again (tests)."""
    _SHOWN.clear()
