"""Vector fields of the paper's ODE experiments (docs/paper_notes.md §3)."""

import torch
from torch import nn


def mlp(in_features, width, out_features, hidden_layers=2):
    """A multilayer perceptron with softplus activations.

    Args:
        in_features: int, input size.
        width: int, size of every hidden layer.
        out_features: int, output size.
        hidden_layers: int, number of hidden layers (default 2, as the paper).

    Returns:
        ``nn.Sequential``.
    """
    layers = []
    size = in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(size, width), nn.Softplus()]
        size = width
    layers.append(nn.Linear(size, out_features))
    return nn.Sequential(*layers)


class MLPVectorField(nn.Module):
    """``dz/dt = MLP([z, t])`` (or ``MLP(z)`` when ``time_dependent`` is False).

    Args:
        dim: int, state size (last dimension of ``z``).
        width: int, hidden width.
        time_dependent: bool, append ``t`` to the MLP's input (default True).

    Shapes: ``z`` is ``(batch, dim)``; ``t`` a scalar tensor.
    """

    def __init__(self, dim, width, time_dependent=True):
        super().__init__()
        self.time_dependent = time_dependent
        self.net = mlp(dim + int(time_dependent), width, dim)

    def forward(self, t, z):
        if self.time_dependent:
            z = torch.cat([z, t.to(z).expand(*z.shape[:-1], 1)], dim=-1)
        return self.net(z)


class SecondOrderVectorField(nn.Module):
    """``dx/dt = v``, ``dv/dt = MLP([x, v])`` on the state ``[x, v]``.

    Args:
        dim: int, size of ``x`` (and of ``v``), default 1.
        width: int, hidden width.

    Shapes: the state is ``(batch, 2 * dim)``, ``[x, v]`` along the last dimension.
    """

    def __init__(self, width, dim=1):
        super().__init__()
        self.dim = dim
        self.net = mlp(2 * dim, width, dim)

    def forward(self, t, state):
        velocity = state[..., self.dim :]
        return torch.cat([velocity, self.net(state)], dim=-1)


class ConvVectorField(nn.Module):
    """``dz/dt`` for image states: three 3×3 convolutions (padding 1) with softplus.

    Args:
        channels: int, channels of the state (``--state_width``).
        width: int, hidden channels (``--width``).

    Shapes: ``z`` is ``(batch, channels, height, width)``.
    """

    def __init__(self, channels, width):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.Softplus(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.Softplus(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, t, z):
        return self.net(z)
