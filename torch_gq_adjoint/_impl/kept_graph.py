"""The backward pass through the forward solve's own graph (``backward='direct'``).

Where the forward's autograd graph is small, keeping it is the cheapest backward pass
there is: nothing is solved or evaluated again, and the gradient is exactly that of direct
backpropagation through :func:`torchdiffeq.odeint` (the forward discretisation's, step
sizes and their controller included). The checkpoint (:mod:`.checkpoint`) pays one more
forward solve to keep only the states; on small, overhead-bound models that solve is a
quarter to a third of a training step.

So the forward runs :func:`torchdiffeq.odeint` with grad mode on, from detached copies of
``y0``'s parts, while :class:`GraphGuard` watches its size: the first evaluation of
``func`` is measured (the bytes of the tensors autograd saves, parameters left out), and
every later one is priced the same, plus the solver's own combinations of the state.
Past ``checkpoint_memory`` bytes the solve stops (:class:`GraphTooLargeError`) and the forward
runs again without a graph, as for the other passes; the call site is remembered, so that
a training loop pays for that attempt once. The user's ``func`` and step callbacks see
the stopped attempt's evaluations too.

The backward is one :func:`torch.autograd.grad` through the kept graph, which frees it. A
second backward through the same solve (``retain_graph=True`` outside) finds it used and
takes another pass.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .record import BackwardResult

#: Methods whose steps are not torch code: no graph to keep.
NO_GRAPH_METHODS = frozenset({'scipy_solver'})

#: What was learnt at each call site (with its state size, method and budget), keyed by
#: :func:`site_key`: ``'too_large'`` (a kept graph did not fit), ``'discrete'`` (whether
#: ``'auto'`` last took a pass that returns the discretisation's gradient).
_SITES: dict[tuple[Any, ...], dict[str, bool]] = {}


class GraphTooLargeError(Exception):
    """The forward solve's graph would pass ``checkpoint_memory``."""


def site_key(settings, numel):
    """What :data:`_SITES` remembers a solve by: its call site, state size, method and
    budget."""
    return (settings.call_site, numel, settings.method, settings.checkpoint_memory)


def remember(key, **facts):
    """Note ``too_large=True`` or ``discrete=...`` for the call site ``key``."""
    _SITES.setdefault(key, {}).update(facts)


def worth_keeping(key, forced):
    """Whether the forward should keep its graph at this call site: never once it did not
    fit; under ``'auto'`` (not ``forced``) only while the last choice there was a pass
    returning the discretisation's gradient (or on the first call)."""
    facts = _SITES.get(key, {})
    if facts.get('too_large'):
        return False
    return forced or facts.get('discrete', True)


def forget():
    """Forget every call site (tests)."""
    _SITES.clear()


class StepCounter:
    """Counts the evaluations of the accepted steps, keeping nothing: what the checkpoint
    would repeat, the kept graph's price (:mod:`.choice`). Called as a
    :class:`~.checkpoint.ForwardTape` is, by :class:`~.dynamics.CountedField`."""

    def __init__(self, adaptive):
        self.adaptive = adaptive
        self.step_evaluations = 0
        self._attempt = 0

    def on_evaluation(self, output):
        self._attempt += 1

    def on_step(self, t0, y0, dt):
        self._attempt = 0

    def on_accept(self, t0, y0, dt):
        self.step_evaluations += self._attempt


def graph_problem(method):
    """Why no graph can be kept for this method (None if one can)."""
    if method in NO_GRAPH_METHODS:
        return "scipy's solvers are not torch code"
    return None


