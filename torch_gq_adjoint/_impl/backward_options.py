"""Options of the backward ``[z, a]`` solves, translated to the solver's time and state.

The backward solves run in ``s = direction · t`` (always increasing) on one flat vector
``[z, a]``; the user wrote ``step_t``, ``jump_t``, ``grid_constructor`` and ``norm`` for
real time and their own state structure, as for torchdiffeq's adjoint. This module maps
them, so that the backward solve steps where torchdiffeq's adjoint would.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from .state import StateLayout

#: A norm of the flat state.
Norm = Callable[[torch.Tensor], torch.Tensor]


def backward_options(adjoint_options: dict[str, Any], direction: float) -> dict[str, Any]:
    """Return a copy of ``adjoint_options`` with the time-like options mapped to ``s``.

    Args:
        adjoint_options: dict, the user's backward options (``norm`` already mapped).
        direction: +1.0 or -1.0, ``s = direction · t``.
    """
    options = dict(adjoint_options)
    for name in ('step_t', 'jump_t'):
        if options.get(name) is not None:
            options[name] = direction * torch.as_tensor(options[name])
    constructor = options.get('grid_constructor')
    if constructor is not None:

        def grid_constructor(func: Any, y0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            # The user's constructor sees the interval's two end points in real time,
            # from t[i] to t[i-1], as under torchdiffeq's adjoint.
            grid = constructor(func, y0, direction * s[[0, -1]])
            return direction * torch.as_tensor(grid, dtype=s.dtype, device=s.device)

        options['grid_constructor'] = grid_constructor
    return options


def _rms_norm(tensor: torch.Tensor) -> torch.Tensor:
    # torchdiffeq's default norm.
    return tensor.abs().pow(2).mean().sqrt()


def backward_norm(
    state_norm: Optional[Callable[..., Any]], adjoint_norm: Any, layout: StateLayout
) -> Norm:
    """The norm of the flat backward state ``[z, a]``, as torchdiffeq's adjoint chooses it.

    By default (and for ``'seminorm'``: the GQ backward state has no parameter part to
    leave out) ``max(norm(z), norm(a))`` with the forward norm: the user's, or
    torchdiffeq's RMS norm, taken per part and maximised for a tuple state. A callable
    ``adjoint_norm`` receives ``(t_placeholder, *z, *a)`` in the user's structure.

    Raises:
        ValueError: ``adjoint_norm`` is neither None, ``'seminorm'`` nor callable.
    """
    size = sum(layout.numels)
    if adjoint_norm is None or adjoint_norm == 'seminorm':
        part_norm = flat_state_norm(state_norm, layout)

        def default_norm(state: torch.Tensor) -> torch.Tensor:
            return torch.maximum(
                torch.as_tensor(part_norm(state[:size])), torch.as_tensor(part_norm(state[size:]))
            )

        return default_norm
    if callable(adjoint_norm):

        def user_adjoint_norm(state: torch.Tensor) -> torch.Tensor:
            z, adjoint = layout.unflatten(state[:size]), layout.unflatten(state[size:])
            placeholder = torch.zeros((), dtype=state.dtype, device=state.device)
            if layout.is_tuple:
                return adjoint_norm((placeholder, *z, *adjoint))
            return adjoint_norm((placeholder, z, adjoint))

        return user_adjoint_norm
    raise ValueError(
        f"adjoint_options['norm'] must be 'seminorm' or a callable; got {adjoint_norm!r}."
    )


def flat_state_norm(state_norm: Optional[Callable[..., Any]], layout: StateLayout) -> Norm:
    """The forward norm (the user's ``state_norm``, or torchdiffeq's default: RMS, its
    maximum over the parts of a tuple) as a function of the flat state."""
    if state_norm is None:

        def part_norm(flat: torch.Tensor) -> torch.Tensor:
            if not layout.is_tuple:
                return _rms_norm(flat)
            return max(_rms_norm(piece) for piece in torch.split(flat, list(layout.numels)))

        return part_norm
    if layout.is_tuple:
        return lambda flat: state_norm(layout.unflatten(flat))
    return state_norm


#: A backward solve's relative tolerance is never below this many machine epsilons of its
#: state's dtype (float32: 1.9e-6): under it the step-size controller chases rounding.
ROUNDING_FLOOR_EPS = 16


def rounding_floor(dtype: torch.dtype) -> float:
    """The least relative tolerance a backward solve in ``dtype`` is given."""
    return ROUNDING_FLOOR_EPS * torch.finfo(dtype).eps


def above_rounding(
    value: Union[float, torch.Tensor], dtype: torch.dtype
) -> Union[float, torch.Tensor]:
    """A flat tolerance (number or tensor) raised to :func:`rounding_floor` where below."""
    floor = rounding_floor(dtype)
    if torch.is_tensor(value):
        return torch.clamp(value, min=floor)
    return max(value, floor)


def flat_tolerance(
    value: Any, layout: StateLayout, like: torch.Tensor
) -> Union[float, torch.Tensor]:
    """A tolerance as a number or a flat ``(n,)`` tensor matching the flat state ``like``.

    torchdiffeq takes one tolerance per part of a tuple state (a tuple, or a tensor of one
    entry per part) and, for a tensor state, a tensor that broadcasts to its shape; both
    are expanded to the flat state here.
    """
    many = torch.is_tensor(value) and value.dim() > 0
    if isinstance(value, (tuple, list)) or (many and layout.is_tuple):
        return torch.cat(
            [
                torch.as_tensor(entry, dtype=like.dtype, device=like.device).expand(numel)
                for entry, numel in zip(value, layout.numels)
            ]
        )
    if torch.is_tensor(value):
        value = value.to(dtype=like.dtype, device=like.device)
        return value.expand(layout.shapes[0]).reshape(-1) if many else value
    return float(value)
