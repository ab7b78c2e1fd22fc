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
"""

from .propagator import STEP_EVALUATIONS

#: Restart evaluations per checkpoint evaluation: a recomputation with a graph plus a
#: product that also reaches the parameters, against an evaluation plus a product with
#: respect to the state alone.
CHECKPOINT_COST = 1.5

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
    # Unbatched nodes: the error-controlled rules start at 0.1 · NFE nodes and double;
    # each node is one evaluation with a full vector–Jacobian product.
    nodes = 0 if vectorised else CHECKPOINT_COST * forward_nfe * (0.3 if controlled else 0.1)
    return solve + nodes


def prefers_checkpoint(forward_nfe, step_evaluations, intervals, controlled, vectorised):
    """Whether ``'auto'`` takes the checkpointed backward (it fits the memory budget).

    Args:
        forward_nfe: int, evaluations of the forward solve.
        step_evaluations: int, evaluations of its accepted steps (what the checkpointed
            pass repeats).
        intervals, controlled, vectorised: as for :func:`restart_estimate`.
    """
    return (CHECKPOINT_COST * step_evaluations
            < restart_estimate(forward_nfe, intervals, controlled, vectorised))
