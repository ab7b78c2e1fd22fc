"""The parameter integral ``dL/dθ = ∫ a(t)^T ∂f/∂θ (t, z(t)) dt`` by quadrature.

Nodes are collected across intervals and evaluated in batches: one vectorised
(``torch.func.vmap``) evaluation of ``f`` over a batch of nodes, then one backward pass
with the weighted adjoints as output gradients gives
``Σ_k w_k a_kᵀ ∂f/∂θ(τ_k, z_k)`` for the whole batch. This never materialises one
gradient per node (that would cost nodes × parameters memory). The same backward pass
can also return, per node, ``w_k a_kᵀ ∂f/∂z`` and ``w_k a_kᵀ ∂f/∂t`` (state-sized and
scalar), which the error-controlled quadrature uses to check itself.

Functions that ``vmap`` cannot batch (``.item()``, ``float(t)``, ``torch.tensor(t)``,
dropout, ...) fall back to one vector–Jacobian product per node, with identical results
and a warning that points at the offending line of ``func``.
"""

from __future__ import annotations

import os
import traceback
import warnings
from typing import Any, Callable, Optional, Sequence, cast

import torch
from torch.func import vmap

from .notices import warn_once

#: ``(state_grads, time_grads)`` per node, or None where not asked for.
Extras = tuple[Optional[torch.Tensor], Optional[torch.Tensor]]

#: Nodes per batch are chosen so that a batch holds at most this many state numbers;
#: it bounds the memory of the activations kept for the batch's backward pass.
BATCH_STATE_ELEMENTS = 2**22

