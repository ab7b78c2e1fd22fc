"""The Ornstein–Uhlenbeck model (docs/paper_notes.md §4): drift and diffusion MLPs on ``[x, t]``,
trained as a Wong–Zakai ODE or through torchsde, always sampled with torchsde to validate."""

import torch
import torchsde
from torch import nn

from models.backprop import ADJOINT_OPTIONS, integrate
from models.neural_de import Counted
from models.vector_fields import MLPVectorField
from torch_gq_adjoint import CosineBrownian, StratonovichSDE, WongZakaiODE

SDE_OPTIONS = ('sde_direct', 'sde_adjoint')
#: Step of torchsde's reversible Heun solves (docs/paper_notes.md §2).
SDE_STEP = 0.01


class OUModel(nn.Module):
    """Sample paths of a learned 1-D Stratonovich SDE from given initial conditions.

    Args:
        width: int, hidden width of the drift and diffusion MLPs.
        option: an ODE option (trained through the Wong–Zakai ODE; ``adjoint_gq`` in the
            paper) or ``sde_direct`` / ``sde_adjoint`` (torchsde, reversible Heun).
        times: 1-D tensor of observation times.
        paths: int, sample paths per initial condition.
        ncosines: int >= 0, cosine terms of the Brownian approximation (ODE options).
        tol, gtol: ODE tolerances and GQ node-count factor.

    ``forward(initial (B, 1))`` returns paths ``(B, T, paths)``. In eval mode it always
    samples with torchsde.
    """

    def __init__(self, width, option, times, paths, ncosines=10, tol=1e-3, gtol=0.1):
        super().__init__()
        if option not in ADJOINT_OPTIONS + SDE_OPTIONS:
            raise ValueError(
                f'option must be one of {", ".join(ADJOINT_OPTIONS + SDE_OPTIONS)}; got {option!r}'
            )
        self.drift = MLPVectorField(1, width)
        self.diffusion = MLPVectorField(1, width)
        self.option, self.paths, self.ncosines = option, paths, ncosines
        self.tol, self.gtol = tol, gtol
        self.register_buffer('times', times)
        self.nfe = 0  # drift evaluations

    def _sde(self):
        return StratonovichSDE(Counted(self.drift, self), self.diffusion)

    def forward(self, initial):
        batch = initial.shape[0]
        start = initial.repeat_interleave(self.paths, dim=0)  # (B * paths, 1)
        if self.training and self.option in ADJOINT_OPTIONS:
            brownian = CosineBrownian(
                float(self.times[0]),
                float(self.times[-1]),
                self.ncosines,
                start.shape,
                device=start.device,
                dtype=start.dtype,
            )
            field = WongZakaiODE(Counted(self.drift, self), self.diffusion, brownian)
            solution = integrate(
                self.option, field, start, self.times, rtol=self.tol, atol=self.tol, gtol=self.gtol
            )
        else:
            solve = (
                torchsde.sdeint_adjoint
                if (self.training and self.option == 'sde_adjoint')
                else torchsde.sdeint
            )
            extra = (
                {'adjoint_method': 'adjoint_reversible_heun'}
                if solve is torchsde.sdeint_adjoint
                else {}
            )
            # The Brownian motion's entropy comes from torch's generator: with torchsde's
            # default (fresh entropy from the operating system) no seed reproduces a run,
            # a resumed run or a figure.
            entropy = int(torch.randint(0, 2**31 - 1, ()).item())
            brownian = torchsde.BrownianInterval(
                float(self.times[0]),
                float(self.times[-1]),
                start.shape,
                dtype=start.dtype,
                device=start.device,
                entropy=entropy,
            )
            solution = solve(
                self._sde(),
                start,
                self.times,
                method='reversible_heun',
                dt=SDE_STEP,
                bm=brownian,
                **extra,
            )
        # (T, B * paths, 1) -> (B, T, paths)
        return solution.reshape(len(self.times), batch, self.paths).permute(1, 0, 2)


def sample_paths(model, initial):
    """Paths sampled with torchsde whatever ``model.option`` is, without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(initial)
    finally:
        model.train(was_training)
