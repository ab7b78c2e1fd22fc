"""The NeuralDE wrapper and the paper's ODE models built around it."""

import torch
from torch import nn

from models.backprop import ADJOINT_OPTIONS, EXTRA_OPTIONS, integrate


class NeuralDE(nn.Module):
    """Solves ``dz/dt = func(t, z)`` with the chosen backprop option and counts evaluations.

    Args:
        func: ``nn.Module`` vector field ``func(t, z)``.
        adjoint_option: one of ``direct``, ``adjoint_ode``, ``adjoint_seminorm``,
            ``adjoint_gq`` (the paper's options), or ``adjoint_gq_propagator``.
        tol: float, rtol = atol of dopri5 (default 1e-3).
        gtol: float, GQ node-count factor (default 0.1).

    Attributes:
        nfe: int, evaluations of ``func`` so far (reset it freely). Under GQ a vectorised
            batch of quadrature nodes counts as one evaluation.
    """

    def __init__(self, func, adjoint_option, tol=1e-3, gtol=0.1):
        super().__init__()
        choices = ADJOINT_OPTIONS + EXTRA_OPTIONS
        if adjoint_option not in choices:
            raise ValueError(
                f'adjoint_option must be one of {", ".join(choices)}; got {adjoint_option!r}'
            )
        self.func = func
        self.adjoint_option = adjoint_option
        self.tol = tol
        self.gtol = gtol
        self.nfe = 0

    def forward(self, y0, t):
        """Solution ``(len(t), *y0.shape)`` at the 1-D times ``t``."""
        return integrate(
            self.adjoint_option, self._counted, y0, t, rtol=self.tol, atol=self.tol, gtol=self.gtol
        )

    @property
    def _counted(self):
        # The solvers call this view; its parameters are exactly those of `func`.
        return Counted(self.func, self)


class Counted(nn.Module):
    """A view of ``func(t, z)`` that adds one to ``owner.nfe`` per call.

    Args:
        func: ``nn.Module`` to call.
        owner: any object with an integer ``nfe`` attribute (kept out of the module tree,
            so that parameters are not found twice).
    """

    def __init__(self, func, owner):
        super().__init__()
        self.func = func
        object.__setattr__(self, '_owner', owner)

    def forward(self, t, z):
        self._owner.nfe += 1
        return self.func(t, z)


def solve_on_union(neural_de, y0, times):
    """Solve once on the union of per-series times and gather each series' own times.

    Args:
        neural_de: :class:`NeuralDE`.
        y0: ``(batch, *state)``.
        times: ``(batch, T)``, each row increasing; rows may differ (irregular series).

    Returns:
        ``(batch, T, *state)``.
    """
    union, inverse = torch.unique(times, sorted=True, return_inverse=True)
    solution = neural_de(y0, union)  # (U, batch, *state)
    batch_index = torch.arange(times.shape[0], device=times.device)[:, None]
    return solution[inverse, batch_index]


class Classifier(nn.Module):
    """``decoder(z(1))`` with ``z(0) = encoder(x)``, solved on ``t = [0, 1]``."""

    def __init__(self, encoder, neural_de, decoder):
        super().__init__()
        self.encoder, self.neural_de, self.decoder = encoder, neural_de, decoder
        self.register_buffer('times', torch.tensor([0.0, 1.0]))

    def forward(self, inputs):
        return self.decoder(self.neural_de(self.encoder(inputs), self.times)[-1])


class Augment(nn.Module):
    """Appends ``aug_dim`` zeros to the last dimension."""

    def __init__(self, aug_dim):
        super().__init__()
        self.aug_dim = aug_dim

    def forward(self, inputs):
        zeros = inputs.new_zeros(*inputs.shape[:-1], self.aug_dim)
        return torch.cat([inputs, zeros], dim=-1)


class FirstCoordinate(nn.Module):
    """Reads the first coordinate of the last dimension, keeping it: ``(..., 1)``."""

    def forward(self, state):
        return state[..., :1]


class SineModel(nn.Module):
    """Second-order ODE on ``[x, v]`` from the given initial state; predicts ``x`` at each time."""

    def __init__(self, neural_de):
        super().__init__()
        self.neural_de = neural_de

    def forward(self, initial, times):
        """``initial (B, 2)``, ``times (B, T)`` -> predicted ``x`` of shape ``(B, T)``."""
        return solve_on_union(self.neural_de, initial, times)[..., 0]


class ImageEncoder(nn.Sequential):
    """Batch norm, ReLU, 3×3 conv to ``state_width`` channels, 2×2 max-pool, ReLU, 3×3 conv.

    The convolutions have no padding, as the original code: a 28 × 28 MNIST image becomes
    a ``state_width`` × 11 × 11 state (see :func:`state_side`).
    """

    def __init__(self, in_channels, state_width):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, state_width, 3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(state_width, state_width, 3),
        )


def state_side(image_side):
    """Side of the encoder's output for an image side (3×3 conv, 2×2 pool, 3×3 conv)."""
    return (image_side - 2) // 2 - 2


class ImageDecoder(nn.Sequential):
    """Flatten, then an MLP with one hidden layer of 50 to ``classes`` logits."""

    def __init__(self, state_numel, classes=10, hidden=50):
        super().__init__(
            nn.Flatten(), nn.Linear(state_numel, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )
