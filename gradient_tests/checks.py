"""The gradient checks, as data: which solver, problem, backward pass and bounds.

A :class:`Check` solves one problem of :data:`gradient_tests.problems.PROBLEMS` (float64,
four output times on [0, 1]) with :func:`torch_gq_adjoint.odeint_adjoint_gq` and compares
its gradients (of ``y0``, every parameter and, when asked, ``t``) with the closed-form
solution's and with direct backprop's (torchdiffeq's ``odeint`` through the same solver).
The checks cover every torchdiffeq method under ``backward='auto'`` with ``gtol=1``, and
every backward pass under dopri5.

Bounds are absolute, on the largest entry of the difference. Direct backprop's time
gradient differentiates the discretisation (step grid, interpolation), so ``t`` is held
to a looser bound against it than the other gradients.
"""

from dataclasses import dataclass

import torch

from gradient_tests.problems import PROBLEMS, exact_gradients, gradients
from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl.choice import BACKWARDS

#: method -> (solver arguments, bound against the closed form, against direct backprop,
#: on ``t`` against direct backprop)
METHOD_SETTINGS = {
    'dopri5': (dict(rtol=1e-10, atol=1e-10), 1e-7, 3e-7, 1e-5),
    'dopri8': (dict(rtol=1e-10, atol=1e-10), 1e-4, 2e-4, 3e-3),
    'bosh3': (dict(rtol=1e-8, atol=1e-8), 1e-3, 1e-3, 6e-2),
    'adaptive_heun': (dict(rtol=1e-6, atol=1e-6), 1e-4, 2e-4, 3e-2),
    'euler': (dict(options=dict(step_size=1e-3)), 2e-2, 3e-2, 5e-2),
    'midpoint': (dict(options=dict(step_size=1e-3)), 2e-5, 3e-5, 5e-3),
    'rk4': (dict(options=dict(step_size=2e-3)), 5e-5, 6e-5, 1e-2),
    'explicit_adams': (dict(options=dict(step_size=1e-3)), 2e-5, 2e-5, 3e-2),
    'implicit_adams': (dict(options=dict(step_size=1e-3)), 2e-5, 2e-5, 2e-2),
    'fixed_adams': (dict(options=dict(step_size=1e-3)), 2e-5, 2e-5, 2e-2),
    'heun2': (dict(options=dict(step_size=1e-3)), 2e-5, 3e-5, 5e-3),
    'heun3': (dict(options=dict(step_size=1e-3)), 2e-5, 3e-5, 5e-3),
    'fehlberg2': (dict(rtol=1e-8, atol=1e-8), 1e-4, 2e-4, 3e-2),
    'scipy_solver': (dict(rtol=1e-10, atol=1e-10, options=dict(solver='RK45')), 1e-6, 2e-6, 1e-4),
}

#: Methods that direct backprop cannot differentiate (scipy solves outside autograd).
NOT_DIFFERENTIABLE = frozenset({'scipy_solver'})

#: The initial states of every check: two samples of the 3-dimensional problems.
Y0 = ((1.0, -0.5, 0.3), (0.2, 0.4, -1.0))


@dataclass(frozen=True)
class Check:
    """One gradient check: ``method`` on ``problem``, through ``backward``, with the
    gradient of ``t`` too if ``time_gradients``."""

    method: str
    problem: str
    time_gradients: bool
    backward: str = 'auto'

    @property
    def name(self):
        """A short identifier: ``dopri5-linear-t-auto``."""
        return '-'.join(
            (self.method, self.problem, 't' if self.time_gradients else 'no_t', self.backward)
        )


@dataclass
class Outcome:
    """What one check measured: ``errors`` maps a comparison to ``(error, bound)``."""

    check: Check
    errors: dict

    @property
    def passed(self):
        """Every error within its bound (a NaN fails)."""
        return all(error <= bound for error, bound in self.errors.values())


def all_checks():
    """Every check, in the order of the table: each method under ``'auto'``, then each
    other backward pass under dopri5."""
    found = [
        Check(method, problem, time_gradients)
        for method in METHOD_SETTINGS
        for problem in PROBLEMS
        for time_gradients in (False, True)
    ]
    found += [
        Check('dopri5', problem, time_gradients, backward)
        for backward in BACKWARDS
        if backward != 'auto'
        for problem in PROBLEMS
        for time_gradients in (False, True)
    ]
    return found


def _largest_difference(first, second, keys):
    return max((first[key] - second[key]).abs().max().item() for key in keys)


def run(check):
    """Measure one :class:`Check`; returns its :class:`Outcome`.

    Comparisons: ``closed form`` (every gradient), ``unused`` (the problem's unused
    parameter must get exact zeros), and unless the method is in
    :data:`NOT_DIFFERENTIABLE`, ``direct`` (every gradient but ``t``) and ``t direct``.
    """
    settings, exact_bound, direct_bound, time_bound = METHOD_SETTINGS[check.method]
    func = PROBLEMS[check.problem]()
    y0 = torch.tensor(Y0, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 4, dtype=torch.float64, requires_grad=check.time_gradients)
    exact = exact_gradients(func, y0, t)
    found = gradients(
        odeint_adjoint_gq,
        func,
        y0,
        t,
        method=check.method,
        gtol=1.0,
        backward=check.backward,
        **settings,
    )
    errors = {
        'closed form': (_largest_difference(found, exact, exact), exact_bound),
        'unused': (found['unused'].abs().max().item(), 0.0),
    }
    if check.method not in NOT_DIFFERENTIABLE:
        direct = gradients(odeint, func, y0, t, method=check.method, **settings)
        errors['direct'] = (
            _largest_difference(found, direct, [key for key in found if key != 't']),
            direct_bound,
        )
        if check.time_gradients:
            errors['t direct'] = (_largest_difference(found, direct, ['t']), time_bound)
    return Outcome(check, errors)
