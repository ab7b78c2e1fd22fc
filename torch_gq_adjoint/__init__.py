"""Neural ODE gradients by the GQ adjoint (Norcliffe & Deisenroth, TMLR 2023).

Public face:

- :func:`odeint`, :func:`odeint_adjoint`: torchdiffeq's own, re-exported so that a
  user switches between the three ways of backpropagating by renaming one call;
- :func:`odeint_adjoint_gq`: the same solve, gradients by the Gauss–Legendre
  quadrature adjoint;
- the plans of its default ``backward='auto'``: :func:`plans` (what each call site
  measured and chose), :func:`reset_plans`, :func:`set_planning` (``'measure'`` or
  ``'estimate'``) and :func:`planning`;
- the Wong–Zakai pieces for SDEs: :class:`CosineBrownian` (a smooth approximation of
  Brownian motion), :class:`WongZakaiODE` (the ODE an SDE becomes with it) and
  :class:`StratonovichSDE` (the same drift and diffusion handed to torchsde).
"""

from torchdiffeq import odeint, odeint_adjoint

from ._impl.gq_adjoint import odeint_adjoint_gq
from ._impl.planner import CallSitePlan, planning, plans, reset_plans, set_planning
from ._impl.quadrature import MAX_NODES
from ._impl.wong_zakai import (
    CosineBrownian,
    StratonovichSDE,
    WongZakaiODE,
    cosine_brownian_variance,
)

__all__ = [
    'odeint',
    'odeint_adjoint',
    'odeint_adjoint_gq',
    'plans',
    'reset_plans',
    'set_planning',
    'planning',
    'CallSitePlan',
    'MAX_NODES',
    'CosineBrownian',
    'WongZakaiODE',
    'StratonovichSDE',
    'cosine_brownian_variance',
]
#: The library's version (pyproject.toml reads it from here; CHANGELOG.md says what changed).
__version__ = '0.6.0'
