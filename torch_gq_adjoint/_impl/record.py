"""The interface every backward pass shares: what it is given, what it returns.

A backward pass (:mod:`.restart`, :mod:`.interpolated`, :mod:`.propagator`,
:mod:`.checkpoint`) is a class built from a :class:`ForwardRecord` alone whose call
takes the output cotangents ``(T, n)`` and returns a :class:`BackwardResult`; it also
says what the forward must record for it and why it cannot serve a solve (the table and
that interface: :mod:`.choice`). The autograd Function only chooses one, calls it, and
turns the result into the user's structure; the time gradients, which every pass gets
the same way, are computed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch.func import vmap

if TYPE_CHECKING:  # only for the annotations: these modules import this one
    from .checkpoint import ForwardTape
    from .gq_adjoint import Settings
    from .kept_graph import KeptGraph


@dataclass
class ForwardRecord:
    """What the forward pass leaves for the backward pass.

    Attributes:
        settings: the public function's checked arguments (``func``, the flat ``field``,
            ``layout``, tolerances, methods, options, ``backward``, ...).
        t: the user's ``t``, detached.
        times: ``(T,)`` the output times (``[t0, event_t]`` in event mode).
        solution: ``(T, n)`` the forward solution, flat.
        params: tuple of the tensors to differentiate (requiring grad).
        forward_nfe: int, evaluations of the forward solve.
        forward_step: last accepted forward step (adaptive methods) or None.
        tape: :class:`~torch_gq_adjoint._impl.checkpoint.ForwardTape` or None: the
            accepted steps (and their stages), where a pass that reads them may run.
        graph: :class:`~torch_gq_adjoint._impl.kept_graph.KeptGraph` or None: the
            forward solve with its autograd graph, where it was kept.
        forward_steps: int, accepted steps of the forward solve (adaptive methods).
        field_values: :class:`FieldValues` at the output times (made here).
    """

    settings: Settings
    t: torch.Tensor
    times: torch.Tensor
    solution: torch.Tensor
    params: tuple[torch.Tensor, ...]
    forward_nfe: int
    forward_step: torch.Tensor | None = None
    tape: ForwardTape | None = None
    graph: KeptGraph | None = None
    forward_steps: int = 0
    field_values: FieldValues = field(init=False)
    _vectorisable: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.field_values = FieldValues(self.settings.field, self.times, self.solution)

    def vectorisable(self) -> bool:
        """Whether ``vmap`` batches ``func`` over quadrature nodes (one probe evaluation
        with a graph, made on first use)."""
        if self._vectorisable is None:
            with torch.enable_grad():
                try:
                    vmap(self.settings.field)(
                        self.times[-1:], self.solution[-1:].detach().requires_grad_(True)
                    )
                    self._vectorisable = True
                except RuntimeError:
                    self._vectorisable = False
        return self._vectorisable


@dataclass
class BackwardResult:
    """What a backward pass returns.

    Attributes:
        grad_y0: ``(n,)`` the cotangent of ``y0``, ``a(t_0⁻)``.
        adjoint_after_start: ``(n,)`` ``a(t_0⁺)``, the adjoint arriving at ``t_0`` from
            later times (the time gradient of ``t_0`` needs it).
        param_grads: list of tensors, one per parameter.
        costs: dict, ``backward`` (the pass's name), ``backward_nfe`` (evaluations of
            ``func`` it made) and ``nodes`` (quadrature nodes evaluated).
    """

    grad_y0: torch.Tensor
    adjoint_after_start: torch.Tensor
    param_grads: list[torch.Tensor]
    costs: dict[str, Any] = field(default_factory=dict)


class BackwardPass(Protocol):
    """What every backward pass is (:mod:`.choice` holds the table of them)."""

    #: The value of ``backward`` that forces it.
    name: str

    @staticmethod
    def records(settings: Settings) -> tuple[str, ...]:
        """What the forward must record for this pass (``'steps'``, ``'stages'``,
        ``'graph'``)."""
        ...

    @staticmethod
    def problem(record: ForwardRecord) -> str | None:
        """Why the pass cannot serve the solve, or None if it can."""
        ...

    def __init__(self, record: ForwardRecord) -> None: ...

    def __call__(self, grad_solution: torch.Tensor) -> BackwardResult:
        """The cotangents for output cotangents ``(T, n)``."""
        ...


class FieldValues:
    """``f(t_i, z_i)`` at every output time, ``(T, n)``, computed once on first use.

    They give the time gradients in closed form (:func:`time_gradients`) and the
    reference of the error-controlled quadrature's time check.
    """

    def __init__(self, field: Callable, times: torch.Tensor, solution: torch.Tensor) -> None:
        self.field, self.times, self.solution = field, times, solution
        self.values: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self.values is None:
            with torch.no_grad():
                try:
                    self.values = vmap(self.field)(self.times, self.solution)
                except RuntimeError:  # func cannot be vectorised: one call per time
                    self.values = torch.stack(
                        [self.field(time, state) for time, state in zip(self.times, self.solution)]
                    )
        return self.values


def time_gradients(
    record: ForwardRecord, grad_solution: torch.Tensor, adjoint_after_start: torch.Tensor
) -> torch.Tensor:
    """``dL/dt`` ``(T,)``: ``g_i · f(t_i, z_i)`` for i ≥ 1 and ``-a(t_0⁺) · f(t_0, z_0)``
    (the solution moves with ``t_0`` only through the start of the flow, so the loss
    gradient at ``t_0`` itself does not count)."""
    with torch.no_grad():
        derivatives = record.field_values()
        grads = (grad_solution * derivatives).sum(dim=-1)
        grads[0] = -(adjoint_after_start * derivatives[0]).sum()
    return grads.to(record.times.dtype)


def check_finite(result: BackwardResult) -> None:
    """Raise ``FloatingPointError`` where a gradient holds NaN or inf."""
    named = [('the gradient of y0', result.grad_y0)]
    named += [
        (f'the gradient of parameter {number}', grad)
        for number, grad in enumerate(result.param_grads)
    ]
    for what, tensor in named:
        if not torch.isfinite(tensor).all():
            raise FloatingPointError(
                f'odeint_adjoint_gq: non-finite values met in the '
                f'backward pass ({what} holds NaN or inf).'
            )


def explain_non_finite(
    func: Callable, t0: torch.Tensor, y0: object, params: tuple[torch.Tensor, ...]
) -> None:
    """After the forward solve's step size underflowed: raise ``FloatingPointError`` naming
    a non-finite value where one explains it (a parameter, or ``func``'s value at the
    start); return if none does (the dynamics are then too stiff for the tolerances)."""
    for index, param in enumerate(params):
        if not torch.isfinite(param.detach()).all():
            raise FloatingPointError(
                f'odeint_adjoint_gq: parameter {index} of func holds NaN or inf, so the solve '
                'cannot proceed (torchdiffeq reported "underflow in dt").'
            )
    with torch.no_grad():
        value = func(t0, y0)
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not all(torch.isfinite(part).all() for part in parts):
        raise FloatingPointError(
            f'odeint_adjoint_gq: func returned NaN or inf at t = {float(t0):g} for the '
            'initial state (which is finite), so the solve cannot proceed (torchdiffeq '
            'reported "underflow in dt").'
        )
