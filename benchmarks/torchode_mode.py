"""torchode (Lienen & Günnemann, 2022) as an optional comparator of the clients benchmark.

torchode is a parallel ODE solver for PyTorch that a user might pick instead; it is not
a dependency of the library. Where it is installed (``pip install torchode``),
``python -m benchmarks.clients`` adds a ``torchode`` row: dopri5 with torchode's integral
step-size controller at the workload's tolerances, direct backpropagation through its
steps (``AutoDiffAdjoint``). The workload's state (a tensor or tuple of any shape) is
solved as one problem (torchode's batch of 1), since the workloads' functions may mix
samples; torchode has no event handling, so the bouncing ball reports that as a failure.
"""

import importlib.util

import torch


def available():
    """Whether torchode can be imported."""
    return importlib.util.find_spec('torchode') is not None


def _flat(value):
    parts = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return torch.cat([part.reshape(-1) for part in parts])


def _unflat(flat, like):
    if not isinstance(like, (tuple, list)):
        return flat.reshape(*flat.shape[:-1], *like.shape)
    pieces = torch.split(flat, [part.numel() for part in like], dim=-1)
    return tuple(piece.reshape(*flat.shape[:-1], *part.shape) for piece, part in zip(pieces, like))


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method='dopri5', options=None, event_fn=None):
    """``torchdiffeq.odeint``'s call answered by torchode (dopri5 only, no events).

    Returns the solution at ``t``: ``(len(t), *y0.shape)``, or a tuple for a tuple ``y0``.
    """
    import torchode

    if event_fn is not None:
        raise NotImplementedError('torchode has no event handling')
    if method != 'dopri5':
        raise NotImplementedError(f'method {method!r} (only dopri5 is compared)')

    def field(time, state):  # torchode's batch of one problem: (1,), (1, n)
        return _flat(func(time[0], _unflat(state[0], y0))).unsqueeze(0)

    term = torchode.ODETerm(field)
    solver = torchode.AutoDiffAdjoint(
        torchode.Dopri5(term=term), torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    )
    problem = torchode.InitialValueProblem(y0=_flat(y0).unsqueeze(0), t_eval=t.unsqueeze(0))
    solution = solver.solve(problem)
    return _unflat(solution.ys[0], y0)
