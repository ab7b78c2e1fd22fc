"""The checkpoint's other way: backpropagate through the forward solve's own graph.

The checkpointed pass (:mod:`.checkpoint`) returns the gradient of the forward
discretisation with the step sizes held fixed. Where the forward's autograd graph is
small, keeping it gives that same gradient without solving or evaluating anything again:
the forward runs :func:`torchdiffeq.odeint` with grad mode on, from detached copies of
``y0``'s parts, with the norm of its step-size control detached (:func:`frozen_norm`: the
same values, so the same steps, bit for bit, and no graph through the controller), and
the backward pass is one :func:`torch.autograd.grad` through it. On small,
overhead-bound models the recomputation it saves is a quarter to a third of a training
step; leaving the controller out of the graph also makes the backward cheaper than
direct backprop's.

:class:`GraphGuard` watches the graph's size as it grows: the first evaluation of
``func`` is measured (the bytes of the tensors autograd saves, parameters left out), and
every later one is priced the same, plus the solver's own combinations of the state.
Past ``checkpoint_memory`` bytes the solve stops (:class:`GraphTooLargeError`) and the
forward runs again without a graph, recording its steps instead; the call site's plan
remembers it (:mod:`.planner`), so that a training loop pays for that attempt once. The
user's ``func`` and step callbacks see the stopped attempt's evaluations too. The
recorder that keeps the graph is :mod:`.graph_recorder`; a graph is kept where the
checkpoint is the pass to run (forced, or the plan's choice or candidate) and on a
call site's first call, which records for every pass.

The backward through the graph frees it. A second backward through the same solve
(``retain_graph=True`` outside) records the graph again from ``y0`` (the same steps),
or reads the steps' tape where one was kept beside the graph for another pass; no tape
is kept for the checkpoint alone, whose recording would cost every forward solve.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from .backward_options import _rms_norm
from .state import StateLayout


class GraphTooLargeError(Exception):
    """The forward solve's graph would pass ``checkpoint_memory``."""


def frozen_norm(norm: Optional[Callable[..., Any]], is_tuple: bool) -> Callable[[Any], Any]:
    """The forward solve's step-size norm with its value detached: the user's ``norm``,
    or torchdiffeq's default (RMS; its maximum over the parts of a tuple state, which
    torchdiffeq hands the norm as a tuple). The values, hence the steps, are unchanged."""

    def frozen(value: Any) -> Any:
        if norm is not None:
            found = norm(value)
        elif is_tuple:
            found = max([_rms_norm(part) for part in value]) if len(value) else 0.0
        else:
            found = _rms_norm(value)
        return found.detach() if torch.is_tensor(found) else found

    return frozen


class StepCounter:
    """Counts the evaluations of the accepted steps, keeping nothing: what the checkpoint
    would repeat, the kept graph's price (:mod:`.choice`). Called as a
    :class:`~.checkpoint.ForwardTape` is, by :class:`~.dynamics.CountedField`."""

    def __init__(self, adaptive: bool) -> None:
        self.adaptive = adaptive
        self.step_evaluations = 0
        self._attempt = 0

    def on_evaluation(self, output: Any) -> None:
        self._attempt += 1

    def on_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self._attempt = 0

    def on_accept(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.step_evaluations += self._attempt


class GraphGuard:
    """The field handed to the forward solve when its graph is kept: ``field`` called
    with grad mode on, and an estimate of the graph's size checked at every evaluation.

    Args:
        field: the counted field (:class:`~.dynamics.CountedField`).
        params: the tensors differentiated (their storage is not the graph's).
        state_bytes: int, bytes of one state.
        limit_bytes: number, ``checkpoint_memory``.

    Attributes:
        nbytes: int, the estimate so far: each evaluation's saved tensors as the largest
            measurement so far gives them (evaluations 1, 2, 4, 8, ... are measured), and
            two states for the solver's combinations.
    """

    def __init__(
        self,
        field: Callable[..., Any],
        params: Sequence[torch.Tensor],
        state_bytes: int,
        limit_bytes: float,
    ) -> None:
        self.field = field
        self.limit_bytes = limit_bytes
        self.state_bytes = state_bytes
        self.per_evaluation: int | None = None
        self.nbytes = 0
        self.evaluations = 0
        self._measuring = 0
        self._seen = {param.untyped_storage().data_ptr() for param in params}
        # The solver's callbacks live on the counted field: torchdiffeq looks them up on
        # the function it is given.
        for name in ('callback_step', 'callback_accept_step', 'callback_reject_step'):
            if hasattr(field, name):
                setattr(self, name, getattr(field, name))

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._seen:
            self._seen.add(pointer)
            self._measuring += storage.nbytes()
        # A detached alias, not the tensor: a saved output handed back as itself would
        # reference its own graph, and what func computed and dropped would live on
        # until Python's cycle collector ran.
        return tensor.detach()

    def __call__(self, t: torch.Tensor, y: Any) -> Any:
        self.evaluations += 1
        if self.evaluations & (self.evaluations - 1) == 0:
            # Measured at evaluations 1, 2, 4, 8, ...: a func whose graph grows as the solve
            # goes (one that reads its own history) is caught within a factor of two of
            # the evaluations, at a cost that vanishes as they add up.
            self._measuring = 0
            with torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
                output = self.field(t, y)
            self.per_evaluation = max(self.per_evaluation or 0, self._measuring)
        else:
            output = self.field(t, y)
        self.nbytes += (self.per_evaluation or 0) + 2 * self.state_bytes
        if self.nbytes > self.limit_bytes:
            raise GraphTooLargeError
        return output


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class KeptGraph:
    """The forward solve with its graph: what the checkpoint reads where it was kept.

    Attributes:
        leaves: tuple, the detached copies of ``y0``'s parts the solve started from.
        solution: tuple, the solution's parts ``(T, *shape)``, carrying the graph.
        nbytes: int, the guard's estimate of the graph's size.
        step_evaluations: int, evaluations of the accepted steps (adaptive methods) or
            of the whole solve: what the checkpoint would repeat.
        used: bool, a backward pass has gone through it (and freed it).
    """

    def __init__(
        self,
        leaves: tuple[torch.Tensor, ...],
        solution: tuple[torch.Tensor, ...],
        nbytes: int,
        step_evaluations: int,
    ) -> None:
        self.leaves = leaves
        self.solution = solution
        self.nbytes = nbytes
        self.step_evaluations = step_evaluations
        self.used = False


def backpropagate(
    graph: KeptGraph,
    layout: StateLayout,
    params: Sequence[torch.Tensor],
    grad_solution: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The cotangents of ``y0`` (flat) and ``params`` through the kept ``graph``, for the
    output cotangents ``(T, n)``; the graph is freed (``graph.used`` is set)."""
    unflat = layout.unflatten(grad_solution)
    grads = unflat if isinstance(unflat, tuple) else (unflat,)
    pairs = [(part, grad) for part, grad in zip(graph.solution, grads) if part.requires_grad]
    inputs = list(graph.leaves) + list(params)
    found: Any = [None] * len(inputs)
    if pairs:
        with torch.enable_grad():
            found = torch.autograd.grad(
                [part for part, _ in pairs],
                inputs,
                [grad for _, grad in pairs],
                allow_unused=True,
            )
    graph.used = True
    graph.solution = ()  # nothing else holds the graph: its memory goes now
    found = [
        torch.zeros_like(value) if grad is None else grad for value, grad in zip(inputs, found)
    ]
    parts = len(graph.leaves)
    grad_y0 = layout.flatten(tuple(found[:parts]) if layout.is_tuple else found[0])
    return grad_y0, found[parts:]
