"""What the forward solve records for the backward pass: nothing, its steps, or its graph.

Each backward pass declares what it needs (``records(settings)``: a set of ``'graph'``,
``'steps'``, ``'stages'``); the forward hands those needs to :func:`record_forward`,
which runs the first recorder of :data:`RECORDERS` that serves them:

- :class:`~.graph_recorder.GraphRecorder` (``'graph'``): the solve with its autograd
  graph, within ``checkpoint_memory`` (:mod:`.kept_graph`), the steps recorded beside it
  where they are needed too; it gives way to the next recorder when the graph would not
  fit;
- :class:`TapeRecorder` (``'steps'``, ``'stages'``): the solve without a graph, its
  accepted steps (and their stages) kept by a :class:`~.checkpoint.ForwardTape`;
- :class:`PlainRecorder` (nothing): the solve without a graph, its evaluations counted.

A new recorder is one class with ``wanted(needs)`` and ``record(...)`` and one line in
:data:`RECORDERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from . import checks, generators
from .checkpoint import ForwardTape
from .dynamics import CountedField
from .forward_solve import solve
from .graph_recorder import GraphRecorder
from .kept_graph import KeptGraph

if TYPE_CHECKING:
    from .gq_adjoint import Settings


@dataclass
class Recording:
    """What a recorder leaves of the forward solve.

    Attributes:
        result: what :func:`torchdiffeq.odeint` returned, without a graph.
        nfe: evaluations of ``func``.
        accepted: accepted steps (adaptive methods; 0 otherwise).
        last_step: the last accepted step size (adaptive methods) or None.
        tape: the accepted steps (:class:`~.checkpoint.ForwardTape`) or None.
        graph: the solve's graph (:class:`~.kept_graph.KeptGraph`) or None.
        generator_states: the random number generators' states before the solve, where
            a recorder that may give way made it (a second backward pass that records
            the graph again draws what the forward drew).
    """

    result: Any
    nfe: int
    accepted: int
    last_step: torch.Tensor | None
    tape: ForwardTape | None = None
    graph: KeptGraph | None = None
    generator_states: Any = None


def new_tape(settings: Settings, t: torch.Tensor, needs: set[str]) -> ForwardTape | None:
    """A tape for ``needs`` (None where neither steps nor stages are needed)."""
    if not needs & {'steps', 'stages'}:
        return None
    return ForwardTape(
        settings.method in checks.ADAPTIVE_METHODS,
        len(t) > 1 and bool(t[0] > t[1]),
        settings.checkpoint_memory,
        keep_stages='stages' in needs,
    )


class PlainRecorder:
    """The solve without a graph, its evaluations counted; records nothing else."""

    name = 'nothing'
    may_give_way = False

    @staticmethod
    def wanted(needs: set[str]) -> bool:
        """Always: the last resort."""
        return True

    @staticmethod
    def record(
        settings: Settings,
        t: torch.Tensor,
        parts: tuple[torch.Tensor, ...],
        params: tuple[torch.Tensor, ...],
        needs: set[str],
    ) -> Recording:
        """Solve, keeping a tape where ``needs`` asks for steps."""
        tape = new_tape(settings, t, needs)
        adaptive = settings.method in checks.ADAPTIVE_METHODS
        counted = CountedField(settings.func, adaptive, tape, settings.layout)
        y0 = tuple(parts) if settings.layout.is_tuple else parts[0]
        with torch.no_grad():
            result = solve(settings, counted, y0, t, params)
        return Recording(result, counted.nfe, counted.accepted, counted.last_step, tape)


class TapeRecorder(PlainRecorder):
    """The solve without a graph, its accepted steps (and stages) on a tape."""

    name = 'steps'

    @staticmethod
    def wanted(needs: set[str]) -> bool:
        """Where steps or stages are needed."""
        return bool(needs & {'steps', 'stages'})


#: The recorders, in the order they are asked.
RECORDERS: tuple[Any, ...] = (GraphRecorder, TapeRecorder, PlainRecorder)


def record_forward(
    settings: Settings,
    t: torch.Tensor,
    parts: tuple[torch.Tensor, ...],
    params: tuple[torch.Tensor, ...],
    needs: set[str],
    on_overflow: Optional[Callable[[], None]] = None,
) -> Recording:
    """The forward solve by the first recorder of :data:`RECORDERS` that serves ``needs``.

    Args:
        settings: the solve's settings.
        t: the output times.
        parts: ``y0``'s parts.
        params: the tensors differentiated.
        needs: what the backward pass(es) may read: ``'graph'``, ``'steps'``, ``'stages'``.
        on_overflow: called when a recorder gave way because what it keeps would pass
            ``checkpoint_memory`` (the kept graph).
    """
    device = parts[0].device
    for recorder in RECORDERS:
        if not recorder.wanted(needs):
            continue
        # Only a recorder that may give way needs the generators' states (a hot path).
        saved = generators.states(device) if recorder.may_give_way else None
        recording = recorder.record(settings, t, parts, params, needs)
        if recording is not None:
            recording.generator_states = saved
            return recording
        assert saved is not None
        # The attempt gave way: the solve that follows draws what it drew (a func with
        # dropout), so that the user's generator moves as under direct backprop.
        generators.restore(device, saved)
        if on_overflow is not None:
            on_overflow()
    raise AssertionError('PlainRecorder always records')  # pragma: no cover
