"""The paper's rule as a pass the measured plan of ``backward='auto'`` may take, the
checkpoint at coarse tolerances likewise, and the check of accuracy that admits either.

The paper's backward pass (Section 3: the restart method, about ``C · NFE`` quadrature
nodes with ``C = gtol = 0.1``, each backward solve starting from the last accepted step
of the one before) is often the fastest pass there is, but its accuracy depends on the
problem: on the nested spheres of Section 5 its gradient is as accurate as the adjoint's,
on sines with many output times it is a hundred times less (docs/benchmarks.md). The
checkpoint (the gradient of the forward's own discretisation, through its kept graph
where it fits) costs about direct backprop's time; its error follows the forward
solve's, which at coarse tolerances may be larger than the adjoint's or not. So the
planner measures either only where it is checked, once in each plan: the first call
that runs it also computes, outside the clock, the error-controlled restart pass's
gradient and a reference from a solve at :data:`TIGHTER` times tighter tolerances
(forward and backward); the pass stays a candidate where its gradient is at most
:data:`ERROR_FACTOR` times as far from the reference as the error-controlled pass's.
Where both await their check and the checkpoint runs first (the first plan measures it
before the paper's rule), its call also
computes the paper's rule's gradient (which needs only the solution) and judges it
against the same reference (:meth:`AccuracyCheck.judge`): one tighter solve checks both.
Where the pass checked on its own call is not admitted, that call returns the
error-controlled pass's gradient.

Both are offered checked only at coarse tolerances (``rtol`` above 1e-5: at tight ones
the checkpoint is a candidate without a check, and the paper's rule is not offered),
where the reference solve can be :data:`MIN_TIGHTER` times tighter while staying
:data:`EPSILONS` machine epsilons above the rounding floor, for adaptive methods,
without events, and never under planning by estimate: the estimate keeps the adjoint's
accuracy without a check.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

from . import checks
from .record import BackwardResult, ForwardRecord
from .restart import RestartBackward

if TYPE_CHECKING:
    from .gq_adjoint import Settings

#: The name the plan and ``info['backward']`` give the paper's rule.
PAPER = 'paper'
#: The paper's ``gtol`` (Section 5 uses 0.1 throughout).
PAPER_GTOL = 0.1
#: How much tighter the reference solve's tolerances are.
TIGHTER = 100.0
#: The least tightening that makes a reference, and the floor of its ``rtol`` in machine
#: epsilons of the state's dtype.
MIN_TIGHTER = 10.0
EPSILONS = 10.0
#: The paper's rule is admitted where its gradient's distance from the reference is at
#: most this many times the error-controlled pass's.
ERROR_FACTOR = 2.0


def check_problem(settings: Settings, dtype: torch.dtype) -> Optional[str]:
    """Why the accuracy of a pass cannot be checked for these settings, so that the
    measured plan may not offer a pass that needs the check (None if it can)."""
    if settings.gtol is not None:
        return 'a quadrature rule was given (gtol): the check compares with gtol=None'
    if settings.method not in checks.ADAPTIVE_METHODS:
        return 'not an adaptive method'
    if settings.adjoint_method != settings.method:
        return 'another method solves backwards'
    if settings.event_fn is not None:
        return 'event_fn: the reference solve would end at another time'
    tolerances = (settings.rtol, settings.atol, settings.adjoint_rtol, settings.adjoint_atol)
    if not all(_number(value) for value in tolerances):
        return 'tolerances given as tensors'
    if checks.tight_enough(settings.rtol):
        return 'tight tolerances (rtol at most 1e-5): the checkpoint serves unchecked'
    if float(settings.rtol) / _reference_rtol(float(settings.rtol), dtype) < MIN_TIGHTER:
        return f'no reference solve {MIN_TIGHTER:g} times tighter above the rounding floor'
    return None


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _reference_rtol(rtol: float, dtype: torch.dtype) -> float:
    return max(rtol / TIGHTER, EPSILONS * torch.finfo(dtype).eps)


class PaperBackward(RestartBackward):
    """The restart pass under the paper's rule (``gtol`` :data:`PAPER_GTOL`, carried
    steps), as a candidate of the measured plan.

    Args:
        record: :class:`~.record.ForwardRecord` of a solve with ``gtol=None``.
    """

    name = PAPER

    @staticmethod
    def problem(record: ForwardRecord) -> Optional[str]:
        """Why the paper's rule may not serve the solve (None if it may)."""
        return check_problem(record.settings, record.solution.dtype)

    def __init__(self, record: ForwardRecord) -> None:
        super().__init__(paper_record(record))


def paper_record(record: ForwardRecord) -> ForwardRecord:
    """``record`` with the paper's rule in its settings (the probe of ``vmap`` carried
    over)."""
    settings = dataclasses.replace(record.settings, gtol=PAPER_GTOL)
    changed = dataclasses.replace(record, settings=settings)
    changed._vectorisable = record._vectorisable
    return changed


