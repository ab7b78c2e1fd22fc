"""The recorder that keeps the forward solve's autograd graph (:mod:`.kept_graph`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from . import checks
from .dynamics import CountedField
from .forward_solve import detached, solve
from .kept_graph import GraphGuard, GraphTooLargeError, KeptGraph, StepCounter, frozen_norm

if TYPE_CHECKING:
    from .gq_adjoint import Settings
    from .recorders import Recording


class GraphRecorder:
    """The solve with grad mode on, from detached copies of ``y0``'s parts, its graph
    kept within ``checkpoint_memory``; the steps and their stages on a tape beside it
    where a pass that reads stages may run."""

    name = 'graph'
    #: Returns None where the graph would not fit (the next recorder solves instead).
    may_give_way = True

    @staticmethod
    def wanted(needs: set[str]) -> bool:
        """Where the graph is needed."""
        return 'graph' in needs

    @staticmethod
    def record(
        settings: Settings,
        t: torch.Tensor,
        parts: tuple[torch.Tensor, ...],
        params: tuple[torch.Tensor, ...],
        needs: set[str],
    ) -> Recording | None:
        """The recording with its graph, or None where the graph would pass
        ``checkpoint_memory`` (the attempt stopped; the user's ``func`` and step
        callbacks saw its evaluations)."""
        from .recorders import Recording, new_tape  # the registry imports this module

        layout = settings.layout
        adaptive = settings.method in checks.ADAPTIVE_METHODS
        # Steps without stages are the checkpoint's own need, which the graph serves (a
        # second backward pass through the solve records the graph again: see
        # gq_adjoint); a tape beside the graph is kept only for a pass that reads
        # stages (the interpolated pass, on a call's first call or while exploring).
        tape = new_tape(settings, t, needs) if 'stages' in needs else None
        leaves = tuple(part.detach().requires_grad_(True) for part in parts)
        steps: Any = StepCounter(adaptive) if tape is None else tape
        counted = CountedField(settings.func, adaptive, steps, layout)
        state_bytes = sum(part.numel() * part.element_size() for part in parts)
        guard = GraphGuard(counted, params, state_bytes, settings.checkpoint_memory)
        options = dict(settings.options)
        if adaptive:
            # The same steps, with no graph through the step-size controller: the
            # checkpoint's gradient (step sizes held fixed).
            options['norm'] = frozen_norm(options.get('norm'), layout.is_tuple)
        kept_settings = dataclasses.replace(settings, options=options)
        try:
            with torch.enable_grad():
                result = solve(
                    kept_settings,
                    guard,
                    tuple(leaves) if layout.is_tuple else leaves[0],
                    t.detach(),
                    params,
                )
        except GraphTooLargeError:
            return None
        solution = result[1] if settings.event_fn is not None else result
        kept = KeptGraph(
            leaves,
            tuple(solution) if layout.is_tuple else (solution,),
            guard.nbytes,
            steps.step_evaluations if adaptive else counted.nfe,
        )
        # What the Function returns carries no graph of its own (autograd gives it this one).
        if settings.event_fn is not None:
            event_t, solution = result
            result = (event_t.detach(), detached(solution))
        else:
            result = detached(result)
        return Recording(result, counted.nfe, counted.accepted, counted.last_step, tape, kept)
