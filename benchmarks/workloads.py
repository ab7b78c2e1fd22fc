"""Neural ODE training steps as people write them, for :mod:`benchmarks.clients`.

Each workload is written the way the common examples write it (torchdiffeq's
``ode_demo``, ``latent_ode`` and ``cnf`` examples, FFJORD's Hutchinson estimator, the
bouncing ball of ``odeint_event``) and takes the ODE solver as an argument, so that one
training step can be run with direct backpropagation, torchdiffeq's adjoint or any mode
of :func:`odeint_adjoint_gq`, all else equal. A workload built with
``dtype=torch.float64`` holds the same parameters and data in double precision: its
gradient with tight tolerances is the reference the others are measured against.

- ``spiral``: torchdiffeq's ``ode_demo``: ``dy/dt = MLP(y³)`` (tanh, width 50) fitted
  to the cubic spiral, batch 20 of 10 consecutive times, dopri5 at torchdiffeq's
  default tolerances (rtol 1e-7, atol 1e-9), mean absolute error.
- ``latent_ode``: torchdiffeq's ``latent_ode``: a recognition RNN (25 hidden) over 100
  noisy observations of 1000 spirals, a 4-D latent state, an ELU MLP (width 20), a
  decoder, the ELBO with a fixed reparameterisation draw; default tolerances.
- ``cnf_exact``: torchdiffeq's ``cnf``: a 2-D continuous normalising flow whose
  weights come from a hypernetwork of t (hidden 32, width 64), the exact trace by
  ``torch.autograd.grad`` inside ``f``, 512 samples of two circles solved from t = 10 to
  0, rtol = atol = 1e-5, negative log-likelihood.
- ``cnf_hutchinson``: an FFJORD-style CNF: MLP 64-64-64 (softplus) on ``[z, t]``, the
  divergence by Hutchinson's estimator with one Gaussian probe (drawn anew, with the
  samples, at every training step), batch 100,
  t from 0 to 1, rtol = atol = 1e-5, negative log-likelihood.
- ``bouncing_ball``: a ball with learnable gravity, drag, restitution and initial
  height, three bounces found by ``torchdiffeq.odeint_event``; the loss is the sum of
  the bounce times and the final speed. Gradients flow through the event times.
- ``spheres2000``, ``sines10``: the paper's nested spheres (width 2000, one output
  time) and sines (width 1000, 10 times) steps of :mod:`benchmarks.gradient_speed`,
  dopri5 at rtol = atol = 1e-3.
"""

import math

import numpy as np
import torch
import torchdiffeq
from torch import nn

WORKLOADS = (
    'spiral',
    'latent_ode',
    'cnf_exact',
    'cnf_hutchinson',
    'bouncing_ball',
    'spheres2000',
    'sines10',
)


class Workload:
    """One training step's model, data and loss.

    Attributes:
        name: str.
        params: list of tensors, everything the step differentiates.
        solver_kwargs: dict of ``rtol``, ``atol``, ``method`` (and ``options``) the
            workload's script passes to the solver.
        train_steps: int, the steps of a whole training run (``benchmarks.clients
            --train``): the example's own count where it is affordable.
        learning_rate: float, Adam's learning rate in that run.
    """

    name = None
    train_steps, learning_rate = 100, 1e-3

    def __init__(self, dtype, device):
        self.dtype, self.device = dtype, device
        self.modules = []

    def _finish(self, *modules):
        """Move the modules to the workload's dtype and device; collect the parameters."""
        self.modules = [module.to(self.device, self.dtype) for module in modules]
        self.params = [param for module in self.modules for param in module.parameters()]

    def _tensor(self, array):
        return torch.as_tensor(np.asarray(array), dtype=self.dtype, device=self.device)

    def loss(self, solve):
        """The step's loss, with ``solve(func, y0, t, **solver_kwargs)`` as the solver."""
        raise NotImplementedError

    def next_batch(self):
        """Draw the next training step's batch, as the workload's script does between
        steps (from the workload's own seeded generator: every copy draws the same
        sequence). The default keeps the batch: full-batch training."""


