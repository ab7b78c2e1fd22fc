"""Validation of the arguments of :func:`odeint_adjoint_gq`, gathered in one place.

Everything here runs before any solve, so that a mistake costs nothing but the error.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, Optional

import torch
from torch import nn

#: Methods of torchdiffeq that the GQ adjoint supports (``tests`` check this list
#: against torchdiffeq's own table, so an upgrade that changes it is noticed).
METHODS = (
    'dopri8',
    'dopri5',
    'bosh3',
    'fehlberg2',
    'adaptive_heun',
    'euler',
    'midpoint',
    'heun2',
    'heun3',
    'rk4',
    'explicit_adams',
    'implicit_adams',
    'fixed_adams',
    'scipy_solver',
)

#: The subset above with adaptive step-size control (they accept ``first_step``).
ADAPTIVE_METHODS = frozenset({'dopri8', 'dopri5', 'bosh3', 'fehlberg2', 'adaptive_heun'})

#: The subset that steps on a fixed grid (``step_size`` or ``grid_constructor``) and
#: interpolates between grid points; the GQ backward pass reads their grid itself.
GRID_METHODS = frozenset(
    {
        'euler',
        'midpoint',
        'heun2',
        'heun3',
        'rk4',
        'explicit_adams',
        'implicit_adams',
        'fixed_adams',
    }
)

#: The loosest forward ``rtol`` counted as tight: where ``'auto'`` considers the checkpoint
#: (whose error follows the forward solve's) and the interpolating pass refines the
#: forward's dense output (whose steps are then short enough for it to gain).
TIGHT_RTOL = 1e-5


def tight_enough(rtol: Any) -> bool:
    """Whether the forward solve's ``rtol`` (number, tensor or tuple) is at most
    :data:`TIGHT_RTOL` everywhere."""
    values = rtol if isinstance(rtol, (tuple, list)) else (rtol,)
    return all(float(torch.as_tensor(value).max()) <= TIGHT_RTOL for value in values)


#: Methods whose ``rtol``/``atol`` drive step-size control (scipy's solvers included).
TOLERANCE_METHODS = ADAPTIVE_METHODS | {'scipy_solver'}


def check_func_and_params(func: Any, adjoint_params: Any) -> tuple[torch.Tensor, ...]:
    """Return the tuple of tensors whose gradients the GQ adjoint computes.

    Raises:
        TypeError: ``func`` is not callable, or is not an ``nn.Module`` and no
            ``adjoint_params`` were given, or ``adjoint_params`` holds a non-tensor.
    """
    if not callable(func):
        raise TypeError(f'func must be callable as func(t, y); got {type(func).__name__}.')
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise TypeError(
                'func must be an nn.Module so that its parameters can be found; otherwise pass '
                'the tensors to differentiate as adjoint_params (adjoint_params=() for none).'
            )
        adjoint_params = tuple(func.parameters())
    else:
        if torch.is_tensor(adjoint_params) or not isinstance(adjoint_params, Iterable):
            raise TypeError(
                'adjoint_params must be an iterable of tensors (e.g. tuple(model.parameters()), '
                f'or () for none); got {type(adjoint_params).__name__}.'
            )
        adjoint_params = tuple(adjoint_params)
        for index, param in enumerate(adjoint_params):
            if not torch.is_tensor(param):
                raise TypeError(
                    f'adjoint_params[{index}] must be a torch.Tensor; got {type(param).__name__}.'
                )
    for index, param in enumerate(adjoint_params):
        if param.device.type == 'meta':
            raise ValueError(
                f'parameter {index} of func is on the meta device (it holds no values); '
                'materialise the model first, e.g. model.to_empty(device="cpu") and load '
                'its weights.'
            )
    # Parameters that do not require grad need no integral at all; a tensor named twice
    # is one parameter (its gradient would otherwise be counted once per mention).
    found, seen = [], set()
    for param in adjoint_params:
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            found.append(param)
    return tuple(found)


def check_state(y0: Any) -> tuple[tuple[torch.Tensor, ...], bool]:
    """Return ``y0`` as a tuple of tensors and whether it was given as a tuple.

    Raises:
        TypeError: ``y0`` is not a tensor or a non-empty tuple of tensors, or is not
            float32 or float64.
        ValueError: the tensors of a tuple ``y0`` are on different devices or dtypes, or
            are meta tensors.
    """
    is_tuple = isinstance(y0, (tuple, list))
    parts = tuple(y0) if is_tuple else (y0,)
    if is_tuple and not parts:
        raise TypeError('y0 must be a tensor or a non-empty tuple of tensors; got an empty tuple.')
    for index, part in enumerate(parts):
        name = f'y0[{index}]' if is_tuple else 'y0'
        if not torch.is_tensor(part):
            raise TypeError(f'{name} must be a torch.Tensor; got {type(part).__name__}.')
        if part.dtype not in (torch.float32, torch.float64):
            # float16/bfloat16 pass torch's floating-point check but underflow the step
            # size control of every adaptive method within a few steps.
            raise TypeError(
                f'{name} must be a float32 or float64 tensor; got dtype '
                f'{part.dtype}. Convert it, e.g. y0.float().'
            )
        if part.device.type == 'meta':
            raise ValueError(
                f'{name} is a meta tensor (no data); give a tensor on a real '
                'device, e.g. cpu or cuda.'
            )
    for index, part in enumerate(parts):
        if part.numel() == 0:
            name = f'y0[{index}]' if is_tuple else 'y0'
            raise ValueError(
                f'{name} has no entries (shape {tuple(part.shape)}); the state must hold at '
                'least one number.'
            )
    first = parts[0]
    for index, part in enumerate(parts[1:], start=1):
        if part.device != first.device or part.dtype != first.dtype:
            raise ValueError(
                f'y0[{index}] is {part.dtype} on {part.device} but y0[0] is '
                f'{first.dtype} on {first.device}; all parts of y0 must match.'
            )
    return parts, is_tuple


def check_finite_state(parts: tuple[torch.Tensor, ...], is_tuple: bool) -> None:
    """Check that every entry of the initial state is finite (one host sync).

    Raises:
        ValueError: ``y0`` (or ``y0[i]``) holds NaN or inf.
    """
    for index, part in enumerate(parts):
        if not torch.isfinite(part.detach()).all():
            name = f'y0[{index}]' if is_tuple else 'y0'
            raise ValueError(f'{name} must hold finite values only; it holds NaN or inf.')


def check_tolerance(name: str, value: Any, method: Optional[str]) -> None:
    """Check a tolerance (``rtol``, ``atol``, ``adjoint_rtol`` or ``adjoint_atol``).

    A tolerance is a real number or a tensor (torchdiffeq also takes one per tuple part),
    finite and non-negative. For methods with step-size control (:data:`TOLERANCE_METHODS`)
    an absolute tolerance must be positive: with ``atol = 0`` any state entry that is zero
    makes the error ratio infinite and the solver stalls ("underflow in dt").

    Raises:
        TypeError: not a number, a tensor or a tuple/list of them.
        ValueError: negative, NaN or infinite entries, or a zero absolute tolerance.
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for entry in values:
        if torch.is_tensor(entry):
            if entry.requires_grad:
                raise ValueError(f'{name} must not require grad.')
            entry = entry.detach()
            finite = bool(torch.isfinite(entry).all())
            smallest = float(entry.min()) if entry.numel() else 0.0
        elif isinstance(entry, numbers.Real) and not isinstance(entry, bool):
            finite = math.isfinite(entry)
            smallest = float(entry)
        else:
            raise TypeError(
                f'{name} must be a non-negative number or tensor; got {type(entry).__name__}.'
            )
        if not finite or smallest < 0:
            raise ValueError(f'{name} must be finite and non-negative; got {value!r}.')
        if name.endswith('atol') and method in TOLERANCE_METHODS and smallest == 0:
            raise ValueError(
                f'{name} must be positive for method {method!r} (a zero absolute '
                'tolerance stalls the step-size control where the state is 0); '
                f'got {value!r}.'
            )


