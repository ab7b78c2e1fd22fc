"""The checkpoint through the forward's kept graph: the checkpoint's gradient (direct
backprop's with the step-size controller frozen) without recomputing anything, within
``checkpoint_memory``; where the graph is not kept, the steps are recomputed as before."""

import warnings
from functools import partial

import pytest
import torch
import torchdiffeq
from torch import nn

from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl import checks, kept_graph
from torch_gq_adjoint._impl.checkpoint import CHECKPOINT_METHODS

from .test_checkpoint import _Ball  # the same falling ball, with the kept graph here

# Calls repeat at one line here: the passes 'auto' takes must not depend on timings.
pytestmark = pytest.mark.usefixtures('estimate_planning')

ADAPTIVE = sorted(checks.ADAPTIVE_METHODS)
GRID = sorted(CHECKPOINT_METHODS - checks.ADAPTIVE_METHODS)


class _Field(nn.Module):
    """A small network whose evaluations are counted (as torchdiffeq's examples do)."""

    def __init__(self, dim=3, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim)).double()
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y) * torch.cos(t)


class _TupleField(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.first = nn.Linear(2, 2).double()
        self.second = nn.Linear(3, 1).double()

    def forward(self, t, state):
        x, y = state
        return torch.tanh(self.first(x)) * y, self.second(torch.cat([x, y], -1)) * t


def _gradients(solve, func, y0, t, **kwargs):
    parts = y0 if isinstance(y0, tuple) else (y0,)
    solution = solve(func, y0, t, **kwargs)
    solution = solution if isinstance(solution, tuple) else (solution,)
    weights = torch.Generator().manual_seed(3)
    loss = sum(
        (part * torch.randn(part.shape, dtype=part.dtype, generator=weights)).sum()
        for part in solution
    )
    inputs = [*parts, *func.parameters()] + ([t] if t.requires_grad else [])
    return solution, torch.autograd.grad(loss, inputs)


def _frozen_norm(tensor):
    return tensor.pow(2).mean().sqrt().detach()


def _frozen_options(method, options=None):
    options = dict(options or {})
    if method in checks.ADAPTIVE_METHODS:
        options['norm'] = _frozen_norm
    return options


def _relative(got, expected):
    return max(((a - b).norm() / b.norm().clamp_min(1e-300)).item() for a, b in zip(got, expected))


def _state(*shape, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator).requires_grad_(True)


def _many_times():
    """A latent-ODE-like solve (40 output times) where 'auto' takes the checkpoint."""
    return _Field(dim=4, width=20), _state(64, 4), torch.linspace(0, 3, 40, dtype=torch.float64)


@pytest.mark.parametrize('method', ADAPTIVE + GRID)
@pytest.mark.parametrize('increasing', [True, False])
def test_the_gradient_is_the_checkpoints_without_recomputing(method, increasing):
    func, y0 = _Field(), _state(4, 3)
    t = torch.linspace(0.0, 2.0, 7, dtype=torch.float64)
    t = t if increasing else t.flip(0)
    kwargs = dict(method=method, rtol=1e-6, atol=1e-8)
    options = {} if method in checks.ADAPTIVE_METHODS else dict(step_size=0.13)
    kept, recomputed = {}, {}
    mine, got = _gradients(
        partial(odeint_adjoint_gq, backward='checkpoint', info=kept),
        func,
        y0,
        t,
        options=options,
        **kwargs,
    )
    # Half the graph's size: the graph is not kept, the recorded steps fit.
    budget = kept['graph_bytes'] // 2
    _, again = _gradients(
        partial(
            odeint_adjoint_gq, backward='checkpoint', info=recomputed, checkpoint_memory=budget
        ),
        func,
        y0,
        t,
        options=options,
        **kwargs,
    )
    theirs, expected = _gradients(
        torchdiffeq.odeint, func, y0, t, options=_frozen_options(method, options), **kwargs
    )
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs))  # the same forward
    assert kept['backward'] == 'checkpoint' and kept['backward_nfe'] == 0
    assert kept['graph_bytes'] > 0 and 'checkpoint_bytes' not in kept
    assert recomputed['backward_nfe'] > 0 and 'graph_bytes' not in recomputed
    assert recomputed['checkpoint_bytes'] <= budget
    # Direct backprop with the controller frozen, and the recomputing checkpoint.
    assert _relative(got, expected) < 1e-13, _relative(got, expected)
    assert _relative(got, again) < 1e-12, _relative(got, again)


def test_tuple_states_and_time_gradients():
    func = _TupleField()
    y0 = (_state(5, 2), _state(5, 1, seed=4))
    t = torch.tensor([0.0, 0.4, 1.1, 2.0], dtype=torch.float64, requires_grad=True)
    info = {}
    _, got = _gradients(
        partial(odeint_adjoint_gq, backward='checkpoint', info=info),
        func,
        y0,
        t,
        rtol=1e-10,
        atol=1e-12,
    )
    frozen = dict(norm=lambda parts: max(part.pow(2).mean().sqrt() for part in parts).detach())
    _, expected = _gradients(
        torchdiffeq.odeint, func, y0, t, rtol=1e-10, atol=1e-12, options=frozen
    )
    assert info['backward_nfe'] == 0
    assert _relative(got[:-1], expected[:-1]) < 1e-13
    # The time gradients come in closed form from f at the output times (every pass's
    # way); direct backprop also differentiates the step sizes' dependence on t.
    assert torch.allclose(got[-1], expected[-1], rtol=1e-7, atol=1e-9)