class Spiral(Workload):
    name = 'spiral'
    # torchdiffeq's ode_demo: 2000 iterations of RMSprop at 1e-3 (Adam here).
    train_steps, learning_rate = 2000, 1e-3
    solver_kwargs = dict(rtol=1e-7, atol=1e-9, method='dopri5')

    def __init__(self, dtype, device):
        super().__init__(dtype, device)
        matrix = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
        times = torch.linspace(0.0, 25.0, 1000, dtype=torch.float64)
        with torch.no_grad():
            truth = torchdiffeq.odeint(
                lambda t, y: (y**3) @ matrix,
                torch.tensor([[2.0, 0.0]], dtype=torch.float64),
                times,
                rtol=1e-10,
                atol=1e-10,
            )
        self._truth = truth
        self._rng = np.random.default_rng(0)
        self.t = self._tensor(times[:10])
        self.next_batch()
        torch.manual_seed(0)
        self.func = _CubicMLP()
        self._finish(self.func)

    def next_batch(self):
        """20 random stretches of 10 consecutive times, as ode_demo's ``get_batch``."""
        starts = self._rng.choice(np.arange(1000 - 10), size=20, replace=False)
        self.y0 = self._tensor(self._truth[starts])  # (20, 1, 2)
        self.targets = self._tensor(torch.stack([self._truth[starts + i] for i in range(10)]))

    def loss(self, solve):
        prediction = solve(self.func, self.y0, self.t, **self.solver_kwargs)
        return (prediction - self.targets).abs().mean()


class _CubicMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))

    def forward(self, t, y):
        return self.net(y**3)


class LatentODE(Workload):
    name = 'latent_ode'
    # torchdiffeq's latent_ode trains 2000 iterations at Adam 1e-2; a tenth of them here.
    train_steps, learning_rate = 200, 1e-2
    solver_kwargs = dict(rtol=1e-7, atol=1e-9, method='dopri5')

    def __init__(self, dtype, device, spirals=1000, observations=100, latent=4):
        super().__init__(dtype, device)
        rng = np.random.default_rng(0)
        # Archimedean spirals r = a + bθ, half of them clockwise, observed on a stretch
        # of 100 of 500 points with Gaussian noise (as torchdiffeq's latent_ode example).
        theta = np.linspace(0.0, 6 * np.pi, 500)
        radius = 0.3 * theta
        clockwise = np.stack([radius * np.cos(theta) + 5, radius * np.sin(theta)], axis=1)
        counter = np.stack(
            [-radius[::-1] * np.cos(theta[::-1]) + 5 - 10, radius[::-1] * np.sin(theta[::-1])],
            axis=1,
        )
        starts = rng.integers(0, 400, size=spirals)
        paths = [
            (clockwise if k % 2 else counter)[start : start + observations]
            for k, start in enumerate(starts)
        ]
        data = np.stack(paths) + 0.3 * rng.standard_normal((spirals, observations, 2))
        self.observed = self._tensor(data)  # (B, T, 2)
        self.t = self._tensor(theta[:observations] / (2 * np.pi) * 2)
        self.noise = self._tensor(rng.standard_normal((spirals, latent)))
        torch.manual_seed(0)
        self.encoder = _RecognitionRNN(latent, 2, 25)
        self.func = _ELUField(latent, 20)
        self.decoder = nn.Sequential(nn.Linear(latent, 20), nn.ReLU(), nn.Linear(20, 2))
        self._finish(self.func, self.encoder, self.decoder)

    def loss(self, solve):
        hidden = torch.zeros(len(self.observed), 25, dtype=self.dtype, device=self.device)
        for step in reversed(range(self.observed.shape[1])):
            out, hidden = self.encoder(self.observed[:, step], hidden)
        mean, log_var = out.chunk(2, dim=-1)
        z0 = mean + self.noise * torch.exp(0.5 * log_var)
        latent = solve(self.func, z0, self.t, **self.solver_kwargs).permute(1, 0, 2)
        prediction = self.decoder(latent)
        noise_log_var = 2 * math.log(0.3)
        log_px = -0.5 * (
            math.log(2 * math.pi)
            + noise_log_var
            + (self.observed - prediction) ** 2 / math.exp(noise_log_var)
        )
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(-1)
        return (-log_px.sum((1, 2)) + kl).mean()


class _RecognitionRNN(nn.Module):
    def __init__(self, latent, observed, hidden):
        super().__init__()
        self.i2h = nn.Linear(observed + hidden, hidden)
        self.h2o = nn.Linear(hidden, 2 * latent)

    def forward(self, x, h):
        h = torch.tanh(self.i2h(torch.cat([x, h], dim=-1)))
        return self.h2o(h), h


