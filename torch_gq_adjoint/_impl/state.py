"""One flat vector for the state, whatever shape (or tuple of shapes) the user gave.

The backward pass carries ``[z, a]``, gathers them at quadrature nodes and vectorises
over those nodes; all of that is simpler on one flat vector, so the user's tensors are
flattened on the way in and reshaped on the way out.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union, cast

import torch

#: The state as the user gives it: one tensor or a tuple of tensors.
UserState = Union[torch.Tensor, tuple[torch.Tensor, ...]]


class StateLayout:
    """Shapes of the user's state and the maps between it and one flat vector.

    Args:
        parts: tuple of tensors, the state as the user gave it.
        is_tuple: bool, whether the user gave a tuple (else a single tensor).
    """

    def __init__(self, parts: Sequence[torch.Tensor], is_tuple: bool) -> None:
        self.shapes = tuple(part.shape for part in parts)
        self.numels = tuple(part.numel() for part in parts)
        self.is_tuple = is_tuple

    def check(self, value: Any, what: str) -> None:
        """Raise ``ValueError`` naming ``what`` unless ``value`` has the state's structure
        and shapes (a tensor of ``y0``'s shape, or a tuple of tensors of its parts')."""
        parts = value if self.is_tuple else (value,)
        expected = (
            f'a tuple of {len(self.shapes)} tensors of shapes '
            f'{[tuple(shape) for shape in self.shapes]}'
            if self.is_tuple
            else f'a tensor of shape {tuple(self.shapes[0])}'
        )
        if self.is_tuple and not (
            isinstance(value, (tuple, list)) and len(value) == len(self.shapes)
        ):
            got = (
                f'a {type(value).__name__} of {len(value)}'
                if isinstance(value, (tuple, list))
                else type(value).__name__
            )
            raise ValueError(f'{what} must return {expected} (that of y0); got {got}.')
        for index, (part, shape) in enumerate(zip(parts, self.shapes)):
            if not torch.is_tensor(part) or part.shape != shape:
                got = f'shape {tuple(part.shape)}' if torch.is_tensor(part) else type(part).__name__
                where = f' (part {index})' if self.is_tuple else ''
                raise ValueError(f'{what} must return {expected} (that of y0); got {got}{where}.')

    def flatten(self, state: Any, what: str = 'y') -> torch.Tensor:
        """Concatenate the user's ``state`` (tensor or tuple) into one 1-D tensor.

        Raises:
            ValueError: ``state`` does not have the layout's structure and shapes;
                ``what`` names it in the message.
        """
        parts = state if self.is_tuple else (state,)
        well_formed = isinstance(parts, (tuple, list)) and len(parts) == len(self.shapes)
        if self.is_tuple and not well_formed:
            raise ValueError(f'{what} must be a tuple of {len(self.shapes)} tensors, like y0.')
        for index, (part, shape) in enumerate(zip(parts, self.shapes)):
            if not torch.is_tensor(part) or part.shape != shape:
                got = tuple(part.shape) if torch.is_tensor(part) else type(part).__name__
                where = f'{what}[{index}]' if self.is_tuple else what
                raise ValueError(f'{where} must have shape {tuple(shape)} (that of y0); got {got}.')
        if len(parts) == 1:
            return parts[0].reshape(-1)
        return torch.cat([part.reshape(-1) for part in parts])

    def unflatten(self, flat: torch.Tensor) -> UserState:
        """Split a flat tensor ``(..., n)`` back into the user's structure ``(..., *shape)``."""
        # Shapes are passed as one tuple: ``reshape(*())`` fails for a 0-dim state.
        leading = tuple(flat.shape[:-1])
        if not self.is_tuple:
            return flat.reshape(leading + tuple(self.shapes[0]))
        pieces = torch.split(flat, list(self.numels), dim=-1)
        return tuple(
            piece.reshape(leading + tuple(shape)) for piece, shape in zip(pieces, self.shapes)
        )

    def flatten_series(self, series: UserState) -> torch.Tensor:
        """Concatenate a solution ``(T, *shape)`` (tensor or tuple) into one ``(T, n)`` tensor."""
        parts: Sequence[torch.Tensor] = (
            cast(tuple[torch.Tensor, ...], series)
            if self.is_tuple
            else (cast(torch.Tensor, series),)
        )
        length = parts[0].shape[0]
        return torch.cat([part.reshape(length, -1) for part in parts], dim=-1)


class FlatField:
    """The user's ``func(t, y)`` seen as a map between flat vectors.

    Args:
        func: callable ``func(t, y) -> dy/dt`` in the user's structure.
        layout: :class:`StateLayout` of ``y``.
    """

    def __init__(self, func: Callable[..., Any], layout: StateLayout) -> None:
        self.func = func
        self.layout = layout

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.layout.flatten(self.func(t, self.layout.unflatten(y)), what='func(t, y)')