def check_tolerance_shape(
    name: str, value: Any, parts: tuple[torch.Tensor, ...], is_tuple: bool
) -> None:
    """Check that a forward tolerance (``rtol`` or ``atol``, already checked by
    :func:`check_tolerance`) fits the state as torchdiffeq applies it: for a tensor
    ``y0``, a number or a tensor that broadcasts to ``y0``'s shape; for a tuple ``y0``, a
    number or one entry per part (each a number, or a tensor that broadcasts to the
    part's entries, flattened), so that a mismatch is named before the solve starts.

    Raises:
        ValueError: the tolerance does not fit the state.
    """
    if isinstance(value, numbers.Real) or (torch.is_tensor(value) and value.dim() == 0):
        return
    if not is_tuple:
        if not torch.is_tensor(value):
            raise ValueError(
                f'{name}: one tolerance per part is for a tuple y0; y0 is one tensor of shape '
                f'{tuple(parts[0].shape)}: give a number or a tensor that broadcasts to it.'
            )
        if not _broadcasts(value.shape, parts[0].shape):
            raise ValueError(
                f'{name} of shape {tuple(value.shape)} does not broadcast to y0 of shape '
                f'{tuple(parts[0].shape)}.'
            )
        return
    entries = tuple(value)
    if len(entries) != len(parts):
        raise ValueError(
            f'{name} must be a number or one tolerance per part of y0 ({len(parts)} parts); '
            f'got {len(entries)}.'
        )
    for number, (entry, part) in enumerate(zip(entries, parts)):
        if torch.is_tensor(entry) and not _broadcasts(entry.shape, (part.numel(),)):
            raise ValueError(
                f'{name}[{number}] of shape {tuple(entry.shape)} does not broadcast to the '
                f'{part.numel()} entries of y0[{number}].'
            )


