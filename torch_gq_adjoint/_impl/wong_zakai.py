"""Training Stratonovich SDEs as ODEs, by the Wong–Zakai theorem (Norcliffe & Deisenroth 2023).

The Stratonovich SDE ``dX = f(t, X) dt + g(t, X) ∘ dW`` (diagonal noise) is the limit of
the ODEs ``dx/dt = f(t, x) + g(t, x) ξ(t)`` driven by smooth approximations ``ξ`` of the
white noise ``dW/dt``. Here ``ξ`` is the derivative of the Karhunen–Loève (cosine)
expansion of Brownian motion on ``[t0, t1]`` truncated to ``ncosines`` terms:

    W(t) ≈ sqrt(2/c) Σ_{n=1..N} ε_n c / ((n - ½)π) · sin((n - ½)π (t - t0) / c),
    ξ(t) = sqrt(2/c) Σ_{n=1..N} ε_n cos((n - ½)π (t - t0) / c),    c = t1 - t0,

with ``ε_n ~ N(0, 1)`` drawn once per sample path and held fixed while that path is solved
forwards and backwards. The ODE trains with :func:`odeint_adjoint_gq` (or any ODE
option); :class:`StratonovichSDE` hands the same ``f`` and ``g`` to torchsde for sampling.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn


class CosineBrownian(nn.Module):
    """A smooth approximation of Brownian motion on ``[t0, t1]``, one draw per sample path.

    Args:
        t0, t1: floats, the time interval (``t1 > t0``).
        ncosines: int >= 0, number of cosine terms ``N``; 0 means no noise (``ξ = 0``).
        shape: tuple, shape of the noise, e.g. ``(paths, state_dim)`` (diagonal noise:
            one independent Brownian motion per entry).
        generator: optional ``torch.Generator`` for the draw.
        device, dtype: of the coefficients (default CPU, float32).

    The coefficients ``ε`` (shape ``(N, *shape)``) are a buffer: fixed until :meth:`redraw`.
    """

    # Buffers (registered in __init__), declared for the type checker.
    frequencies: torch.Tensor
    coefficients: torch.Tensor

    def __init__(
        self,
        t0: float,
        t1: float,
        ncosines: int,
        shape: Sequence[int],
        generator: Optional[torch.Generator] = None,
        device: Union[torch.device, str, None] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not (isinstance(ncosines, int) and ncosines >= 0):
            raise ValueError(f'ncosines must be an integer >= 0; got {ncosines!r}')
        if not t1 > t0:
            raise ValueError(f't1 must be greater than t0; got t0={t0}, t1={t1}')
        self.t0, self.length, self.ncosines = float(t0), float(t1 - t0), ncosines
        self.shape = tuple(shape)
        # (n - 1/2) π / c for n = 1..N
        frequencies = (torch.arange(ncosines, dtype=dtype, device=device) + 0.5) * math.pi
        self.register_buffer('frequencies', frequencies / self.length)
        self.register_buffer(
            'coefficients', torch.empty(ncosines, *self.shape, dtype=dtype, device=device)
        )
        self.redraw(generator)

    def redraw(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw new coefficients ``ε ~ N(0, 1)`` (a new set of sample paths)."""
        noise = torch.randn(
            self.coefficients.shape,
            generator=generator,
            dtype=self.coefficients.dtype,
            device='cpu',
        )
        self.coefficients.copy_(noise.to(self.coefficients.device))

    def _contract(self, weights: torch.Tensor) -> torch.Tensor:
        # Σ_n weights_n ε_n as one tensordot over the term dimension.
        return torch.tensordot(weights, self.coefficients, dims=1) * math.sqrt(2 / self.length)

    def derivative(self, t: Union[torch.Tensor, float]) -> torch.Tensor:
        """``ξ(t) = dW/dt`` of shape ``shape`` at the scalar time ``t``."""
        if self.ncosines == 0:
            return self.coefficients.new_zeros(self.shape)
        return self._contract(torch.cos(self.frequencies * (t - self.t0)))

    def path(self, t: Union[torch.Tensor, float]) -> torch.Tensor:
        """``W(t)`` of shape ``shape`` at the scalar time ``t`` (``W(t0) = 0``)."""
        if self.ncosines == 0:
            return self.coefficients.new_zeros(self.shape)
        return self._contract(torch.sin(self.frequencies * (t - self.t0)) / self.frequencies)


def cosine_brownian_variance(t: float, t0: float, t1: float, ncosines: int) -> float:
    """Closed-form variance of the ``ncosines``-term approximation ``W(t)``; tends to
    ``t - t0`` as ``ncosines`` grows.

    Returns:
        float.
    """
    length = t1 - t0
    total = 0.0
    for n in range(1, ncosines + 1):
        frequency = (n - 0.5) * math.pi / length
        total += (math.sin(frequency * (t - t0)) / frequency) ** 2
    return 2.0 / length * total


class WongZakaiODE(nn.Module):
    """The ODE ``dx/dt = drift(t, x) + diffusion(t, x) · ξ(t)`` of one batch of sample paths.

    Args:
        drift: ``nn.Module``, ``drift(t, x)`` with ``x``'s shape.
        diffusion: ``nn.Module``, ``diffusion(t, x)`` with ``x``'s shape (diagonal noise).
        brownian: :class:`CosineBrownian` whose ``shape`` is ``x``'s shape.

    Its parameters are those of ``drift`` and ``diffusion`` (the noise draw is a buffer),
    so it can be passed to :func:`odeint_adjoint_gq` directly.
    """

    def __init__(self, drift: nn.Module, diffusion: nn.Module, brownian: CosineBrownian) -> None:
        super().__init__()
        self.drift, self.diffusion, self.brownian = drift, diffusion, brownian

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.drift(t, x) + self.diffusion(t, x) * self.brownian.derivative(t)


class StratonovichSDE(nn.Module):
    """The same ``drift`` and ``diffusion`` as a torchsde SDE: diagonal noise, Stratonovich.

    Use with ``torchsde.sdeint(sde, y0, ts, method='reversible_heun', dt=0.01)`` or
    ``torchsde.sdeint_adjoint(..., adjoint_method='adjoint_reversible_heun')``; ``y0`` is
    ``(batch, state_dim)``.

    Args:
        drift, diffusion: ``nn.Module``s ``fn(t, y)`` (as for :class:`WongZakaiODE`).
    """

    noise_type = 'diagonal'
    sde_type = 'stratonovich'

    def __init__(self, drift: nn.Module, diffusion: nn.Module) -> None:
        super().__init__()
        self.drift, self.diffusion = drift, diffusion

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Drift."""
        return self.drift(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Diagonal diffusion, ``y``'s shape."""
        return self.diffusion(t, y)
