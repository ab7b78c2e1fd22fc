"""What a module ``func`` reads besides its inputs, and whether it changed before the
backward pass.

Every backward pass but direct backprop evaluates ``func`` again. Were a parameter, buffer
or tensor attribute of the module changed between the forward call and ``backward()``
(``optimizer.step()`` too early, an in-place edit, an attribute set anew), those
evaluations would use the new values and give a gradient that belongs to no model, with
no error. A snapshot of each such tensor's identity and version counter, taken after the
forward solve and compared when the backward pass starts, turns that into an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Buffers that a module updates while it evaluates (batch norm's running statistics in
#: training mode), which its outputs do not read then: a second solve through the same
#: module before the first one's backward changes them legitimately.
RUNNING_STATISTICS = frozenset({'running_mean', 'running_var', 'num_batches_tracked'})


@dataclass(frozen=True)
class _Entry:
    module: nn.Module
    name: str
    label: str
    tensor: torch.Tensor
    version: int
    # Registered state (a parameter or buffer) must stay the same object; a plain tensor
    # attribute may be set anew by func itself (a cache of its last input), so only an
    # in-place change of it counts.
    registered: bool


def _version(tensor: torch.Tensor) -> int | None:
    # Inference tensors keep no version counter.
    try:
        return tensor._version
    except RuntimeError:
        return None


class FuncState:
    """The tensors of a module ``func`` (parameters, buffers, tensor attributes) as they
    are now; :meth:`changed` says which one differs later. Empty for a plain function."""

    def __init__(self, func: Any) -> None:
        self.entries: list[_Entry] = []
        if not isinstance(func, nn.Module):
            return
        for prefix, module in func.named_modules():
            registered = [
                *module._parameters.items(),
                *(
                    (name, buffer)
                    for name, buffer in module._buffers.items()
                    if name not in RUNNING_STATISTICS
                ),
            ]
            plain = [
                (name, value) for name, value in vars(module).items() if torch.is_tensor(value)
            ]
            for found, is_registered in ((registered, True), (plain, False)):
                for name, tensor in found:
                    version = None if tensor is None else _version(tensor)
                    if version is not None:
                        label = f'{prefix}.{name}' if prefix else name
                        self.entries.append(
                            _Entry(module, name, label, tensor, version, is_registered)
                        )

    def changed(self) -> str | None:
        """A sentence naming the first tensor that was set anew or changed in place since
        the snapshot, or None."""
        for entry in self.entries:
            current = getattr(entry.module, entry.name, None)
            if entry.registered and current is not entry.tensor:
                return f"func's tensor '{entry.label}' was set anew"
            if _version(entry.tensor) != entry.version:
                return f"func's tensor '{entry.label}' was changed in place"
        return None

    def check(self) -> None:
        """Raise where :meth:`changed` finds a change."""
        change = self.changed()
        if change is not None:
            raise RuntimeError(
                f'odeint_adjoint_gq: {change} between the forward pass and backward(). '
                'The backward pass evaluates func again and would use the new value, a '
                'gradient of no model (direct backprop would use the old one). Call '
                'backward() before changing func (optimizer.step() after backward()), or '
                'solve with torchdiffeq.odeint where func must change in between.'
            )
