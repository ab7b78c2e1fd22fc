"""The random number generators left as direct backprop would leave them.

Direct backprop evaluates ``func`` once per solver stage in the forward pass and never in
the backward pass. The backward passes here evaluate it again (the backward solves, the
quadrature nodes, the probes), and a forward whose kept graph did not fit solves twice;
a ``func`` that draws (dropout, noise) would then move the user's generator further than
direct backprop, and a seeded run would differ from the same run with direct backprop.
:func:`untouched` puts the generators back afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The states of the CPU generator and of ``device``'s (CUDA) generator."""
    cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None
    return torch.get_rng_state(), cuda


def restore(device: torch.device, saved: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    """Put back the generators' ``saved`` states (from :func:`states`)."""
    cpu, cuda = saved
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


@contextlib.contextmanager
def untouched(device: torch.device) -> Iterator[None]:
    """Run the block, then put the CPU and ``device``'s generators back as they were."""
    saved = states(device)
    try:
        yield
    finally:
        restore(device, saved)
