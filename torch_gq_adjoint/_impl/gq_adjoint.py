"""The GQ adjoint: one autograd Function whose forward and backward read top to bottom.

Forward: solve ``z`` without a graph and count the evaluations (NFE).
Backward, interval by interval from the last: solve ``[z, a]`` backwards, read them at
Gauss–Legendre nodes off the solver's dense output, queue the nodes for the parameter
integral, restart ``z`` from the stored forward solution and add the loss gradient to
``a``. The time gradients follow in closed form from ``f`` at the output times.
"""

from dataclasses import dataclass

import torch
import torchdiffeq
from torch.autograd.function import once_differentiable

from . import checks
from .dynamics import AdjointDynamics, CountedField
from .parameter_integral import ParameterIntegral
from .quadrature import gauss_legendre, node_count
from .state import FlatField, StateLayout


@dataclass
class _Settings:
    """Everything the Function needs besides tensors (checked by the public function)."""

    field: FlatField
    rtol: float
    atol: float
    gtol: float
    method: str
    options: dict
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_method: str
    adjoint_options: dict


class _GaussQuadratureAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, settings, y0, t, *params):
        counted = CountedField(settings.field, settings.method in checks.ADAPTIVE_METHODS)
        with torch.no_grad():
            solution = torchdiffeq.odeint(counted, y0, t, rtol=settings.rtol, atol=settings.atol,
                                          method=settings.method, options=settings.options)
        ctx.settings = settings
        ctx.forward_nfe = counted.nfe
        ctx.forward_step = counted.last_step
        ctx.save_for_backward(t, solution, *params)
        return solution

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_solution):
        settings = ctx.settings
        t, solution, *params = ctx.saved_tensors
        field = settings.field
        adaptive = settings.adjoint_method in checks.ADAPTIVE_METHODS
        size = solution.shape[-1]
        times = t.detach()
        # One host transfer for all times: node counts and positions are host-side.
        time_values = times.tolist()
        total_length = time_values[-1] - time_values[0]
        # The backward solves run against t's direction; the solver's own time s = direction·t
        # increases (see AdjointDynamics).
        direction = -1.0 if total_length > 0 else 1.0
        dynamics = AdjointDynamics(field, size, direction, record_steps=adaptive)
        integral = ParameterIntegral(field, tuple(params), size)

        # A step chosen by the user wins for the first interval; after that, and when the
        # user chose none, each solve starts with the last accepted step of the previous one.
        step = settings.adjoint_options.get('first_step', ctx.forward_step) if adaptive else None
        adjoint = grad_solution[-1]
        # a(t_0^+): the adjoint arriving at t_0 from later times (none if t has one entry).
        adjoint_after_start = torch.zeros_like(adjoint)
        for index in range(len(time_values) - 1, 0, -1):
            end, start = time_values[index], time_values[index - 1]
            count = node_count(settings.gtol, ctx.forward_nfe, end - start, total_length)
            nodes, weights = gauss_legendre(end, start, count, times.dtype, times.device)
            # Nodes run backwards from `end`; the integral itself runs forwards in time.
            weights = -weights
            solve_times = direction * torch.cat([times[index:index + 1], nodes,
                                                 times[index - 1:index]])
            options = dict(settings.adjoint_options)
            if step is not None:
                options['first_step'] = step
            start_state = torch.cat([solution[index], adjoint])
            path = _solve_backward(dynamics, start_state, solve_times, settings, options, index)
            if adaptive and dynamics.last_step is not None:
                step = dynamics.last_step
            integral.add(nodes, weights, path[1:-1, :size], path[1:-1, size:])
            adjoint_after_start = path[-1, size:]
            adjoint = adjoint_after_start + grad_solution[index - 1]

        param_grads = integral.result()
        _check_finite(adjoint, 'the gradient of y0')
        for number, grad in enumerate(param_grads):
            _check_finite(grad, f'the gradient of parameter {number}')

        grad_t = None
        if ctx.needs_input_grad[2]:
            grad_t = _time_gradients(field, times, solution, grad_solution, adjoint_after_start)
        return (None, adjoint, grad_t, *param_grads)


