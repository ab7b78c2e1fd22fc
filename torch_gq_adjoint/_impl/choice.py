"""The rule of ``backward='auto'`` between the checkpointed backward and the quadrature
backward passes (restart or propagator; the propagator's own rule is
:func:`~torch_gq_adjoint._impl.propagator.cheaper_than_restart`).

The rule counts evaluations, never seconds, so the same call always takes the same path
and gives the same gradient. Costs are in units of one restart evaluation: ``f`` and a
vector–Jacobian product with respect to the state.

- Checkpoint: every evaluation of the accepted steps is made again with a graph, and
  the vector–Jacobian product also reaches the parameters: about :data:`CHECKPOINT_COST`
  restart evaluations each. No quadrature.
- Restart: the backward ``[z, a]`` solve takes about as many evaluations as the forward
  solve, but at least one solver step per interval (:data:`RESTART_STEP` evaluations
  when each interval's solve starts from the previous one's step, twice that when each
  starts cold, as with ``gtol=None``). Its quadrature nodes are cheap when ``vmap``
  batches them; when it cannot, each node is one more evaluation with a full product, and
  the error-controlled rule asks for several nodes per step of the forward solve.

Accuracy comes first. The checkpointed gradient is the exact gradient of the forward
discretisation, so its error against the exact gradient of the ODE's loss follows the
forward solve's error; the quadrature passes' error follows the backward solve's, as
torchdiffeq's adjoint's does. At loose tolerances the first is much the larger
(docs/benchmarks.md), so ``'auto'`` considers the checkpoint only when the forward
``rtol`` is at most :data:`CHECKPOINT_RTOL`.
"""

import torch
from torch.func import vmap

from .backward_solves import BackwardSolves
from .checkpoint import CheckpointBackward, checkpoint_problem
from .interpolated import InterpolatedBackward, interpolated_problem
from .notices import warn_once
from .propagator import STEP_EVALUATIONS, propagator_plan
from .restart import RestartBackward

#: Restart evaluations per checkpoint evaluation: a recomputation with a graph plus a
#: product that also reaches the parameters, against an evaluation plus a product with
#: respect to the state alone. Small functions cost their overhead either way (about 1);
#: wide networks pay about 1.5 for the parameters' share of the product.
CHECKPOINT_COST = 1.2

#: The checkpoint is taken only when it is expected to cost less than 1/MARGIN of the
#: restart method: where the two cost about the same, the quadrature passes' accuracy
#: (that of torchdiffeq's adjoint) is worth keeping.
MARGIN = 2.0

#: The loosest forward ``rtol`` at which ``'auto'`` considers the checkpoint.
CHECKPOINT_RTOL = 1e-5


def tight_enough(rtol):
    """Whether the forward solve's ``rtol`` (number, tensor or tuple) is at most
    :data:`CHECKPOINT_RTOL` everywhere."""
    values = rtol if isinstance(rtol, (tuple, list)) else (rtol,)
    return all(float(torch.as_tensor(value).max()) <= CHECKPOINT_RTOL for value in values)

#: Evaluations of the first backward step of an interval (one dopri5 step).
RESTART_STEP = STEP_EVALUATIONS


def restart_estimate(forward_nfe, intervals, controlled, vectorised):
    """Restart evaluations the quadrature backward pass is expected to take.

    Args:
        forward_nfe: int, evaluations of the forward solve.
        intervals: int, observation intervals (``len(t) - 1``).
        controlled: bool, ``gtol=None`` (each interval's solve starts cold, and the
            error-controlled quadrature tries up to four rules).
        vectorised: bool, ``vmap`` batches ``func`` over quadrature nodes.
    """
    per_interval = RESTART_STEP * (2 if controlled else 1)
    solve = max(forward_nfe, per_interval * intervals)
    # Unbatched nodes: each is one evaluation with a full vector–Jacobian product. The
    # error-controlled rules start at 0.1 · NFE nodes and double up to four times (about
    # 1.5 · NFE nodes in all when the checks are hard to pass); the paper's rule takes
    # 0.1 · NFE with gtol = 0.1.
    nodes = 0 if vectorised else CHECKPOINT_COST * forward_nfe * (1.5 if controlled else 0.1)
    return solve + nodes