def _broadcasts(shape: Any, target: Any) -> bool:
    try:
        return tuple(torch.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except RuntimeError:
        return False


def check_event_fn(event_fn: Any, t: torch.Tensor) -> None:
    """Check the event function and that ``t`` holds the two entries event mode needs.

    Raises:
        TypeError: ``event_fn`` is not callable.
        ValueError: ``len(t) != 2`` (torchdiffeq reads only ``t[0]`` and the direction).
    """
    if event_fn is None:
        return
    if not callable(event_fn):
        raise TypeError(
            f'event_fn must be callable as event_fn(t, y); got {type(event_fn).__name__}.'
        )
    if t.numel() != 2:
        raise ValueError(
            f'with event_fn, t must hold exactly 2 times (the start, and any '
            f'later or earlier time for the direction); got {t.numel()}.'
        )


def check_times(t: Any, device: torch.device) -> None:
    """Check that ``t`` is a 1-D, floating, strictly monotonic tensor on ``device``.

    Raises:
        TypeError: ``t`` is not a floating point tensor.
        ValueError: ``t`` is not 1-D, is empty, is not strictly monotonic, holds
            non-finite values, or is not on ``device`` (the device of ``y0``).
    """
    if not torch.is_tensor(t):
        raise TypeError(f't must be a 1-D torch.Tensor of times; got {type(t).__name__}.')
    if not t.is_floating_point():
        raise TypeError(f't must be a floating point tensor; got dtype {t.dtype}.')
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f't must be a non-empty 1-D tensor; got shape {tuple(t.shape)}.')
    if t.device != device:
        raise ValueError(f't is on {t.device} but y0 is on {device}; put both on one device.')
    values = t.detach()
    if not torch.isfinite(values).all():
        raise ValueError('t must hold finite values only.')
    if t.numel() > 1:
        steps = values[1:] - values[:-1]
        if not ((steps > 0).all() or (steps < 0).all()):
            raise ValueError(
                't must be strictly increasing or strictly decreasing '
                '(no repeated or out-of-order times).'
            )


#: The largest ``gtol``: gtol × NFE nodes, far beyond what any solve needs, and a count
#: that stays a number.
MAX_GTOL = 1e4


def check_gtol(gtol: Any) -> Optional[float]:
    """Return ``gtol`` as a float (or None) after checking it is a positive finite number.

    Raises:
        TypeError: ``gtol`` is neither None nor a real number.
        ValueError: ``gtol`` is not positive and finite, or above :data:`MAX_GTOL`.
    """
    if gtol is None:
        return None
    if isinstance(gtol, bool) or not isinstance(gtol, numbers.Real):
        raise TypeError(
            'gtol must be None (error-controlled quadrature) or a positive finite '
            f"number (the paper's C); got {type(gtol).__name__}."
        )
    gtol = float(gtol)
    if not (math.isfinite(gtol) and gtol > 0):
        raise ValueError(f'gtol must be a positive finite number; got {gtol}.')
    if gtol > MAX_GTOL:
        raise ValueError(
            f'gtol must be at most {MAX_GTOL:g}: it asks for gtol × NFE quadrature nodes, and '
            f'the paper uses 0.003 to 0.4; got {gtol:g}.'
        )
    return gtol


def check_method(name: str, method: Optional[str]) -> None:
    """Check that ``method`` (argument ``name``) is None or a known torchdiffeq method.

    Raises:
        ValueError: an unknown method name.
    """
    if method is not None and method not in METHODS:
        raise ValueError(
            f'{name} must be one of {", ".join(METHODS)} (or None for dopri5); got {method!r}.'
        )


def check_options(name: str, options: Any) -> dict[str, Any]:
    """Return a copy of the options dict ``options`` (argument ``name``), ``{}`` for None.

    Raises:
        TypeError: ``options`` is neither None nor a dict.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f'{name} must be a dict or None; got {type(options).__name__}.')
    step_size = options.get('step_size')
    if step_size is not None:
        value = (
            float(torch.as_tensor(step_size).reshape(-1)[0])
            if (torch.is_tensor(step_size) or isinstance(step_size, numbers.Real))
            else None
        )
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"{name}['step_size'] must be a positive finite number (the "
                f'length of a fixed-grid step); got {step_size!r}.'
            )
    # (adjoint_options' norm may also be 'seminorm'; backward_options checks it.)
    for key in ('grid_constructor',) if name == 'adjoint_options' else ('grid_constructor', 'norm'):
        value = options.get(key)
        if value is not None and not callable(value):
            what = 'func(func, y0, t) -> grid' if key == 'grid_constructor' else 'norm(tensor)'
            raise TypeError(f"{name}['{key}'] must be callable as {what}; got {value!r}.")
    return dict(options)
