"""The Wong–Zakai pieces: the cosine Brownian approximation, the ODE it drives, the hand-over."""

import math

import pytest
import torch
from torch import nn

from torch_gq_adjoint import (
    CosineBrownian,
    StratonovichSDE,
    WongZakaiODE,
    cosine_brownian_variance,
    odeint,
    odeint_adjoint_gq,
)


def test_closed_form_variance_tends_to_elapsed_time():
    t0, t1 = 0.0, 10.0
    for t in (0.5, 3.0, 9.0):
        errors = [abs(cosine_brownian_variance(t, t0, t1, n) - (t - t0)) for n in (10, 100, 1000)]
        assert errors[0] > errors[1] > errors[2]
        assert errors[2] < 0.01


def test_monte_carlo_variance_matches_closed_form():
    generator = torch.Generator().manual_seed(0)
    brownian = CosineBrownian(1.0, 3.0, 10, (40000,), generator=generator, dtype=torch.float64)
    for t in (1.5, 2.2, 3.0):
        empirical = brownian.path(torch.tensor(t, dtype=torch.float64)).var().item()
        assert empirical == pytest.approx(cosine_brownian_variance(t, 1.0, 3.0, 10), rel=0.03)
    assert brownian.path(torch.tensor(1.0, dtype=torch.float64)).abs().max() < 1e-12


def test_fixed_draw_is_deterministic_and_its_derivative_integrates_to_the_path():
    brownian = CosineBrownian(
        0.0, 2.0, 25, (3, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    t = torch.tensor(0.7, dtype=torch.float64)
    assert torch.equal(brownian.derivative(t), brownian.derivative(t.clone()))
    times = torch.linspace(0, 2, 5, dtype=torch.float64)
    integrated = odeint(
        lambda s, w: brownian.derivative(s),
        torch.zeros(3, 2, dtype=torch.float64),
        times,
        rtol=1e-10,
        atol=1e-10,
    )
    for index, time in enumerate(times):
        assert torch.allclose(integrated[index], brownian.path(time), atol=1e-8)
    before = brownian.coefficients.clone()
    brownian.redraw(torch.Generator().manual_seed(2))
    assert not torch.equal(before, brownian.coefficients)


def test_no_cosines_means_no_noise():
    brownian = CosineBrownian(0.0, 1.0, 0, (4, 1))
    assert torch.equal(brownian.derivative(torch.tensor(0.3)), torch.zeros(4, 1))
    ode = WongZakaiODE(_Linear(-0.5), _Linear(10.0), brownian)
    times = torch.linspace(0, 1, 3)
    solution = odeint(ode, torch.ones(4, 1), times, rtol=1e-8, atol=1e-8)
    assert torch.allclose(solution[-1], torch.full((4, 1), math.exp(-0.5)), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match='ncosines must be an integer >= 0'):
        CosineBrownian(0.0, 1.0, -1, (2,))
    with pytest.raises(ValueError, match='t1 must be greater than t0'):
        CosineBrownian(1.0, 1.0, 3, (2,))


class _Linear(nn.Module):
    """``rate * x`` with a trainable rate."""

    def __init__(self, rate):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate, dtype=torch.float64))

    def forward(self, t, x):
        return self.rate * x


def test_wong_zakai_ode_converges_to_the_stratonovich_solution():
    """dX = a X dt + b X ∘ dW has X(t) = X0 exp(a t + b W(t)). The ODE driven by the first
    N cosine terms, solved numerically, approaches that solution on the path W built from
    many more terms of the same draw."""
    a, b, end = -0.3, 0.8, 1.0
    reference = CosineBrownian(
        0.0, end, 4096, (64, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    start = torch.ones(64, 1, dtype=torch.float64)
    target = start * torch.exp(a * end + b * reference.path(torch.tensor(end, dtype=torch.float64)))
    errors = []
    for count in (2, 8, 32, 128):
        truncated = CosineBrownian(0.0, end, count, (64, 1), dtype=torch.float64)
        truncated.coefficients.copy_(reference.coefficients[:count])
        ode = WongZakaiODE(_Linear(a), _Linear(b), truncated)
        times = torch.tensor([0.0, end], dtype=torch.float64)
        solution = odeint(ode, start, times, rtol=1e-9, atol=1e-9)[-1]
        errors.append((solution - target).abs().mean().item())
    assert errors == sorted(errors, reverse=True)
    # The truncated W(1) misses variance ≈ 2 / (π² N), so the error falls like N^(-1/2):
    # 64 times more terms, about 8 times less error.
    assert errors[-1] < 0.2 * errors[0] and errors[-1] < 0.04


def test_gq_gradients_through_the_wong_zakai_ode_match_direct():
    torch.manual_seed(0)
    drift = nn.Sequential(nn.Linear(1, 8), nn.Softplus(), nn.Linear(8, 1)).double()
    diffusion = nn.Sequential(nn.Linear(1, 8), nn.Softplus(), nn.Linear(8, 1)).double()

    class Field(nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, t, x):
            return self.network(x)

    brownian = CosineBrownian(
        0.0, 2.0, 10, (6, 1), generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    ode = WongZakaiODE(Field(drift), Field(diffusion), brownian)
    start = torch.linspace(-1, 1, 6, dtype=torch.float64)[:, None]
    times = torch.linspace(0, 2, 6, dtype=torch.float64)
    params = list(ode.parameters())
    assert len(params) == 8  # the draw is a buffer, not a parameter
    grads = []
    for solve in (odeint, odeint_adjoint_gq):
        extra = {'gtol': 1.0} if solve is odeint_adjoint_gq else {}
        loss = (solve(ode, start, times, rtol=1e-9, atol=1e-9, **extra) ** 2).sum()
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    assert ((grads[0] - grads[1]).norm() / grads[0].norm()).item() < 1e-6


def test_stratonovich_hand_over_to_torchsde():
    # torchsde is the test extra's, not the library's: without it this test is skipped.
    torchsde = pytest.importorskip('torchsde')
    sde = StratonovichSDE(_Linear(-0.5), _Linear(0.0))
    assert (sde.noise_type, sde.sde_type) == ('diagonal', 'stratonovich')
    start = torch.ones(5, 1, dtype=torch.float64)
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    paths = torchsde.sdeint(sde, start, times, method='reversible_heun', dt=0.01)
    # zero diffusion: the ODE's solution
    assert torch.allclose(paths[-1], start * math.exp(-0.5), atol=1e-4)
    noisy = StratonovichSDE(_Linear(0.0), _Linear(0.5))
    paths = torchsde.sdeint(noisy, start.repeat(2000, 1), times, method='reversible_heun', dt=0.01)
    # X = exp(0.5 W(1)) in Stratonovich calculus: E[log X] = 0, Var[log X] = 0.25
    logs = paths[-1].log()
    assert abs(logs.mean().item()) < 0.05 and logs.var().item() == pytest.approx(0.25, rel=0.15)
