"""The backward pass when its own graph is asked for (``create_graph=True``): second
derivatives, gradient penalties, Hessian-vector products.

The other passes compute the cotangents outside autograd (their result has no graph).
Here the checkpoint's idea is taken to its end: the forward solve is repeated with a graph,
by :func:`torchdiffeq.odeint` itself on the same inputs (so on the same steps), and
backpropagated with ``create_graph=True``. The first derivatives are exactly direct
backprop's, and so are the derivatives of those. Memory: the whole solve's graph, as
direct backprop keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, cast

import torch

from .checkpoint import checkpoint_problem
from .forward_solve import solve

if TYPE_CHECKING:
    from .gq_adjoint import Settings

#: The passes that may run when the backward pass records its graph.
TWICE_DIFFERENTIABLE = ('auto', 'checkpoint')


def second_order_problem(settings: Settings) -> Optional[str]:
    """Why the backward pass cannot record its graph for this solve (None if it can)."""
    if settings.backward not in TWICE_DIFFERENTIABLE:
        return f'backward={settings.backward!r} computes its gradients outside autograd'
    if settings.event_fn is not None:
        return 'event handling is not covered'
    return checkpoint_problem(settings.method, False)


def differentiable_backward(
    settings: Settings,
    t: torch.Tensor,
    y0_parts: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    grad_outputs: Sequence[Optional[torch.Tensor]],
    needs_t: bool,
) -> tuple[Optional[torch.Tensor], list[torch.Tensor], list[torch.Tensor], dict[str, Any]]:
    """Cotangents of ``t``, ``y0``'s parts and ``params`` by backprop through a repeated
    solve, each with its own graph when grad mode is on (``create_graph=True``).

    Args:
        settings: the solve's settings (func, tolerances, method, options, state layout).
        t: the output times given to the forward solve.
        y0_parts: the state's parts as given to the forward solve.
        params: the tensors to differentiate.
        grad_outputs: the cotangents of the solution's parts (None for an unused part).
        needs_t: bool, whether ``t`` needs its gradient.

    Returns:
        ``(grad_t or None, grads of y0's parts, grads of params, costs)``.

    Raises:
        RuntimeError: the solve is not one the checkpoint covers; the message names
            ``backward='checkpoint'`` and why.
    """
    problem = second_order_problem(settings)
    if problem is not None:
        raise RuntimeError(
            'create_graph=True (second derivatives) needs the backward pass to record its '
            "own graph, which only backward='checkpoint' does (and 'auto', which takes it); "
            f"here {problem}. Use backward='checkpoint' with a one-step method "
            '(dopri5, bosh3, rk4, ...) and no event_fn.'
        )
    counter = _Counter(settings.func)
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        y0 = tuple(y0_parts) if settings.layout.is_tuple else y0_parts[0]
        # The forward's own solve (event_fn is None here: second_order_problem).
        solution = solve(settings, counter, y0, t, tuple(params))
        solution = solution if settings.layout.is_tuple else (solution,)
        pairs = [(part, grad) for part, grad in zip(solution, grad_outputs) if grad is not None]
        inputs = ([t] if needs_t else []) + list(y0_parts) + list(params)
        # Only what requires grad can be differentiated (y0 is often a data batch); the
        # rest gets zeros, as autograd would give an unused input.
        wanted = [value for value in inputs if value.requires_grad]
        grads = iter(
            torch.autograd.grad(
                [part for part, _ in pairs],
                wanted,
                [grad for _, grad in pairs],
                create_graph=create_graph,
                allow_unused=True,
            )
            if wanted and pairs
            else [None] * len(wanted)
        )
        found = [next(grads) if value.requires_grad else None for value in inputs]
    filled: list[torch.Tensor] = [
        torch.zeros_like(value) if grad is None else cast(torch.Tensor, grad)
        for value, grad in zip(inputs, found)
    ]
    grad_t = filled.pop(0) if needs_t else None
    parts = len(y0_parts)
    costs = dict(backward='checkpoint (with its graph)', backward_nfe=counter.nfe, nodes=0)
    return grad_t, filled[:parts], filled[parts:], costs


class _Counter:
    """``func`` with its evaluations counted."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func, self.nfe = func, 0

    def __call__(self, t: torch.Tensor, y: Any) -> Any:
        self.nfe += 1
        return self.func(t, y)