def _solve_backward(dynamics, start_state, solve_times, settings, options, index):
    """Solve ``[z, a]`` over one interval; a non-finite state becomes a clear error."""
    try:
        return torchdiffeq.odeint(dynamics, start_state, solve_times,
                                  rtol=settings.adjoint_rtol, atol=settings.adjoint_atol,
                                  method=settings.adjoint_method, options=options)
    except AssertionError as error:
        if 'non-finite' in str(error) or 'underflow' in str(error):
            raise FloatingPointError(
                f'odeint_adjoint_gq: the backward solve over [t[{index - 1}], t[{index}]] failed '
                f'with non-finite or vanishing values ({error}). Check func for overflow, or '
                'lower rtol/atol.') from error
        raise


def _check_finite(tensor, what):
    if not torch.isfinite(tensor).all():
        raise FloatingPointError(f'odeint_adjoint_gq: non-finite values met in the backward pass '
                                 f'({what} holds NaN or inf).')


def _time_gradients(field, times, solution, grad_solution, adjoint_after_start):
    """``dL/dt_i = g_i · f(t_i, z_i)`` for i ≥ 1 and ``dL/dt_0 = -a(t_0^+) · f(t_0, z_0)``.

    The solution depends on an output time t_i (i ≥ 1) only through where it is read,
    and on t_0 through the start of the flow; ``a(t_0^+)`` excludes the loss gradient
    at ``t_0`` itself, since ``z(t_0) = y0`` does not move with t_0.
    """
    with torch.no_grad():
        derivatives = torch.stack([field(time, state) for time, state in zip(times, solution)])
        grad_t = (grad_solution * derivatives).sum(dim=-1)
        grad_t[0] = -(adjoint_after_start * derivatives[0]).sum()
    return grad_t.to(times.dtype)