class _ELUField(nn.Module):
    def __init__(self, latent, width):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent, width),
            nn.ELU(),
            nn.Linear(width, width),
            nn.ELU(),
            nn.Linear(width, latent),
        )

    def forward(self, t, z):
        return self.net(z)


def _two_circles(count, rng):
    """``count`` points on two noisy concentric circles (radii 1 and 0.5)."""
    angle = rng.uniform(0, 2 * np.pi, count)
    radius = np.where(np.arange(count) % 2 == 0, 1.0, 0.5)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points + 0.06 * rng.standard_normal((count, 2))


class ExactTraceCNF(Workload):
    name = 'cnf_exact'
    # torchdiffeq's cnf example trains 1000 iterations at Adam 1e-3; a fifth here.
    train_steps, learning_rate = 200, 1e-3
    solver_kwargs = dict(rtol=1e-5, atol=1e-5, method='dopri5')

    def __init__(self, dtype, device, samples=512):
        super().__init__(dtype, device)
        self._rng, self._samples = np.random.default_rng(0), samples
        self.next_batch()
        self.t = self._tensor([10.0, 0.0])
        torch.manual_seed(0)
        self.func = _HyperCNF(2, 32, 64)
        self._finish(self.func)

    def next_batch(self):
        """512 new samples of the two circles, as torchdiffeq's cnf example draws them."""
        self.x = self._tensor(_two_circles(self._samples, self._rng))

    def loss(self, solve):
        logp = torch.zeros(len(self.x), 1, dtype=self.dtype, device=self.device)
        z, delta = solve(self.func, (self.x, logp), self.t, **self.solver_kwargs)
        z0, delta0 = z[-1], delta[-1]
        log_base = -0.5 * (z0**2 / 0.1 + math.log(2 * math.pi * 0.1)).sum(-1, keepdim=True)
        return -(log_base - delta0).mean()


class _HyperCNF(nn.Module):
    """torchdiffeq's ``cnf`` example: ``dz/dt = mean_k U_k tanh(W_k z + b_k)`` with
    ``(W, b, U)`` produced by a hypernetwork of t; the exact trace by autograd."""

    def __init__(self, dim, hidden, width):
        super().__init__()
        self.dim, self.width = dim, width
        self.hyper = nn.Sequential(
            nn.Linear(1, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 3 * width * dim),
        )

    def forward(self, t, states):
        z, _ = states
        with torch.enable_grad():
            z.requires_grad_(True)
            params = self.hyper(t.reshape(1, 1).to(z)).reshape(-1)
            block = self.width * self.dim
            weight = params[:block].reshape(self.width, self.dim, 1)
            bias = params[block : block + self.width].reshape(self.width, 1, 1)
            out = params[2 * block : 3 * block].reshape(self.width, 1, self.dim)
            hidden = torch.tanh(z.unsqueeze(0).expand(self.width, -1, -1) @ weight + bias)
            dz = (hidden @ out).mean(0)
            trace = sum(
                torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
                for i in range(self.dim)
            )
        return dz, -trace.reshape(-1, 1)


class HutchinsonCNF(Workload):
    name = 'cnf_hutchinson'
    train_steps, learning_rate = 500, 1e-3
    solver_kwargs = dict(rtol=1e-5, atol=1e-5, method='dopri5')

    def __init__(self, dtype, device, batch=100):
        super().__init__(dtype, device)
        self._rng, self._batch = np.random.default_rng(1), batch
        self.t = self._tensor([0.0, 1.0])
        torch.manual_seed(0)
        self.func = _HutchinsonField(2, 64, None)
        self._finish(self.func)
        self.next_batch()

    def next_batch(self):
        """New samples and a new Gaussian probe, as FFJORD draws them every step (a probe
        held fixed over a training run is one the model learns to fool)."""
        self.x = self._tensor(_two_circles(self._batch, self._rng))
        self.probe = self._tensor(self._rng.standard_normal((self._batch, 2)))
        self.func.probe = self.probe

    def loss(self, solve):
        logp = torch.zeros(len(self.x), 1, dtype=self.dtype, device=self.device)
        z, delta = solve(self.func, (self.x, logp), self.t, **self.solver_kwargs)
        z1, delta1 = z[-1], delta[-1]
        log_base = -0.5 * (z1**2 + math.log(2 * math.pi)).sum(-1, keepdim=True)
        # delta1 = -∫ div f dt, so log p(x) = log p(z1) + ∫ div f dt = log_base - delta1.
        return -(log_base - delta1).mean()