def test_a_users_norm_is_kept_and_detached():
    func, y0 = _Field(), _state(4, 3)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)

    def linf(tensor):
        return tensor.abs().max()

    info = {}
    mine, got = _gradients(
        partial(odeint_adjoint_gq, backward='checkpoint', info=info),
        func,
        y0,
        t,
        rtol=1e-6,
        atol=1e-8,
        options=dict(norm=linf),
    )
    theirs, expected = _gradients(
        torchdiffeq.odeint,
        func,
        y0,
        t,
        rtol=1e-6,
        atol=1e-8,
        options=dict(norm=lambda tensor: linf(tensor).detach()),
    )
    assert info['backward_nfe'] == 0
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs))
    assert _relative(got, expected) < 1e-13


def test_events_through_odeint_event():
    def run(interface):
        ball = _Ball()
        height = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
        state = torch.stack([height, torch.zeros_like(height)])
        event_t, solution = torchdiffeq.odeint_event(
            ball,
            state,
            torch.tensor(0.0, dtype=torch.float64),
            event_fn=lambda t, y: y[0],
            odeint_interface=interface,
            rtol=1e-8,
            atol=1e-10,
        )
        loss = event_t + 0.3 * solution[-1, 1]
        return loss, torch.autograd.grad(loss, [height, *ball.parameters()])

    info = {}
    loss, got = run(partial(odeint_adjoint_gq, backward='checkpoint', info=info))
    reference_loss, expected = run(partial(torchdiffeq.odeint, options=_frozen_options('dopri5')))
    assert info['backward'] == 'checkpoint' and info['backward_nfe'] == 0
    assert loss.item() == reference_loss.item()
    assert _relative(got, expected) < 1e-12


def test_auto_keeps_the_graph_where_it_takes_the_checkpoint():
    func, y0, t = _many_times()
    tight, loose = {}, {}
    _gradients(partial(odeint_adjoint_gq, info=tight), func, y0, t, rtol=1e-7, atol=1e-9)
    _gradients(partial(odeint_adjoint_gq, info=loose), func, y0, t, rtol=1e-3, atol=1e-3)
    assert tight['backward'] == 'checkpoint' and tight['backward_nfe'] == 0
    assert 'graph_bytes' in tight and 'checkpoint_bytes' not in tight
    assert loose['backward'] != 'checkpoint' and 'graph_bytes' not in loose


def test_auto_keeps_the_graph_while_it_chooses_the_checkpoint_at_that_line():
    # Few output times: the adjoint's quadrature is cheap enough to keep its accuracy, so
    # after the first call the forward no longer keeps a graph there.
    func, y0 = _Field(), _state(4, 3)
    t = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    seen = []
    original = kept_graph.GraphGuard.__init__

    def counting(self, *arguments, **keywords):
        seen.append(True)
        original(self, *arguments, **keywords)

    kept_graph.GraphGuard.__init__ = counting
    try:
        for _ in range(3):
            info = {}
            _gradients(partial(odeint_adjoint_gq, info=info), func, y0, t, rtol=1e-7, atol=1e-9)
            assert info['backward'] == 'interpolated'
    finally:
        kept_graph.GraphGuard.__init__ = original
    assert len(seen) == 1  # the first call only


def test_a_graph_over_budget_is_given_up_once_per_call_site():
    func, y0, t = _many_times()
    unlimited = {}
    _gradients(partial(odeint_adjoint_gq, info=unlimited), func, y0, t, rtol=1e-7, atol=1e-9)
    assert unlimited['backward'] == 'checkpoint'
    budget = unlimited['graph_bytes'] // 2  # the recorded steps and stages still fit
    calls = []
    for _ in range(2):
        info = {}
        func.nfe = 0
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            _gradients(
                partial(odeint_adjoint_gq, info=info, checkpoint_memory=budget),
                func,
                y0,
                t,
                rtol=1e-7,
                atol=1e-9,
            )
        calls.append((info, func.nfe))
    (first, first_nfe), (second, second_nfe) = calls
    assert first['backward'] == second['backward'] == 'checkpoint'
    assert first['backward_nfe'] > 0 and 'graph_bytes' not in first  # recomputed
    # The first call stopped its graph about half-way and solved again; the second did
    # not try (beside the two solves, both made the same probe evaluations).
    first_extra = first_nfe - first['forward_nfe'] - first['backward_nfe']
    second_extra = second_nfe - second['forward_nfe'] - second['backward_nfe']
    assert first_extra > second_extra + first['forward_nfe'] // 4


