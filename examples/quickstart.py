"""Train a tiny neural ODE a few steps with each of odeint, odeint_adjoint, odeint_adjoint_gq.

``python -m examples.quickstart [--steps N] [--width W]`` prints the seconds per training
step of each (after one untimed warm-up step, which pays for one-off set-up such as
torch's first calls), that time over direct backprop's, and how far its first gradient is
from direct backprop's. The three calls differ only in the function's name.
"""

import argparse
import time

import torch
from torch import nn

from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq


class VectorField(nn.Module):
    """``dz/dt = MLP([z, t])`` with softplus activations."""

    def __init__(self, dim, width):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, width),
            nn.Softplus(),
            nn.Linear(width, width),
            nn.Softplus(),
            nn.Linear(width, dim),
        )

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(z.shape[0], 1)], dim=-1))


def train(solve, steps, width, seed=0):
    """Fit z(1) = rotation of z(0) for ``steps`` Adam steps, after one untimed warm-up
    step on a model of its own; returns (seconds/step, first grad, final loss)."""
    if steps:
        train(solve, 0, width, seed=seed + 1)  # the warm-up: one step, not timed
    torch.manual_seed(seed)
    func = VectorField(2, width)
    optimiser = torch.optim.Adam(func.parameters(), lr=1e-2)
    y0 = torch.randn(64, 2)
    target = torch.stack([-y0[:, 1], y0[:, 0]], dim=-1)
    t = torch.tensor([0.0, 1.0])
    first_gradient, seconds = None, []
    for _ in range(max(steps, 1)):
        start = time.perf_counter()
        optimiser.zero_grad()
        loss = ((solve(func, y0, t, rtol=1e-3, atol=1e-3)[-1] - target) ** 2).mean()
        loss.backward()
        optimiser.step()
        seconds.append(time.perf_counter() - start)
        if first_gradient is None:
            first_gradient = torch.cat([p.grad.reshape(-1) for p in func.parameters()])
    return sum(seconds) / len(seconds), first_gradient, loss.item()


def _positive_int(text):
    """argparse type: an integer > 0 (the example needs nothing but the library)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}')
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--steps', type=_positive_int, default=20, help='timed training steps (default 20)'
    )
    parser.add_argument('--width', type=_positive_int, default=64, help='hidden width (default 64)')
    args = parser.parse_args(argv)
    solvers = {
        'odeint (direct)': odeint,
        'odeint_adjoint': odeint_adjoint,
        'odeint_adjoint_gq': odeint_adjoint_gq,
    }
    reference = direct_seconds = None
    print(
        f'{"method":<20} {"s/step":>8} {"÷ direct":>9} {"final loss":>11} {"grad rel. error":>16}'
    )
    for name, solve in solvers.items():
        seconds, gradient, loss = train(solve, args.steps, args.width)
        reference = gradient if reference is None else reference
        direct_seconds = seconds if direct_seconds is None else direct_seconds
        error = ((gradient - reference).norm() / reference.norm()).item()
        print(
            f'{name:<20} {seconds:>8.4f} {seconds / direct_seconds:>9.2f} {loss:>11.5f} '
            f'{error:>16.2e}'
        )
    print(
        f"÷ direct: seconds per step over direct backprop's, mean of {args.steps} steps "
        '(below 1: faster). A tiny model on a shared machine moves these by 20 % or more; '
        'python -m benchmarks.clients compares common training scripts side by side.'
    )


if __name__ == '__main__':
    main()