class GraphGuard:
    """The field handed to the forward solve when its graph is kept: ``field`` called
    with grad mode on, and an estimate of the graph's size checked at every evaluation.

    Args:
        field: the counted field (:class:`~.dynamics.CountedField`).
        params: the tensors differentiated (their storage is not the graph's).
        state_bytes: int, bytes of one state.
        limit_bytes: number, ``checkpoint_memory``.

    Attributes:
        nbytes: int, the estimate so far: each evaluation's saved tensors as the first
            one measured them, and two states for the solver's combinations.
    """

    def __init__(self, field: Callable, params, state_bytes: int, limit_bytes: float):
        self.field = field
        self.limit_bytes = limit_bytes
        self.state_bytes = state_bytes
        self.per_evaluation: int | None = None
        self.nbytes = 0
        self._seen = {param.untyped_storage().data_ptr() for param in params}
        # The solver's callbacks live on the counted field: torchdiffeq looks them up on
        # the function it is given.
        for name in ('callback_step', 'callback_accept_step', 'callback_reject_step'):
            if hasattr(field, name):
                setattr(self, name, getattr(field, name))

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._seen:
            self._seen.add(pointer)
            self.per_evaluation = (self.per_evaluation or 0) + storage.nbytes()
        return tensor

    def __call__(self, t, y):
        if self.per_evaluation is None:
            self.per_evaluation = 0
            with torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
                output = self.field(t, y)
        else:
            output = self.field(t, y)
        self.nbytes += self.per_evaluation + 2 * self.state_bytes
        if self.nbytes > self.limit_bytes:
            raise GraphTooLargeError
        return output


def _unpack(tensor):
    return tensor


class KeptGraph:
    """The forward solve with its graph: what :class:`DirectBackward` reads.

    Attributes:
        leaves: tuple, the detached copies of ``y0``'s parts the solve started from.
        solution: tuple, the solution's parts ``(T, *shape)``, carrying the graph.
        nbytes: int, the guard's estimate of the graph's size.
        step_evaluations: int, evaluations of the accepted steps (adaptive methods) or
            of the whole solve: what the checkpoint would repeat.
        used: bool, a backward pass has gone through it (and freed it).
    """

    def __init__(self, leaves, solution, nbytes, step_evaluations):
        self.leaves = leaves
        self.solution = solution
        self.nbytes = nbytes
        self.step_evaluations = step_evaluations
        self.used = False


class DirectBackward:
    """Backpropagation through the forward's kept graph (``backward='direct'``).

    Args:
        record: :class:`~.record.ForwardRecord` whose ``graph`` holds the kept solve.
    """

    name = 'direct'

    @staticmethod
    def records(settings):
        """What the forward pass must keep for this pass: its graph (where the method is
        torch code)."""
        return () if graph_problem(settings.method) is not None else ('graph',)

    @staticmethod
    def problem(record):
        """Why this pass cannot serve the solve (None if it can)."""
        reason = graph_problem(record.settings.method)
        if reason is not None:
            return reason
        graph = record.graph
        if graph is None:
            return (
                'the forward pass did not keep its graph (it passes '
                f'checkpoint_memory={record.settings.checkpoint_memory} bytes, or another '
                'pass was asked for)'
            )
        if graph.used:
            return 'an earlier backward pass through this solve used its graph'
        return None

    def __init__(self, record):
        self.graph = record.graph
        self.layout = record.settings.layout
        self.params = record.params

    def __call__(self, grad_solution):
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        graph, layout = self.graph, self.layout
        grads = layout.unflatten(grad_solution)
        grads = grads if layout.is_tuple else (grads,)
        pairs = [(part, grad) for part, grad in zip(graph.solution, grads) if part.requires_grad]
        inputs = list(graph.leaves) + list(self.params)
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
        graph.solution = ()  # the graph's buffers are freed; nothing else holds it
        found = [
            torch.zeros_like(value) if grad is None else grad for value, grad in zip(inputs, found)
        ]
        parts = len(graph.leaves)
        grad_y0 = layout.flatten(tuple(found[:parts]) if layout.is_tuple else found[0])
        return BackwardResult(
            grad_y0,
            # a(t0+): what reaches t0 from later times, without the loss gradient at t0.
            grad_y0 - grad_solution[0],
            found[parts:],
            dict(backward=self.name, backward_nfe=0, nodes=0, graph_bytes=graph.nbytes),
        )
