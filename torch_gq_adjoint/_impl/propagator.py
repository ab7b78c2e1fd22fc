"""The per-sample propagator backward pass: one backward solve for any number of times.

Between observation times the adjoint is linear, ``da/ds = A(s) a`` with
``A = -direction · ∂f/∂zᵀ`` (``s = direction · t``), and at each observation time it
jumps by the loss gradient ``g_k``. With the propagator ``Ψ`` (``dΨ/ds = A Ψ``,
``Ψ = I`` at the anchor, no jumps),

    a(s) = Ψ(s) c_k  for s between t_k and t_{k-1},   c_k = Σ_{j ≥ k} Ψ(s_j)⁻¹ g_j.

When ``f`` treats the samples of a batch independently, ``∂f/∂z`` is block diagonal and
``Ψ`` is one d × d matrix per sample (d: the per-sample state size), so ``[z, Ψ]`` is
solved backwards once over the whole horizon with the solver's natural steps (d
vector–Jacobian products per evaluation, batched), instead of restarting ``[z, a]`` at
every observation time (at least one full step each). ``z`` and ``Ψ`` at the observation
times and quadrature nodes come off the dense output, ``a`` at the nodes in closed form.

Guards, each checked before its result is used:

- independence: at the first, a middle and the last output time, cotangents on the
  samples with bit b of their index set (and on the others), for every bit b, must leave
  every other sample's gradient exactly zero, else the function couples samples (batch
  norm, attention over the batch, a cascade along a 1-D state) and another pass is used,
  with a warning for a batched state (:func:`mixes_samples`);
- conditioning: ``Ψ(s_k)⁻¹`` amplifies the solver's relative error by the condition
  number of ``Ψ(s_k)``; where it passes :data:`COND_LIMIT`, the propagator is anchored
  anew at that time (``Ψ = I``, ``z`` from the forward pass), and only the rest of the
  horizon is solved again;
- drift: ``z`` integrated backwards over many intervals must stay within
  :data:`DRIFT_LIMIT` tolerances of the forward solution at every observation time, or
  the propagator is anchored anew there too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from . import checks
from .backward_options import flat_state_norm, rounding_floor
from .backward_solves import BackwardSolves, integrate_intervals
from .error_control import Interval, Rule
from .record import BackwardResult, ForwardRecord
from .state import FlatField, StateLayout

if TYPE_CHECKING:
    from .gq_adjoint import Settings

#: Largest condition number of Ψ(t_k) accepted before anchoring anew.
COND_LIMIT = 100.0

#: Largest drift of the backward z from the forward solution, in units of the tolerance
#: (atol + rtol |z|, RMS), accepted before anchoring anew.
DRIFT_LIMIT = 100.0

#: With ``gtol=None`` the ``[z, Ψ]`` solve runs at this fraction of the adjoint
#: tolerances. One solve over the whole horizon carries its local errors across every
#: interval, and ``Ψ(t_k)⁻¹`` amplifies them, where the restart method starts each short
#: interval afresh from the forward solution; the tighter solve buys back that accuracy.
TOLERANCE_FACTOR = 0.01


def propagator_tolerance(value: Any, dtype: torch.dtype) -> Any:
    """The tolerance of the ``[z, Ψ]`` solve for an adjoint tolerance ``value``: that times
    :data:`TOLERANCE_FACTOR`, floored at :func:`~.backward_options.rounding_floor` of
    ``dtype``, and never looser than ``value`` itself (a number, a tensor, or a tuple of them)."""
    if isinstance(value, (tuple, list)):
        return type(value)(propagator_tolerance(entry, dtype) for entry in value)
    floor = rounding_floor(dtype)
    if torch.is_tensor(value):
        return torch.minimum(value, torch.clamp(value * TOLERANCE_FACTOR, min=floor))
    return min(value, max(value * TOLERANCE_FACTOR, floor))


class SampleLayout:
    """The flat state as ``(B, d)``: one row per sample (the first dimension of each part).

    Args:
        layout: :class:`~torch_gq_adjoint._impl.state.StateLayout`.

    Raises:
        ValueError: a part without a batch dimension, or parts with different batch sizes.
    """

    def __init__(self, layout: StateLayout) -> None:
        shapes = layout.shapes
        if any(len(shape) == 0 for shape in shapes):
            raise ValueError('every part of y0 needs a batch dimension (dimension 0)')
        self.batch = shapes[0][0]
        if any(shape[0] != self.batch for shape in shapes):
            raise ValueError('the parts of y0 have different batch sizes (dimension 0)')
        self.widths = [numel // self.batch for numel in layout.numels]
        self.numels = layout.numels
        self.dim = sum(self.widths)
        # A 1-D state may be one trajectory rather than a batch of scalars.
        self.batched = all(len(shape) >= 2 for shape in shapes)

    def to_samples(self, flat: torch.Tensor) -> torch.Tensor:
        """``(..., n)`` -> ``(..., B, d)``."""
        leading = flat.shape[:-1]
        pieces = torch.split(flat, list(self.numels), dim=-1)
        return torch.cat(
            [
                piece.reshape(*leading, self.batch, width)
                for piece, width in zip(pieces, self.widths)
            ],
            dim=-1,
        )

    def from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        """``(..., B, d)`` -> ``(..., n)``."""
        leading = samples.shape[:-2]
        pieces = torch.split(samples, self.widths, dim=-1)
        return torch.cat([piece.reshape(*leading, -1) for piece in pieces], dim=-1)


def mixes_samples(
    field: FlatField, times: torch.Tensor, states: torch.Tensor, samples: SampleLayout
) -> bool:
    """Whether ``field`` lets any sample's output depend on another sample's state, at any
    of the points ``(times[k], states[k])``: the premise of the propagator, established
    rather than guessed.

    For each bit ``b`` of the sample index, a cotangent on the samples whose bit ``b`` is
    set (and one on the others) must not reach the rest: any two samples differ in some
    bit, so a coupling between any two is caught by one of these ``2·⌈log₂ B⌉``
    vector–Jacobian products (batched into one per point). The cotangents' values are
    fixed and irregular (no draw from the random number generator, and no accidental
    cancellation of a structural dependence); a zero in autograd's result is exact.
    """
    batch = samples.batch
    if batch == 1:
        return False
    bits = max(1, (batch - 1).bit_length())
    index = torch.arange(batch)
    members = []
    for bit in range(bits):
        member = (index >> bit) & 1 == 1
        members += [member, ~member]
    masks = torch.stack(members)  # (P, B): the samples each probe starts from
    # Irregular positive values (the fractional parts of multiples of the golden ratio).
    counter = torch.arange(batch * samples.dim, dtype=torch.float64).reshape(batch, samples.dim)
    weights = 1.0 + torch.remainder(counter * 0.6180339887498949, 1.0)
    for time, state in zip(times, states):
        with torch.enable_grad():
            state = state.detach().requires_grad_(True)
            output = field(time, state)
            if not output.requires_grad:
                continue
            cotangents = samples.from_samples(
                (masks[:, :, None] * weights).to(dtype=output.dtype, device=output.device)
            )
            grads = _batched_vjps(output, state, cotangents)
        if grads is None:
            continue
        reached = samples.to_samples(grads).abs().sum(dim=-1) != 0  # (P, B)
        if bool((reached & ~masks.to(reached.device)).any()):
            return True
    return False


def _batched_vjps(
    output: torch.Tensor, inputs: torch.Tensor, cotangents: torch.Tensor
) -> Optional[torch.Tensor]:
    """``cotangents (P, n)`` pulled back through ``output``: ``(P, n)``, or None where
    ``output`` does not reach ``inputs``; one batched product where ``vmap`` allows."""
    try:
        (found,) = torch.autograd.grad(
            output, inputs, cotangents, is_grads_batched=True, allow_unused=True, retain_graph=True
        )
        return found
    except RuntimeError:  # a backward vmap cannot batch: one cotangent at a time
        columns = [_vjp_or_zeros(output, inputs, cotangent) for cotangent in cotangents]
        return torch.stack(columns)


class PropagatorDynamics:
    """Backward dynamics of ``[z, Ψ]`` (flat) in the solver's time ``s``.

    Args:
        field: :class:`~torch_gq_adjoint._impl.state.FlatField`.
        samples: :class:`SampleLayout`.
        direction: +1.0 or -1.0, the sign of ``dt/ds``.
    """

    def __init__(self, field: FlatField, samples: SampleLayout, direction: float) -> None:
        self.field, self.samples, self.direction = field, samples, direction
        self.size = samples.batch * samples.dim
        self.nfe = 0
        # Whether one batched backward computes the d products (False once it failed).
        self.batched = True

    def split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` ``(..., n)`` and ``Ψ`` ``(..., B, d, d)`` of flat states."""
        batch, dim = self.samples.batch, self.samples.dim
        return (
            state[..., : self.size],
            state[..., self.size :].reshape(*state.shape[:-1], batch, dim, dim),
        )

    def __call__(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        z, psi = self.split(state)
        t = s.detach() * self.direction
        # Column j of Ψ is an adjoint vector; the d of them share one batched backward.
        cotangents = self.samples.from_samples(psi.permute(2, 0, 1))  # (d, n)
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            derivative = self.field(t, z)
            if derivative.requires_grad:
                vjps = None
                if self.batched:
                    try:
                        # The graph is kept: a failed attempt must leave it for the columns.
                        (vjps,) = torch.autograd.grad(
                            derivative,
                            z,
                            cotangents,
                            is_grads_batched=True,
                            allow_unused=True,
                            retain_graph=True,
                        )
                    except RuntimeError:  # a backward vmap cannot batch: one column at a time
                        self.batched = False
                if not self.batched:
                    vjps = torch.stack(
                        [_vjp_or_zeros(derivative, z, column) for column in cotangents]
                    )
            else:
                vjps = None
        if vjps is None:
            vjps = torch.zeros_like(cotangents)
        dpsi = self.samples.to_samples(vjps).permute(1, 2, 0)  # (B, d, d): column j
        return torch.cat([self.direction * derivative.detach(), -self.direction * dpsi.reshape(-1)])


class PropagatorBackward:
    """The per-sample propagator (``backward='propagator'``).

    Args:
        record: :class:`~.record.ForwardRecord`.
    """

    name = 'propagator'

    @staticmethod
    def records(settings: Settings) -> tuple[str, ...]:
        """What the forward pass must record for this pass: nothing."""
        return ()

    @staticmethod
    def problem(record: ForwardRecord) -> Optional[str]:
        """Why this pass cannot serve the solve (None if it can), without evaluating ``f``."""
        settings = record.settings
        if not settings.per_sample:
            return 'batch_dim=None: the state has no per-sample structure'
        if len(record.times) < 3:
            return 'one output interval: the restart method solves it the same way'
        if settings.adjoint_method in checks.GRID_METHODS:
            return 'fixed-grid methods step the same either way'
        if settings.custom_adjoint_norm:
            return "a callable adjoint norm expects the restart method's state"
        if any(
            isinstance(value, (tuple, list)) or (torch.is_tensor(value) and value.numel() > 1)
            for value in (settings.adjoint_rtol, settings.adjoint_atol)
        ):
            return (
                'per-part or per-entry tolerances (a tuple or a tensor) fit the state of the '
                'restart method only'
            )
        try:
            SampleLayout(settings.layout)
        except ValueError as error:
            return str(error)
        return None

    @staticmethod
    def confirm(record: ForwardRecord) -> Optional[str]:
        """Why this pass cannot serve the solve, checked with an evaluation of ``f`` and
        one batched product at each of up to three output times: a function that lets
        one sample depend on another (None if it does not; :func:`mixes_samples`)."""
        samples = SampleLayout(record.settings.layout)
        # At the first, a middle and the last output time: a coupling that vanishes in
        # part of the solve is still seen.
        picks = sorted({0, len(record.times) // 2, len(record.times) - 1})
        times, states = record.times[picks], record.solution[picks]
        if mixes_samples(record.settings.field, times, states, samples):
            return (
                'func mixes the samples of the batch (a cotangent on some samples reached '
                'others), so the adjoint is not per sample'
            )
        return None

    @staticmethod
    def notify_under_auto(record: ForwardRecord) -> bool:
        """Whether ``'auto'`` warns when :meth:`confirm` fails: for a batched state. A
        1-D state is as likely one coupled trajectory as a batch of scalars, and another
        pass is simply right there."""
        return SampleLayout(record.settings.layout).batched

    def __init__(self, record: ForwardRecord) -> None:
        self.solves = BackwardSolves(record)
        self.samples = samples = SampleLayout(record.settings.layout)
        solves = self.solves
        settings = record.settings
        self.dynamics = PropagatorDynamics(settings.field, samples, solves.direction)
        part_norm = flat_state_norm(settings.options.get('norm'), settings.layout)
        size = solves.size

        def norm(state: torch.Tensor) -> torch.Tensor:
            # As the default backward norm: the forward norm of z, RMS of the rest.
            return torch.maximum(
                torch.as_tensor(part_norm(state[:size])), state[size:].pow(2).mean().sqrt()
            )

        self.norm = norm

    def __call__(self, grad_solution: torch.Tensor) -> BackwardResult:
        """:class:`~.record.BackwardResult` for output cotangents ``(T, n)``."""
        found, _ = _propagator_intervals(self, grad_solution)
        return integrate_intervals(
            self.solves, found, grad_solution, self.name, lambda: self.dynamics.nfe
        )

    def solve(
        self,
        dynamics: PropagatorDynamics,
        start_state: torch.Tensor,
        solve_times: torch.Tensor,
        index: int,
    ) -> torch.Tensor:
        """One ``[z, Ψ]`` solve; with ``gtol=None`` at :func:`propagator_tolerance`."""
        solves = self.solves
        settings = solves.settings
        rtol, atol = settings.adjoint_rtol, settings.adjoint_atol
        if solves.controlled:
            # Error-controlled mode aims at accuracy: the one long solve is tightened.
            # The paper's rule favours speed, as it does by carrying steps: the solve runs
            # at the adjoint tolerances.
            rtol, atol = (propagator_tolerance(value, start_state.dtype) for value in (rtol, atol))
        return solves.odeint(
            dynamics, start_state, solve_times, index, rtol=rtol, atol=atol, norm=self.norm
        )


def _propagator_intervals(
    backward: PropagatorBackward, grad_solution: torch.Tensor
) -> tuple[list[Interval], torch.Tensor]:
    """The backward pass as :class:`~torch_gq_adjoint._impl.error_control.Interval`s.

    Returns:
        ``(intervals, adjoint_at_t0)``: intervals from the last to the first, and
        ``a(t_0⁻)`` (the gradient of ``y0``).
    """
    dynamics = backward.dynamics
    intervals = []
    anchor = len(backward.solves.time_values) - 1
    span = anchor  # the first segment tries the whole horizon
    adjoint = grad_solution[-1]
    while anchor > 0:
        end = max(anchor - span, 0)
        try:
            found, adjoint = _segment(backward, dynamics, anchor, end, adjoint, grad_solution)
        except FloatingPointError:
            if anchor - end == 1:
                raise  # one interval: the restart method would fail the same way
            span = max(1, (anchor - end) // 2)
            continue
        intervals += found
        # After a re-anchor, solve ahead about twice as far as the last segment reached,
        # not to t_0: the guards failed once, they may fail again.
        if found[-1].index - 1 > end:
            span = max(1, 2 * len(found))
        anchor = found[-1].index - 1
    return intervals, adjoint


def _segment(
    backward: PropagatorBackward,
    dynamics: PropagatorDynamics,
    anchor: int,
    end: int,
    adjoint: torch.Tensor,
    grad_solution: torch.Tensor,
) -> tuple[list[Interval], torch.Tensor]:
    """Solve from observation ``anchor`` (a(t_anchor⁻) = ``adjoint``) towards ``end``, as
    far as the guards allow; returns the intervals done and the adjoint where the segment
    ends (⁻ side)."""
    samples = backward.samples
    indices = list(range(anchor, end - 1, -1))
    rules = {index: backward.solves.rules_of(index) for index in indices[:-1]}
    nodes = torch.cat(
        [backward.solves.times[indices]]
        + [nodes for index in indices[:-1] for nodes, _ in rules[index]]
    )
    solver_times, position = torch.unique(
        backward.solves.direction * nodes, sorted=True, return_inverse=True
    )
    eye = torch.eye(samples.dim, dtype=adjoint.dtype, device=adjoint.device)
    start = torch.cat(
        [backward.solves.solution[anchor], eye.expand(samples.batch, -1, -1).reshape(-1)]
    )
    path = backward.solve(dynamics, start, solver_times, anchor)
    z_path, psi_path = dynamics.split(path[position])
    observed = len(indices)
    z_obs, psi_obs = z_path[:observed], psi_path[:observed]
    # The backward z's offset from the forward solution at each observation time: the
    # drift guard reads it, and (gtol=None) the nodes' z are shifted by it.
    offsets = z_obs - backward.solves.solution[indices]
    last = _last_good(backward, indices, offsets, psi_obs)

    coefficient = samples.to_samples(adjoint)  # c_anchor = a(t_anchor⁻)
    intervals, offset = [], observed
    for number, index in enumerate(indices[:-1]):
        if index == last:
            break
        node_rules = []
        for nodes, weights in rules[index]:
            count = len(nodes)
            z_nodes = z_path[offset : offset + count]
            if backward.solves.controlled:
                z_nodes = z_nodes - _drift(
                    backward, index, nodes, offsets[number], offsets[number + 1]
                )
            psi_nodes = psi_path[offset : offset + count]
            offset += count
            a_nodes = samples.from_samples(torch.einsum('kbij,bj->kbi', psi_nodes, coefficient))
            node_rules.append(Rule(nodes, weights, z_nodes, a_nodes))
        after = samples.from_samples(torch.einsum('bij,bj->bi', psi_obs[number + 1], coefficient))
        start_adjoint = (
            adjoint
            if number == 0
            else samples.from_samples(torch.einsum('bij,bj->bi', psi_obs[number], coefficient))
        )
        intervals.append(
            backward.solves.interval(index, node_rules, start_adjoint, after, z_obs[number + 1])
        )
        jump = samples.to_samples(grad_solution[index - 1])
        if index - 1 > last:
            coefficient = coefficient + torch.linalg.solve(psi_obs[number + 1], jump)
        adjoint = after + grad_solution[index - 1]
    return intervals, adjoint


def _drift(
    backward: PropagatorBackward,
    index: int,
    nodes: torch.Tensor,
    offset_high: torch.Tensor,
    offset_low: torch.Tensor,
) -> torch.Tensor:
    """The backward ``z``'s offset from the forward solution at ``nodes`` of interval
    ``[t_{index-1}, t_index]``: linear in time between the offsets measured at its ends
    (``offset_high`` at ``t_index``, ``offset_low`` at ``t_{index-1}``).

    The one long backward solve follows the exact flow from the forward solution's end,
    which parts from the forward solution (itself accurate to the forward tolerance) by up
    to that tolerance; the loss gradients belong to the forward solution. Restarting
    reads ``z`` off a solve started at the forward solution on every interval. Shifting
    the nodes' ``z`` by this offset does the same to first order, without a solve (its
    effect on the gradient error is measured in docs/backward.md).
    """
    high, low = backward.solves.times[index], backward.solves.times[index - 1]
    share = ((nodes - low) / (high - low)).to(offset_high.dtype)[:, None]
    return share * offset_high + (1 - share) * offset_low


def _last_good(
    backward: PropagatorBackward,
    indices: list[int],
    offsets: torch.Tensor,
    psi_obs: torch.Tensor,
) -> int:
    """The observation index where this segment must end (0 if it reaches t_0).

    Taking in the jump at observation k needs Ψ(t_k)⁻¹: where Ψ(t_k) is ill conditioned
    the segment ends at k (the next one is anchored there, with Ψ = I, so that jump needs
    no inverse). Where z has drifted from the forward solution at k, the interval before
    k is suspect too: the segment ends one observation earlier. The first interval after
    an anchor is always kept: the restart method would compute it the same way.
    """
    rtol, atol = backward.solves.tolerances
    forward = backward.solves.solution[indices]
    drift = (offsets / (atol + rtol * forward.abs())).pow(2).mean(-1).sqrt()
    finite = torch.isfinite(psi_obs).flatten(1).all(-1)
    safe = torch.where(finite[:, None, None, None], psi_obs, torch.zeros_like(psi_obs))
    condition = torch.linalg.cond(safe.double()).amax(-1)
    condition = torch.where(finite, condition, torch.full_like(condition, torch.inf))
    ill = ((condition > COND_LIMIT) | ~torch.isfinite(condition)).tolist()
    drifted = ((drift > DRIFT_LIMIT) | ~torch.isfinite(drift)).tolist()
    for number in range(1, len(indices)):
        if drifted[number] and number >= 2:
            return indices[number - 1]
        # The jump at t_0 needs no inverse: no interval follows it.
        if ill[number] and number < len(indices) - 1:
            return indices[number]
    return indices[-1]


def _vjp_or_zeros(
    output: torch.Tensor, inputs: torch.Tensor, cotangent: torch.Tensor
) -> torch.Tensor:
    """``cotangentᵀ ∂output/∂inputs``, zeros where ``output`` does not reach ``inputs``."""
    (found,) = torch.autograd.grad(output, inputs, cotangent, retain_graph=True, allow_unused=True)
    return torch.zeros_like(inputs) if found is None else found