@dataclasses.dataclass
class AccuracyCheck:
    """The check's outcome.

    Attributes:
        ratio: the checked pass's gradient's distance from the reference over the
            error-controlled pass's (0 where both are exact).
        admitted: ``ratio`` is at most :data:`ERROR_FACTOR`.
        controlled: the error-controlled restart pass's result for the same cotangents
            (None where it failed).
        evaluations: evaluations of ``func`` the check made.
        failed: why the check could not be made (None where it was).
        reference: the tighter solve's gradient, flat, in float64 (None where the
            check failed): what :meth:`judge` measures another pass's result against.
        controlled_distance: the error-controlled pass's distance from ``reference``.
    """

    ratio: float
    admitted: bool
    controlled: BackwardResult | None
    evaluations: int
    failed: str | None = None
    reference: torch.Tensor | None = None
    controlled_distance: float = float('nan')

    def judge(self, result: BackwardResult) -> tuple[float, bool]:
        """Another pass's ``result`` for the same call's cotangents, measured against
        this check's reference and error-controlled gradient: ``(ratio, admitted)``, as
        if it had been checked itself (one tighter solve judges every pass of the call).

        Raises:
            ValueError: the check failed (it holds no reference).
        """
        if self.reference is None:
            raise ValueError(f'judge: the check failed ({self.failed}); it has no reference.')
        distance = float((_flat(result) - self.reference).norm())
        # 0 where the pass is exact, infinite where only the error-controlled pass is.
        if distance == 0.0:
            ratio = 0.0
        elif self.controlled_distance == 0.0:
            ratio = float('inf')
        else:
            ratio = distance / self.controlled_distance
        return ratio, ratio <= ERROR_FACTOR


def check_accuracy(
    record: ForwardRecord,
    y0_parts: Sequence[torch.Tensor],
    grad_solution: torch.Tensor,
    checked: BackwardResult,
) -> AccuracyCheck:
    """Compare the checked pass's result ``checked`` with the error-controlled restart
    pass's, both against a solve at :data:`TIGHTER` times tighter tolerances from
    ``y0``, for the output cotangents ``grad_solution`` ``(T, n)``. A check that cannot
    be made (a step size that underflows at the tighter tolerances) leaves the pass not
    admitted; it never raises."""
    controlled: BackwardResult | None = None
    evaluations = 0
    try:
        controlled = RestartBackward(record)(grad_solution)
        evaluations = controlled.costs.get('backward_nfe', 0)
        reference, reference_evaluations = _reference(record, y0_parts, grad_solution)
    except Exception as error:  # noqa: BLE001 - any failure of the check refuses the rule
        return AccuracyCheck(
            float('inf'), False, controlled, evaluations, f'{type(error).__name__}: {error}'
        )
    found = _flat(reference)
    check = AccuracyCheck(
        float('nan'),
        False,
        controlled,
        evaluations + reference_evaluations,
        reference=found,
        controlled_distance=float((_flat(controlled) - found).norm()),
    )
    # The checked pass is judged as any pass beside it is.
    ratio, admitted = check.judge(checked)
    return dataclasses.replace(check, ratio=ratio, admitted=admitted)


def _reference(
    record: ForwardRecord, y0_parts: Sequence[torch.Tensor], grad_solution: torch.Tensor
) -> tuple[BackwardResult, int]:
    """The error-controlled restart pass's result after a forward solve from ``y0`` at
    :data:`TIGHTER` times tighter tolerances (both ways), and the evaluations it took."""
    from .recorders import record_forward  # the recorders import the pass table

    settings = record.settings
    rtol = _reference_rtol(float(settings.rtol), record.solution.dtype)
    scale = rtol / float(settings.rtol)
    tight_settings = dataclasses.replace(
        settings,
        rtol=rtol,
        atol=float(settings.atol) * scale,
        adjoint_rtol=float(settings.adjoint_rtol) * scale,
        adjoint_atol=float(settings.adjoint_atol) * scale,
        backward='restart',
        info=None,
        plan=None,
    )
    recording = record_forward(tight_settings, record.t, tuple(y0_parts), record.params, set())
    layout = settings.layout
    solution = layout.flatten_series(
        tuple(recording.result) if layout.is_tuple else recording.result
    )
    tight_record = ForwardRecord(
        tight_settings,
        record.t,
        record.times,
        solution,
        record.params,
        recording.nfe,
        recording.last_step,
        forward_steps=recording.accepted,
    )
    reference = RestartBackward(tight_record)(grad_solution)
    return reference, recording.nfe + reference.costs.get('backward_nfe', 0)


def _flat(result: BackwardResult) -> torch.Tensor:
    parts = [result.grad_y0.reshape(-1)] + [grad.reshape(-1) for grad in result.param_grads]
    return torch.cat([part.double() for part in parts])