def prefers_checkpoint(forward_nfe, step_evaluations, intervals, controlled, vectorised):
    """Whether ``'auto'`` takes the checkpointed backward (it fits the memory budget).

    Args:
        forward_nfe: int, evaluations of the forward solve.
        step_evaluations: int, evaluations of its accepted steps (what the checkpointed
            pass repeats).
        intervals, controlled, vectorised: as for :func:`restart_estimate`.
    """
    return (MARGIN * CHECKPOINT_COST * step_evaluations
            < restart_estimate(forward_nfe, intervals, controlled, vectorised))


class _AnyTape:
    """Stands for a tape that will be recorded, in :func:`records_steps`."""

    keep_stages = True
    overflow = False


_ANY_TAPE = _AnyTape()


def choose(record):
    """The backward pass to run for this solve (``settings.backward`` and the rules above).

    Args:
        record: :class:`~.record.ForwardRecord`.

    Returns:
        A backward pass: :class:`~.checkpoint.CheckpointBackward`,
        :class:`~.propagator.PropagatorBackward` or :class:`~.restart.RestartBackward`.
    """
    if _use_checkpoint(record):
        return CheckpointBackward(record)
    solves = BackwardSolves(record)
    backward = record.settings.backward
    if backward == 'interpolated':
        reason = interpolated_problem(record.settings, record.tape)
        if reason is None:
            return InterpolatedBackward(record, solves)
        warn_once(f"odeint_adjoint_gq: backward='interpolated' cannot be used ({reason}); "
                  "using backward='restart'.", record.settings.call_site)
    if backward in ('auto', 'propagator'):
        propagator = propagator_plan(record, solves, explicit=backward == 'propagator')
        if propagator is not None:
            return propagator
    return RestartBackward(record, solves)


def records_steps(settings):
    """``(steps, stages)``: whether the forward pass records its steps (where the
    checkpoint may be chosen: asked for, or ``'auto'`` at a tight enough ``rtol``, and
    covering the method), and their stages too (where the interpolating pass may be)."""
    eligible = settings.backward == 'checkpoint' or (settings.backward == 'auto'
                                                     and tight_enough(settings.rtol))
    checkpoint = eligible and checkpoint_problem(settings.method,
                                                 settings.event_fn is not None) is None
    stages = (settings.backward in ('auto', 'interpolated')
              and interpolated_problem(settings, _ANY_TAPE) is None)
    return checkpoint or stages, stages


def _use_checkpoint(record):
    settings, tape = record.settings, record.tape
    if settings.backward in ('restart', 'propagator', 'interpolated'):
        return False
    reason = checkpoint_problem(settings.method, settings.event_fn is not None)
    if reason is None and tape is not None and tape.overflow:
        reason = (f'the recorded steps passed checkpoint_memory={settings.checkpoint_memory} '
                  'bytes')
    if settings.backward == 'checkpoint':
        if reason is not None:
            warn_once(f"odeint_adjoint_gq: backward='checkpoint' cannot be used ({reason}); "
                      "using backward='restart'.", settings.call_site)
        return reason is None
    if reason is not None or tape is None:
        return False
    steps = tape.step_evaluations if tape.adaptive else record.forward_nfe
    rule = (record.forward_nfe, steps, len(record.times) - 1, settings.gtol is None)
    if prefers_checkpoint(*rule, vectorised=True):
        return True
    if not prefers_checkpoint(*rule, vectorised=False):
        return False
    return not _vectorisable(settings.field, record.times, record.solution)


def _vectorisable(field, times, solution):
    """Whether ``vmap`` batches ``field`` over quadrature nodes (one evaluation)."""
    with torch.enable_grad():
        try:
            vmap(field)(times[-1:], solution[-1:].detach().requires_grad_(True))
        except RuntimeError:
            return False
    return True