_LIBRARY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def _user_frame(error: BaseException) -> Optional[tuple[str, int]]:
    """``(filename, lineno)`` of the innermost frame of ``error`` outside torch and us."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.abspath(frame.filename)
        if not (path.startswith(_LIBRARY_DIR) or path.startswith(_TORCH_DIR)):
            return frame.filename, frame.lineno or 0
    return None


class NodeEvaluator:
    """Vector–Jacobian products of ``f`` at batches of quadrature nodes.

    Args:
        field: callable ``field(t, z)`` on flat states (``z`` of shape ``(n,)``).
        params: tuple of tensors requiring grad, the integral's variables.
        state_size: int, ``n``.
        vectorise: bool, try ``vmap`` first (default True).
        call_site: ``(filename, lineno)`` of the user's call, where a fall-back warning
            points when no line of ``func`` can be named (default None).

    Attributes:
        grads: list of tensors, the accumulated parameter gradients.
        calls: int, vectorised batches (or single nodes, after a fallback) evaluated.
        nodes: int, quadrature nodes evaluated.
    """

    def __init__(
        self,
        field: Callable[..., torch.Tensor],
        params: Sequence[torch.Tensor],
        state_size: int,
        vectorise: bool = True,
        call_site: Optional[tuple[str, int]] = None,
    ) -> None:
        self.field = field
        self.call_site = call_site
        self.nodes = 0
        self.params = params
        self.grads = [torch.zeros_like(param) for param in params]
        self.batch_nodes = max(1, BATCH_STATE_ELEMENTS // max(1, state_size))
        self.vectorise = vectorise
        self.calls = 0

    def evaluate(
        self,
        times: torch.Tensor,
        states: torch.Tensor,
        cotangents: torch.Tensor,
        *,
        params: bool = True,
        state_grads: bool = False,
        time_grads: bool = False,
    ) -> Extras:
        """Add ``Σ_k cotangents_kᵀ ∂f/∂θ`` to :attr:`grads`; return per-node extras.

        Args:
            times: ``(K,)`` node times.
            states: ``(K, n)`` states at the nodes.
            cotangents: ``(K, n)`` weighted adjoints ``w_k a_k``.
            params: bool, accumulate the parameter gradients (default True).
            state_grads: bool, return ``cotangents_kᵀ ∂f/∂z`` per node.
            time_grads: bool, return ``cotangents_kᵀ ∂f/∂t`` per node.

        Returns:
            ``(state_grads, time_grads)``: ``(K, n)`` and ``(K,)`` tensors, or None where
            not asked for; zeros where ``f`` does not depend on ``z`` or ``t``.
        """
        self.nodes += len(times)
        extras_z: list[Any] = []
        extras_t: list[Any] = []
        for start in range(0, len(times), self.batch_nodes):
            batch = slice(start, start + self.batch_nodes)
            grad_z, grad_t = self._batch(
                times[batch], states[batch], cotangents[batch], params, state_grads, time_grads
            )
            extras_z.append(grad_z)
            extras_t.append(grad_t)
        return (
            torch.cat(extras_z) if state_grads else None,
            torch.cat(extras_t) if time_grads else None,
        )

    def _batch(
        self,
        times: torch.Tensor,
        states: torch.Tensor,
        cotangents: torch.Tensor,
        params: bool,
        state_grads: bool,
        time_grads: bool,
    ) -> Extras:
        if self.vectorise:
            try:
                return self._backward(
                    vmap(self.field), times, states, cotangents, params, state_grads, time_grads
                )
            except RuntimeError as error:
                self._fall_back(error, times, states)
        results = [
            self._backward(self.field, time, state, cotangent, params, state_grads, time_grads)
            for time, state, cotangent in zip(times, states, cotangents)
        ]
        # Each node returned what was asked for: tensors, not None.
        grad_z = (
            torch.stack([cast(torch.Tensor, item[0]) for item in results]) if state_grads else None
        )
        grad_t = (
            torch.stack([cast(torch.Tensor, item[1]) for item in results]) if time_grads else None
        )
        return grad_z, grad_t

    def _fall_back(self, error: BaseException, times: torch.Tensor, states: torch.Tensor) -> None:
        """Switch to one node at a time, after checking that ``vmap`` was the problem.

        A genuine bug in ``func`` fails unbatched too: then that error is raised and no
        slower path hides it.
        """
        with torch.no_grad():
            self.field(times[0], states[0])
        self.vectorise = False
        message = (
            'odeint_adjoint_gq: func cannot be vectorised over quadrature nodes with '
            f'torch.func.vmap ({type(error).__name__}: {str(error).splitlines()[0]}). Each '
            'node now costs its own vector-Jacobian product: the same gradient, slower. '
            'To vectorise, avoid in func: .item(), float(t) or int(t), torch.tensor(t) (use '
            't itself), Python branches on tensor values, and random operations such as '
            'dropout.'
        )
        location = _user_frame(error) or self.call_site
        warn_once(message, location, key='vmap')

    def _time_differentiated(
        self, function: Callable[..., torch.Tensor], times: torch.Tensor, states: torch.Tensor
    ) -> torch.Tensor:
        """``function(times, states)`` where ``times`` requires grad (the error-controlled
        rule's time check). A ``func`` that turns ``t`` into a Python number there makes
        torch warn about "a tensor with requires_grad=True", which the user's own ``t``
        never had: say instead what it means here, once per place in ``func``."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            outputs = function(times, states)
        for warning in caught:
            if 'requires_grad=True to a scalar' in str(warning.message):
                warn_once(
                    'odeint_adjoint_gq: func turns t into a Python number (float(t), '
                    't.item()): the error-controlled quadrature differentiates f with '
                    'respect to t to check itself, and cannot see through that. Use t as '
                    "a tensor (t * w, torch.sin(t)), or pass gtol=C for the paper's rule.",
                    (warning.filename, warning.lineno),
                    key='float(t)',
                )
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        return outputs

    def _backward(
        self,
        function: Callable[..., torch.Tensor],
        times: torch.Tensor,
        states: torch.Tensor,
        cotangents: torch.Tensor,
        params: bool,
        state_grads: bool,
        time_grads: bool,
    ) -> Extras:
        self.calls += 1
        with torch.enable_grad():
            times = times.detach().requires_grad_(time_grads)
            states = states.detach().requires_grad_(state_grads)
            if time_grads:
                outputs = self._time_differentiated(function, times, states)
            else:
                outputs = function(times, states)
            inputs = list(self.params) if params else []
            if state_grads:
                inputs.append(states)
            if time_grads:
                inputs.append(times)
            grads: list[torch.Tensor | None]
            if inputs and outputs.requires_grad:
                grads = list(torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True))
            else:
                grads = [None] * len(inputs)  # f depends on none of them here
        grad_t = grads.pop() if time_grads else None
        grad_z = grads.pop() if state_grads else None
        for total, grad in zip(self.grads, grads):
            if grad is not None:
                total.add_(grad)
        if state_grads and grad_z is None:
            grad_z = torch.zeros_like(states)
        if time_grads and grad_t is None:
            grad_t = torch.zeros_like(times)
        return (
            None if grad_z is None else grad_z.detach(),
            None if grad_t is None else grad_t.detach(),
        )


class ParameterIntegral:
    """Queues nodes across intervals and evaluates them in batches (the paper's rule).

    Args:
        evaluator: :class:`NodeEvaluator`, which accumulates the gradients.
    """

    def __init__(self, evaluator: NodeEvaluator) -> None:
        self.evaluator = evaluator
        self._pending: list[tuple[torch.Tensor, ...]] = []
        self._pending_count = 0

    def add(
        self,
        times: torch.Tensor,
        weights: torch.Tensor,
        states: torch.Tensor,
        adjoints: torch.Tensor,
    ) -> None:
        """Queue K nodes: ``times``, ``weights`` ``(K,)``; ``states``, ``adjoints`` ``(K, n)``."""
        if not self.evaluator.params:
            return
        self._pending.append((times, weights, states, adjoints))
        self._pending_count += len(times)
        if self._pending_count >= self.evaluator.batch_nodes:
            self._flush()

    def result(self) -> list[torch.Tensor]:
        """Evaluate what is queued and return the gradients, one per parameter."""
        self._flush()
        return self.evaluator.grads

    def _flush(self) -> None:
        if not self._pending:
            return
        times = torch.cat([item[0] for item in self._pending])
        weights = torch.cat([item[1] for item in self._pending])
        states = torch.cat([item[2] for item in self._pending])
        adjoints = torch.cat([item[3] for item in self._pending])
        self._pending, self._pending_count = [], 0
        weighted = adjoints * weights.to(adjoints.dtype).unsqueeze(-1)
        self.evaluator.evaluate(times, states, weighted)