def odeint_adjoint_gq(func, y0, t, *, rtol=1e-7, atol=1e-9, gtol=0.1, method=None, options=None,
                      adjoint_rtol=None, adjoint_atol=None, adjoint_method=None,
                      adjoint_options=None, adjoint_params=None):
    """Solve ``dy/dt = func(t, y)`` like :func:`torchdiffeq.odeint`; gradients by the GQ adjoint.

    The forward pass keeps no graph (memory O(state)). The backward pass solves only the
    state and its adjoint ``[z, a]`` backwards and computes the parameter gradient
    ``∫ a^T ∂f/∂θ dt`` with Gauss–Legendre quadrature on each interval ``[t[i-1], t[i]]``,
    with ``min(ceil(gtol * NFE * |t[i] - t[i-1]| / |t[-1] - t[0]|), 64)`` nodes (at least
    one), where NFE counts the forward solve's evaluations of ``func``.

    Same signature as :func:`torchdiffeq.odeint_adjoint` (without ``event_fn``) plus
    ``gtol``, so switching is a rename.

    Args:
        func: callable ``func(t, y)`` returning ``dy/dt`` with ``y``'s structure. An
            ``nn.Module`` unless ``adjoint_params`` is given. No ``nfe`` attribute needed.
        y0: floating point tensor of any shape, or a tuple of such tensors (same dtype
            and device), the state at ``t[0]``.
        t: 1-D floating point tensor of output times, strictly increasing or strictly
            decreasing, on ``y0``'s device. Its entries may require grad.
        rtol, atol: tolerances of the forward solve (defaults 1e-7, 1e-9 as torchdiffeq).
        gtol: positive float (default 0.1), the paper's ``C``: larger gives more quadrature
            nodes and a more accurate parameter gradient. Not a tolerance: it scales the
            node count up, not the error bound down.
        method: torchdiffeq method name (default None: dopri5).
        options: dict of solver options for the forward solve (e.g. ``step_size``).
        adjoint_rtol, adjoint_atol: tolerances of the backward ``[z, a]`` solve
            (default: ``rtol``, ``atol``).
        adjoint_method: method of the backward solve (default: ``method``).
        adjoint_options: options of the backward solve (default: ``options`` without
            ``norm``). ``norm='seminorm'`` is accepted and changes nothing: the backward
            state has no parameter part for a seminorm to leave out. A callable ``norm``
            receives ``(t_placeholder, *y, *adj_y)`` as torchdiffeq's adjoint would (with
            no parameter entries). For adaptive methods each interval's solve starts from
            the last accepted step of the previous one unless ``first_step`` is given.
        adjoint_params: tensors to differentiate (default: ``func.parameters()``); those
            not requiring grad are skipped, unused ones get a zero gradient.

    Returns:
        Tensor of shape ``(len(t), *y0.shape)``, or a tuple of such tensors for a tuple
        ``y0``: exactly what :func:`torchdiffeq.odeint` returns.

    Raises:
        TypeError, ValueError: bad arguments (named in the message), before any solve.
        FloatingPointError: non-finite values met in the backward pass.
    """
    params = checks.check_func_and_params(func, adjoint_params)
    parts, is_tuple = checks.check_state(y0)
    checks.check_times(t, parts[0].device)
    gtol = checks.check_gtol(gtol)
    checks.check_method('method', method)
    checks.check_method('adjoint_method', adjoint_method)
    method = method or 'dopri5'
    if adjoint_method is None:
        adjoint_method = method
    elif adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError('adjoint_options must be given when adjoint_method differs from method '
                         'and options are given: options of one method need not suit another.')
    options = checks.check_options('options', options)
    if adjoint_options is None:
        adjoint_options = {key: value for key, value in options.items() if key != 'norm'}
    else:
        adjoint_options = checks.check_options('adjoint_options', adjoint_options)

    layout = StateLayout(parts, is_tuple)
    field = FlatField(func, layout)
    _wrap_norms(options, adjoint_options, layout)
    settings = _Settings(
        field=field, rtol=rtol, atol=atol, gtol=gtol, method=method, options=options,
        adjoint_rtol=rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=atol if adjoint_atol is None else adjoint_atol,
        adjoint_method=adjoint_method, adjoint_options=adjoint_options)

    y0_flat = layout.flatten(y0)
    solution = _GaussQuadratureAdjoint.apply(settings, y0_flat, t, *params)
    return layout.unflatten(solution)


def _rms_norm(tensor):
    # torchdiffeq's default norm, applied below to z and a separately.
    return tensor.abs().pow(2).mean().sqrt()


def _wrap_norms(options, adjoint_options, layout):
    """Translate user norms to the flat forward state and the flat ``[z, a]`` backward state.

    The backward norm is always set: by default ``max(norm(z), norm(a))`` with the forward
    norm (torchdiffeq's RMS norm unless the user gave one), as torchdiffeq's adjoint does.
    """
    size = sum(layout.numels)
    state_norm = options.get('norm')
    if callable(state_norm) and layout.is_tuple:
        options['norm'] = lambda flat: state_norm(layout.unflatten(flat))
    part_norm = _rms_norm if state_norm is None else options['norm']

    adjoint_norm = adjoint_options.get('norm')
    if adjoint_norm == 'seminorm' or adjoint_norm is None:
        def default_norm(state):
            return torch.maximum(torch.as_tensor(part_norm(state[:size])),
                                 torch.as_tensor(part_norm(state[size:])))
        adjoint_options['norm'] = default_norm
    elif callable(adjoint_norm):
        def user_adjoint_norm(state):
            z, adjoint = layout.unflatten(state[:size]), layout.unflatten(state[size:])
            placeholder = torch.zeros((), dtype=state.dtype, device=state.device)
            if layout.is_tuple:
                return adjoint_norm((placeholder, *z, *adjoint))
            return adjoint_norm((placeholder, z, adjoint))
        adjoint_options['norm'] = user_adjoint_norm
    else:
        raise ValueError("adjoint_options['norm'] must be 'seminorm' or a callable; "
                         f'got {adjoint_norm!r}.')
