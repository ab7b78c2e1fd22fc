"""The forward solve itself, shared by every recorder (:mod:`.recorders`): the user's
``func`` and state handed to :func:`torchdiffeq.odeint`, with the settings' tolerances,
method, options and events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torchdiffeq

from .record import explain_non_finite

if TYPE_CHECKING:
    from .gq_adjoint import Settings


def solve(
    settings: Settings,
    field: Callable,
    y0: Any,
    t: torch.Tensor,
    params: tuple[torch.Tensor, ...],
) -> Any:
    """:func:`torchdiffeq.odeint` on ``field`` from ``y0`` at ``t`` with the settings.

    Raises:
        FloatingPointError: the step size underflowed and a non-finite value explains it.
    """
    try:
        return torchdiffeq.odeint(
            field,
            y0,
            t,
            rtol=settings.rtol,
            atol=settings.atol,
            method=settings.method,
            options=settings.options,
            event_fn=settings.event_fn,
        )
    except AssertionError as error:
        # torchdiffeq's "underflow in dt": name a non-finite value where there is one.
        if 'underflow' not in str(error):
            raise
        explain_non_finite(settings.func, t[0], y0, params)
        raise


def detached(value: Any) -> Any:
    """``value`` (a tensor, or a tuple or list of them) without its graph."""
    if isinstance(value, (tuple, list)):
        return tuple(part.detach() for part in value)
    return value.detach()
