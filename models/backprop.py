"""The ways of backpropagating through an ODE solve: the paper's four (docs/paper_notes.md
§2) and one beyond it."""

from torch_gq_adjoint import odeint, odeint_adjoint, odeint_adjoint_gq

#: The paper's four ways of backpropagating (the sweeps' options).
ADJOINT_OPTIONS = ('direct', 'adjoint_ode', 'adjoint_seminorm', 'adjoint_gq')

#: Beyond the paper: GQ with the per-sample propagator backward pass (one backward solve
#: for all observation times). ``adjoint_gq`` stays the paper's restart method.
EXTRA_OPTIONS = ('adjoint_gq_propagator',)


def integrate(
    option, func, y0, t, *, rtol=1e-3, atol=1e-3, gtol=0.1, method='dopri5', options=None
):
    """Solve ``dy/dt = func(t, y)`` at times ``t``, differentiable by ``option``.

    Args:
        option: one of :data:`ADJOINT_OPTIONS` or :data:`EXTRA_OPTIONS`.
        func: ``nn.Module``, the vector field ``func(t, y)``.
        y0: tensor, the state at ``t[0]``.
        t: 1-D tensor of output times.
        rtol, atol: solver tolerances (default 1e-3, the paper's ``--tol``).
        gtol: used by the two GQ options only: the paper's node-count factor ``C`` (default
            0.1, as the experiments run it), or None for the library's error-controlled
            rule.
        method: torchdiffeq method (default dopri5).
        options: solver options dict or None.

    Returns:
        Tensor ``(len(t), *y0.shape)``.

    Raises:
        ValueError: an unknown ``option``.
    """
    common = dict(rtol=rtol, atol=atol, method=method, options=options)
    if option == 'direct':
        return odeint(func, y0, t, **common)
    if option == 'adjoint_ode':
        return odeint_adjoint(func, y0, t, **common)
    if option == 'adjoint_seminorm':
        return odeint_adjoint(func, y0, t, adjoint_options=dict(norm='seminorm'), **common)
    if option == 'adjoint_gq':
        return odeint_adjoint_gq(func, y0, t, gtol=gtol, backward='restart', **common)
    if option == 'adjoint_gq_propagator':
        return odeint_adjoint_gq(func, y0, t, gtol=gtol, backward='propagator', **common)
    choices = ADJOINT_OPTIONS + EXTRA_OPTIONS
    raise ValueError(f'option must be one of {", ".join(choices)}; got {option!r}.')
