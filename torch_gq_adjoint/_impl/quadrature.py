"""Gauss–Legendre nodes, weights and the node-count rule of the GQ adjoint."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

#: Upper bound on the number of quadrature nodes in one interval, as in the paper.
MAX_NODES = 64


def node_count(gtol: float, forward_nfe: int, interval_length: float, total_length: float) -> int:
    """Number of Gauss–Legendre nodes for one interval of the backward pass.

    ``min(ceil(gtol * forward_nfe * |interval_length| / |total_length|), MAX_NODES)``,
    and at least one node.

    Args:
        gtol: positive float, the paper's ``C``; larger means more nodes.
        forward_nfe: int, function evaluations of the forward solve.
        interval_length: float, ``t_i - t_{i-1}`` (sign ignored).
        total_length: float, ``t_N - t_0`` (sign ignored, non-zero).

    Returns:
        int in ``[1, MAX_NODES]``.
    """
    share = abs(interval_length) / abs(total_length)
    count = math.ceil(gtol * forward_nfe * share)
    return int(min(max(count, 1), MAX_NODES))


@functools.lru_cache(maxsize=MAX_NODES)
def _reference_rule(count: int) -> tuple[np.ndarray, np.ndarray]:
    # leggauss is exact to float64 precision; caching keeps it off the hot path.
    nodes, weights = np.polynomial.legendre.leggauss(count)
    return nodes, weights


def gauss_legendre(
    start: float, end: float, count: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the ``count``-point Gauss–Legendre rule on ``[start, end]``.

    The nodes are ordered from ``start`` to ``end``; the weights carry the sign of
    ``end - start``, so ``sum(w * g(tau))`` approximates the signed integral
    ``int_start^end g(t) dt`` whichever way the interval runs.

    Args:
        start, end: floats, the interval's end points (``start != end``).
        count: int, number of nodes (>= 1).
        dtype, device: of the returned tensors.

    Returns:
        ``(nodes, weights)``, two 1-D tensors of length ``count``.
    """
    reference_nodes, reference_weights = _reference_rule(count)
    half_width = (end - start) / 2.0
    middle = (end + start) / 2.0
    # With half_width < 0 the mapped nodes run from start down to end, as wanted.
    nodes = half_width * reference_nodes + middle
    weights = half_width * reference_weights
    return (
        torch.as_tensor(nodes, dtype=dtype, device=device),
        torch.as_tensor(weights, dtype=dtype, device=device),
    )


#: Nodes per grid step for fixed-grid methods under the error-controlled rule: a rule
#: exact to degree 2m - 1 on each step keeps the quadrature error below the method's
#: own O(h^order) (with the O(h⁴) Hermite interpolant of the grid).
NODES_PER_GRID_STEP = {
    'euler': 1,
    'midpoint': 1,
    'heun2': 1,
    'heun3': 2,
    'rk4': 2,
    'explicit_adams': 2,
    'implicit_adams': 2,
    'fixed_adams': 2,
}

#: The error-controlled rule starts from the paper's rule with this ``C``.
FIRST_GTOL = 0.1

#: How many rules (each with twice the nodes of the last, at most MAX_NODES) the
#: error-controlled rule reads off one interval's dense output.
CANDIDATE_RULES = 4


def grid_node_count(method: str, steps: int) -> int:
    """Nodes for an interval a fixed-grid method crossed in ``steps`` steps (1 to 64)."""
    return int(min(max(NODES_PER_GRID_STEP[method] * steps, 1), MAX_NODES))


def candidate_counts(first: int) -> list[int]:
    """Node counts tried in turn by the error-controlled rule: ``first``, doubling, ≤ 64."""
    counts = [first]
    while len(counts) < CANDIDATE_RULES and counts[-1] < MAX_NODES:
        counts.append(min(2 * counts[-1], MAX_NODES))
    return counts