class _HutchinsonField(nn.Module):
    def __init__(self, dim, width, probe):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, width),
            nn.Softplus(),
            nn.Linear(width, width),
            nn.Softplus(),
            nn.Linear(width, width),
            nn.Softplus(),
            nn.Linear(width, dim),
        )
        self.probe = probe

    def forward(self, t, states):
        z, _ = states
        with torch.enable_grad():
            z.requires_grad_(True)
            dz = self.net(torch.cat([z, t.expand(len(z), 1).to(z)], dim=-1))
            (probe_jacobian,) = torch.autograd.grad(dz, z, self.probe, create_graph=True)
            divergence = (probe_jacobian * self.probe).sum(-1, keepdim=True)
        return dz, -divergence


class BouncingBall(Workload):
    name = 'bouncing_ball'
    train_steps, learning_rate = 300, 1e-3
    solver_kwargs = dict(rtol=1e-7, atol=1e-9, method='dopri5')
    bounces = 3

    def __init__(self, dtype, device):
        super().__init__(dtype, device)
        self.func = _Ball()
        self._finish(self.func)

    def loss(self, solve):
        ball = self.func
        state = torch.stack([ball.height, torch.zeros_like(ball.height)])
        time = torch.zeros((), dtype=self.dtype, device=self.device)
        total = 0.0
        for _ in range(self.bounces):
            time, solution = torchdiffeq.odeint_event(
                ball, state, time, event_fn=_ground, odeint_interface=solve, **self.solver_kwargs
            )
            state = solution[-1]
            total = total + time
            # Off the ground by a hair, so that the event does not fire again at once: the
            # event is located to the solver's tolerance, possibly just below the ground.
            state = torch.stack([state[0].abs() + 1e-5, -ball.restitution * state[1]])
        return total + state[1].abs()


def _ground(t, state):
    return state[0]


class _Ball(nn.Module):
    def __init__(self):
        super().__init__()
        self.gravity = nn.Parameter(torch.tensor(9.8))
        self.drag = nn.Parameter(torch.tensor(0.1))
        self.restitution = nn.Parameter(torch.tensor(0.8))
        self.height = nn.Parameter(torch.tensor(10.0))

    def forward(self, t, state):
        velocity = state[1]
        return torch.stack([velocity, -self.gravity - self.drag * velocity])


class _PaperCase(Workload):
    """A case of :mod:`benchmarks.gradient_speed` (the paper's models) as a workload."""

    solver_kwargs = dict(rtol=1e-3, atol=1e-3, method='dopri5')
    case_name = None

    def __init__(self, dtype, device):
        super().__init__(dtype, device)
        from benchmarks.gradient_speed import _Case

        self.case = _Case(self.case_name, device)
        modules = [self.case.func] + ([self.case.decoder] if self.case.decoder is not None else [])
        self._finish(*modules)
        self.y0 = self.case.y0.to(dtype)
        self.t = self.case.t.to(dtype)

    def loss(self, solve):
        return self.case.loss(solve(self.case.func, self.y0, self.t, **self.solver_kwargs))


class Spheres2000(_PaperCase):
    name = case_name = 'spheres2000'
    # The paper's learning rate at width 2000; ten batches of an epoch at batch 200.
    train_steps, learning_rate = 60, 1e-4


class Sines10(_PaperCase):
    name = case_name = 'sines10'
    # Full batch: the paper's 250 epochs are 250 steps, at its width-1000 rate.
    train_steps, learning_rate = 250, 3e-5


_CLASSES = {
    cls.name: cls
    for cls in (Spiral, LatentODE, ExactTraceCNF, HutchinsonCNF, BouncingBall, Spheres2000, Sines10)
}


def build(name, dtype=torch.float32, device='cpu'):
    """The workload ``name`` (one of :data:`WORKLOADS`) in ``dtype`` on ``device``."""
    if name not in _CLASSES:
        raise ValueError(f'workload must be one of {", ".join(WORKLOADS)}; got {name!r}.')
    return _CLASSES[name](dtype, torch.device(device))