def test_a_second_backward_through_the_same_solve_recomputes_the_steps():
    func, y0, t = _many_times()
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-9, info=info)
    loss = solution.pow(2).sum()
    first = torch.autograd.grad(loss, [y0, *func.parameters()], retain_graph=True)
    assert info['backward'] == 'checkpoint' and info['backward_nfe'] == 0
    second = torch.autograd.grad(loss, [y0, *func.parameters()])
    assert info['backward'] == 'checkpoint' and info['backward_nfe'] > 0
    assert _relative(second, first) < 1e-12


def test_the_forced_checkpoint_keeps_no_tape_and_records_again_for_a_second_backward():
    """Beside a kept graph the forced checkpoint records no steps (the tape is a cost of
    every forward solve, read only by a second backward pass); a second backward pass
    records the graph again: the same gradient, the forward's evaluations again."""
    func, y0, t = _many_times()
    info = {}
    solution = odeint_adjoint_gq(
        func, y0, t, rtol=1e-7, atol=1e-9, backward='checkpoint', info=info
    )
    assert info['checkpoint_steps'] == 0 and info['checkpoint_bytes'] == 0
    loss = solution.pow(2).sum()
    first = torch.autograd.grad(loss, [y0, *func.parameters()], retain_graph=True)
    assert info['backward_nfe'] == 0 and info['graph_bytes'] > 0
    forward_nfe = info['forward_nfe']
    second = torch.autograd.grad(loss, [y0, *func.parameters()], retain_graph=True)
    assert info['backward'] == 'checkpoint' and info['backward_nfe'] == forward_nfe
    third = torch.autograd.grad(loss, [y0, *func.parameters()])
    assert _relative(second, first) < 1e-12 and _relative(third, first) < 1e-12


def test_a_second_backward_draws_what_the_forward_drew():
    """Recording the graph again for a second backward pass restores the generators'
    states of the forward solve: a func with dropout gives the same gradient twice."""
    torch.manual_seed(0)
    func = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Dropout(0.3), nn.Linear(32, 3))
    field = lambda t, z: func(z)  # noqa: E731
    y0, t = torch.randn(8, 3), torch.tensor([0.0, 1.0])
    params = list(func.parameters())
    solution = odeint_adjoint_gq(
        field,
        y0,
        t,
        method='rk4',
        options=dict(step_size=0.1),
        backward='checkpoint',
        adjoint_params=params,
    )
    loss = solution[-1].pow(2).sum()
    first = torch.autograd.grad(loss, params, retain_graph=True)
    torch.rand(7)  # the user's code draws between the two backward passes
    after = torch.get_rng_state()
    second = torch.autograd.grad(loss, params)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(torch.get_rng_state(), after)  # and the generator is left alone


def test_the_guard_prices_every_evaluation_like_the_first():
    layer = nn.Linear(8, 8).double()
    y = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    guard = kept_graph.GraphGuard(
        lambda t, state: torch.tanh(layer(state)), list(layer.parameters()), 5 * 8 * 8, 10**9
    )
    with torch.enable_grad():
        guard(0.0, y)
        guard(0.0, y)
    # tanh saves its output and the product its input (y), 40 numbers each; the weights
    # are the parameters' own storage and are left out.
    assert guard.per_evaluation == 2 * 5 * 8 * 8
    assert guard.nbytes == 2 * (guard.per_evaluation + 2 * 5 * 8 * 8)
    small = kept_graph.GraphGuard(
        lambda t, state: torch.tanh(layer(state)), list(layer.parameters()), 320, 100
    )
    with torch.enable_grad(), pytest.raises(kept_graph.GraphTooLargeError):
        small(0.0, y)


def test_measuring_the_graph_leaves_no_reference_cycle():
    """The graph is measured through saved-tensor hooks at evaluations 1, 2, 4, ...; a
    hook that handed back the tensor itself made each saved output reference its own
    graph, so what func computed and dropped (the exact trace's first-order graph in a
    CNF) lived on until Python's cycle collector ran: 8 MiB above direct backprop on
    the exact-trace CNF of benchmarks.clients."""
    import gc
    import weakref

    dropped = []

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2).double()

        def forward(self, t, y):
            scratch = torch.tanh(self.linear(y))  # tanh saves its output; then dropped
            dropped.append(weakref.ref(scratch))
            return self.linear(y)

    func = Field()
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    gc.disable()
    try:
        solution = odeint_adjoint_gq(func, y0, t, backward='checkpoint')
        alive = sum(reference() is not None for reference in dropped)
        solution.pow(2).sum().backward()
    finally:
        gc.enable()
    assert len(dropped) > 4 and alive == 0


def test_a_reused_info_dict_holds_only_the_last_calls_costs():
    func = _Field()
    y0 = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    info = dict(mine='an earlier value')
    for backward in ('checkpoint', 'restart'):
        solution = odeint_adjoint_gq(func, y0, t, backward=backward, info=info)
        torch.autograd.grad(solution.pow(2).mean(), [y0, *func.parameters()])
        if backward == 'checkpoint':
            assert info['graph_bytes'] > 0 and 'mine' not in info, info
    # The checkpoint's graph is no cost of the restart pass's call.
    assert info['backward'] == 'restart' and info['nodes'] > 0
    assert set(info) == {'forward_nfe', 'backward', 'backward_nfe', 'nodes'}, info
