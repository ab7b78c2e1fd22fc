"""Error-controlled quadrature of the parameter integral (``gtol=None``).

The paper's rule fixes each interval's node count from the forward solve's NFE and a
constant ``C``; how accurate that is depends on the problem. Here each interval's count
is chosen from an error estimate instead, at almost no cost, by checking the rule on
two integrals whose values the backward solve already knows:

- ``∫ aᵀ ∂f/∂z dt = a(t_{i-1}⁺) - a(t_i⁻)``, because ``da/dt = -aᵀ ∂f/∂z``;
- ``∫ aᵀ ∂f/∂t dt = a(t_i⁻)·f(t_i) - a(t_{i-1}⁺)·f(t_{i-1})``, because along the flow
  ``d(aᵀf)/dt = aᵀ ∂f/∂t``.

Their integrands ``aᵀ ∂f/∂z`` and ``aᵀ ∂f/∂t`` are built from the same ``a(t)``,
``z(t)`` and the same layers of ``f`` as the parameter integrand ``aᵀ ∂f/∂θ``, and they
come out of the very backward pass that computes it (gradients with respect to the node
states and times, besides the parameters). The references carry the backward solve's
own error, so they can confirm a rule only to the solver's tolerance: a rule passes on
an interval when both checks hold to ``rtol`` (in the RMS norm the solver uses), or when
it agrees with the previous, smaller rule to the stricter target below: then the smaller
one was already accurate, and the larger one is more so.

The candidate rules start at the paper's with ``C = 0.1`` and double, up to
:data:`~torch_gq_adjoint._impl.quadrature.CANDIDATE_RULES` rules (and 64 nodes); ``z``
and ``a`` at every candidate node come from one backward solve. A third check needs no
evaluation of ``f`` at all and picks the rule to start from: ``∫ a ⊙ z dt`` behaves like
the parameter integrand of a linear layer (``a zᵀ``), which is rougher than ``a`` alone,
and each rule's error on it is estimated by the next rule. An interval whose rule fails
tries the next; retries need only ``∂f/∂z`` and ``∂f/∂t``, and the parameter gradient is
then corrected once, by adding the chosen rule and subtracting the first (one batch).
Refinement also stops where the estimates stop falling (``STALL``): ``z`` and ``a`` come
from an interpolant whose own error no number of nodes can remove.

The target is ``SAFETY · rtol`` relative to the size of ``a`` (``z`` for the third check),
not the absolute ``atol``: the adjoint's scale is the loss's, arbitrary, and a relative
error is what the gradient inherits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Union, cast

import torch

if TYPE_CHECKING:
    from .parameter_integral import NodeEvaluator

#: One interval's quadrature sums: ``(Σ w g_z, Σ w g_t)``.
Sums = tuple[torch.Tensor, torch.Tensor]

#: The quadrature error is held below this fraction of the backward solve's ``rtol``
#: (relative to the adjoint's size): the solver's own global error usually sits well
#: below its tolerance, and a quadrature error at the tolerance would dominate it.
SAFETY = 0.01

#: Refinement stops when, at the solver's error level, a rule's estimate is more than
#: this fraction of the last one (see ``_stalled``).
STALL = 0.1


@dataclass
class Rule:
    """One candidate rule on one interval: nodes, weights and ``z``, ``a`` at the nodes."""

    times: torch.Tensor  # (K,)
    weights: torch.Tensor  # (K,), signed so that Σ w g ≈ ∫_{t_{i-1}}^{t_i} g dt
    states: torch.Tensor  # (K, n)
    adjoints: torch.Tensor  # (K, n)

    def cotangents(self) -> torch.Tensor:
        return self.adjoints * self.weights.to(self.adjoints.dtype).unsqueeze(-1)


@dataclass
class Interval:
    """What the backward solve of ``[t_{i-1}, t_i]`` leaves for the quadrature."""

    index: int  # i
    rules: list[Rule]  # increasing node counts
    adjoint_start: torch.Tensor  # a(t_i⁻), (n,)
    adjoint_end: torch.Tensor  # a(t_{i-1}⁺), (n,)
    state_start: torch.Tensor  # z(t_i), (n,)
    state_end: torch.Tensor  # z(t_{i-1}), (n,)
    length: float  # |t_i - t_{i-1}|
    time_check: bool = True  # False where f jumps inside the interval
    first: int = 0
    chosen: int = 0
    estimates: list[float] = field(default_factory=list)  # each retry's change, in target units


def _sum_by_interval(values: torch.Tensor, counts: list[int]) -> torch.Tensor:
    return torch.stack([chunk.sum(dim=0) for chunk in torch.split(values, counts)])


class ControlledQuadrature:
    """Chooses a rule per interval from the checks above and integrates with it.

    Args:
        evaluator: :class:`~torch_gq_adjoint._impl.parameter_integral.NodeEvaluator`.
        rtol, atol: tolerances of the backward solve (numbers or flat ``(n,)`` tensors).
        field_values: callable returning ``f(t_i, z_i)`` at every output time,
            ``(T, n)``, computed on first use (only time-dependent ``f`` needs it).
    """

    def __init__(
        self,
        evaluator: NodeEvaluator,
        rtol: Union[float, torch.Tensor],
        atol: Union[float, torch.Tensor],
        field_values: Callable[[], torch.Tensor],
    ) -> None:
        self.evaluator = evaluator
        rtol, atol = (float(torch.as_tensor(value).max()) for value in (rtol, atol))
        self.target = SAFETY * (rtol if rtol > 0 else atol)
        self.field_values = field_values

    def integrate(self, intervals: list[Interval]) -> list[torch.Tensor]:
        """Return the parameter gradients; set each interval's ``chosen`` rule."""
        if not intervals or not self.evaluator.params:
            return self.evaluator.grads
        for interval in intervals:
            interval.chosen = interval.first = self._first_rule(interval)
        # Every interval's first rule in one batch, with the parameter gradient.
        previous = self._check_values(intervals, params=True)
        pending = self._judge(intervals, previous, None)
        while pending:
            pending = [
                interval for interval in pending if interval.chosen + 1 < len(interval.rules)
            ]
            if not pending:
                break
            prior = [previous[id(interval)] for interval in pending]
            for interval in pending:
                interval.chosen += 1
            values = self._check_values(pending, params=False)
            pending = self._judge(pending, values, prior)
            previous.update(values)
        self._correct(intervals)
        return self.evaluator.grads

    def _first_rule(self, interval: Interval) -> int:
        """The first rule that integrates ``a ⊙ z`` to the target, as the next rule judges.

        ``a ⊙ z`` is known at every candidate node without evaluating ``f``; its
        products of adjoint and state behave like the parameter integrand of a linear
        layer (``a zᵀ``), which is rougher than ``aᵀ∂f/∂z`` (``a`` alone).
        """
        if len(interval.rules) == 1:
            return 0
        values = torch.stack(
            [(rule.cotangents() * rule.states).sum(dim=0) for rule in interval.rules]
        )
        scale = (
            self.target
            * interval.length
            * torch.maximum(_norm(interval.adjoint_start), _norm(interval.adjoint_end))
            * torch.maximum(_norm(interval.state_start), _norm(interval.state_end))
        )
        # changes[k] = |Q_{k+1} - Q_k|: the error of rule k, estimated by the next one.
        changes = _ratio(_norm(values[1:] - values[:-1]), scale).tolist()
        for level, change in enumerate(changes):
            if change <= 1.0 or (level and _stalled(changes[level - 1], change)):
                return level
        return len(interval.rules) - 1

    def _check_values(self, intervals: list[Interval], params: bool) -> dict[int, Sums]:
        """Evaluate each interval's chosen rule; return ``{id: (Σ w g_z, Σ w g_t)}``."""
        rules = [interval.rules[interval.chosen] for interval in intervals]
        counts = [len(rule.times) for rule in rules]
        grad_z, grad_t = self.evaluator.evaluate(
            torch.cat([rule.times for rule in rules]),
            torch.cat([rule.states for rule in rules]),
            torch.cat([rule.cotangents() for rule in rules]),
            params=params,
            state_grads=True,
            time_grads=True,
        )
        # Both asked for above: tensors, not None.
        sums_z = _sum_by_interval(cast(torch.Tensor, grad_z), counts)
        sums_t = _sum_by_interval(cast(torch.Tensor, grad_t), counts)
        return {
            id(interval): (sums_z[number], sums_t[number])
            for number, interval in enumerate(intervals)
        }

    def _judge(
        self,
        intervals: list[Interval],
        values: dict[int, Sums],
        prior: Optional[list[Sums]],
    ) -> list[Interval]:
        """Return the intervals whose current rule fails both tests (one host sync)."""
        starts = torch.stack([interval.adjoint_start for interval in intervals])
        ends = torch.stack([interval.adjoint_end for interval in intervals])
        scale = self.target * torch.maximum(_norm(starts), _norm(ends))
        sums_z = torch.stack([values[id(interval)][0] for interval in intervals])
        sums_t = torch.stack([values[id(interval)][1] for interval in intervals])
        ratios = [_ratio(_norm(sums_z - (ends - starts)), scale)]
        time_scale = None
        if bool((sums_t != 0).any()):
            fields = self.field_values()
            after = fields[[interval.index for interval in intervals]]
            before = fields[[interval.index - 1 for interval in intervals]]
            reference = (starts * after).sum(-1) - (ends * before).sum(-1)
            time_scale = self.target * (
                (starts * after).abs().sum(-1) + (ends * before).abs().sum(-1)
            )
            checked = torch.tensor(
                [interval.time_check for interval in intervals], device=sums_t.device
            )
            time_scale = torch.where(checked, time_scale, torch.inf)
            ratios.append(_ratio(sums_t - reference, time_scale))
        # The references carry the backward solve's own error: they can confirm a rule only
        # to the solver's tolerance (rtol, not the stricter target).
        error = SAFETY * torch.stack(ratios).amax(dim=0)
        change = None
        if prior is not None:
            prior_z = torch.stack([item[0] for item in prior])
            prior_t = torch.stack([item[1] for item in prior])
            changes = [_ratio(_norm(sums_z - prior_z), scale)]
            if time_scale is not None:
                changes.append(_ratio(sums_t - prior_t, time_scale))
            change = torch.stack(changes).amax(dim=0).tolist()
        failed = []
        for number, (interval, estimate) in enumerate(zip(intervals, error.tolist())):
            accepted = estimate <= 1.0
            if change is not None:
                interval.estimates.append(change[number])
                history = interval.estimates
                accepted = (
                    accepted
                    or history[-1] <= 1.0
                    or (len(history) >= 2 and _stalled(history[-2], history[-1]))
                )
            if not accepted:
                failed.append(interval)
        return failed

    def _correct(self, intervals: list[Interval]) -> None:
        """Swap the first rule's parameter contribution for the chosen rule's."""
        changed = [interval for interval in intervals if interval.chosen != interval.first]
        if not changed:
            return
        rules = []
        for interval in changed:
            first = interval.rules[interval.first]
            rules.append(interval.rules[interval.chosen])
            rules.append(Rule(first.times, -first.weights, first.states, first.adjoints))
        self.evaluator.evaluate(
            torch.cat([rule.times for rule in rules]),
            torch.cat([rule.states for rule in rules]),
            torch.cat([rule.cotangents() for rule in rules]),
        )


def _stalled(before: float, after: float) -> bool:
    """Whether refining stopped paying at the solver's own error level.

    Gauss rules converge geometrically on smooth integrands: doubling the nodes gains
    orders of magnitude. ``z`` and ``a`` are read off the solver's interpolant, whose
    error (about ``rtol``) no number of nodes removes; once the estimate is down to that
    level (``1 / SAFETY`` in units of the target) and falls by less than ``1 / STALL``
    per doubling, more nodes only cost time.
    """
    return after > STALL * before and after <= 1.0 / SAFETY


def _norm(values: torch.Tensor) -> torch.Tensor:
    """RMS over the last dimension: torchdiffeq's default norm."""
    return values.pow(2).mean(dim=-1).sqrt()


def _ratio(difference: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``|difference| / scale``; 0 where both vanish (an interval with no adjoint)."""
    tiny = torch.finfo(difference.dtype).tiny
    return difference.abs() / scale.clamp_min(tiny)
