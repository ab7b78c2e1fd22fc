"""Gauss–Legendre nodes, weights and the node-count rule of the GQ adjoint."""

import functools
import math

import numpy as np
import torch

#: Upper bound on the number of quadrature nodes in one interval (PAPER.md §1).
MAX_NODES = 64


def node_count(gtol, forward_nfe, interval_length, total_length):
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
def _reference_rule(count):
    # leggauss is exact to float64 precision; caching keeps it off the hot path.
    nodes, weights = np.polynomial.legendre.leggauss(count)
    return nodes, weights


def gauss_legendre(start, end, count, dtype, device):
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
    return (torch.as_tensor(nodes, dtype=dtype, device=device),
            torch.as_tensor(weights, dtype=dtype, device=device))
