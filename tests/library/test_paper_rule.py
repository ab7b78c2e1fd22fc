"""The paper's rule and the checkpoint as checked candidates of the measured plan: offered
at coarse tolerances, admitted where a check against a tighter solve finds them as
accurate as the error-controlled pass, taken where fastest, refused (that call served by
the error-controlled pass) where not accurate."""

import math
import time

import pytest
import torch
from torch import nn

import torch_gq_adjoint
from gradient_tests.problems import SecondOrderField
from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl import choice, gq_adjoint, paper_rule, planner
from torch_gq_adjoint._impl.checkpoint import CheckpointBackward
from torch_gq_adjoint._impl.interpolated import InterpolatedBackward
from torch_gq_adjoint._impl.propagator import PropagatorBackward
from torch_gq_adjoint._impl.restart import RestartBackward


@pytest.fixture(autouse=True)
def _measured_planning():
    torch_gq_adjoint.reset_plans()
    torch_gq_adjoint.set_planning('measure')
    yield
    torch_gq_adjoint.set_planning(None)
    torch_gq_adjoint.reset_plans()


class _Spheres(nn.Module):
    """A small nested-spheres field (Section 5.1): one output time, a tanh MLP."""

    def __init__(self, dim=3, width=32):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim))

    def forward(self, t, z):
        return self.net(z)


def _sines_field():
    """The paper's sines model (Section 5.2), small (width 16). Observed at 10 times, each
    interval gets about one of the paper's nodes, too few for the adjoint's accuracy
    (about 190 times the adjoint's error on the paper's model)."""
    torch.manual_seed(0)
    return SecondOrderField(16).double()


def _spheres_problem():
    generator = torch.Generator().manual_seed(1)
    y0 = torch.randn(16, 3, generator=generator)
    return _Spheres(), y0, torch.tensor([0.0, 1.0])


def _sines_problem():
    generator = torch.Generator().manual_seed(0)
    y0 = 2 * torch.rand(20, 2, generator=generator, dtype=torch.float64) - 1
    return _sines_field(), y0, torch.linspace(0, 2 * math.pi, 10, dtype=torch.float64)


def _step(func, y0, t, rtol=1e-3, atol=1e-3, **kwargs):
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, rtol=rtol, atol=atol, info=info, **kwargs)
    loss = (solution**2).sum()
    return torch.autograd.grad(loss, list(func.parameters())), info


def _slow_all_but(monkeypatch, fast, seconds=0.1):
    """Every pass but the one named ``fast`` made slow by ``seconds`` a call."""
    for cls in (RestartBackward, InterpolatedBackward, PropagatorBackward, CheckpointBackward):
        original = cls.__call__

        def slow(self, grad_solution, original=original):
            if self.name != fast:
                time.sleep(seconds)
            return original(self, grad_solution)

        monkeypatch.setattr(cls, '__call__', slow)


#: Calls that explore every candidate at coarse tolerances: the first (the estimate's)
#: and each of the four passes and the paper's rule measured ROUNDS times.
_EXPLORING = 1 + planner.ROUNDS * (len(choice.PASSES) + 1)


def _served(func, y0, t, calls=_EXPLORING):
    """The passes that served ``calls`` training steps."""
    return [_step(func, y0, t)[1]['backward'] for _ in range(calls)]


def _plan():
    (plan,) = torch_gq_adjoint.plans()
    return plan


@pytest.mark.parametrize(
    'name, forced',
    [
        ('paper', dict(gtol=0.1, backward='restart')),  # the paper's rule forced
        ('checkpoint', dict(backward='checkpoint')),  # through the kept graph
    ],
)
def test_a_checked_pass_is_admitted_where_accurate_and_taken_where_fastest(
    monkeypatch, name, forced
):
    _slow_all_but(monkeypatch, name)
    func, y0, t = _spheres_problem()
    ran = []
    for _ in range(_EXPLORING + 2):
        _, info = _step(func, y0, t)
        ran.append(info['backward'])
    plan = _plan()
    candidate = plan.candidates[name]
    assert candidate.checked and plan.checked == {'checkpoint', 'paper'}, str(plan)
    assert candidate.excluded is None and candidate.error_ratio <= paper_rule.ERROR_FACTOR
    assert plan.state == 'settled' and plan.choice == name, str(plan)
    assert ran[-2:] == [name, name]
    assert 'times as far from a tighter solve' in str(plan)
    # Its gradient is the pass's, forced, bit for bit (the checkpoint's from the graph).
    got, info = _step(func, y0, t)
    theirs, _ = _step(func, y0, t, **forced)
    assert (info.get('graph_bytes', 0) > 0) == (name == 'checkpoint'), info
    for mine, expected in zip(got, theirs):
        assert torch.equal(mine, expected)


def test_the_check_refuses_an_inaccurate_paper_rule_and_serves_that_call_controlled():
    func, y0, t = _sines_problem()
    plan_calls = []
    for _ in range(_EXPLORING):
        grads, info = _step(func, y0, t)
        plan_calls.append((info['backward'], grads))
    plan = _plan()
    paper = plan.candidates[paper_rule.PAPER]
    assert paper.error_ratio > paper_rule.ERROR_FACTOR, str(plan)
    assert paper.excluded.startswith('its gradient') and not paper.seconds
    assert 'paper' not in [ran for ran, _ in plan_calls]
    assert plan.choice != 'paper'
    # The checked call was served by the error-controlled restart pass: its gradient is
    # the forced restart's, bit for bit.
    forced, _ = _step(func, y0, t, backward='restart')
    served = [grads for ran, grads in plan_calls if ran == 'restart']
    # The checked call (the checkpoint's, which judged the paper's rule too) was served
    # by it, beside its own measured calls (and any the estimate or the plan gave it).
    assert len(served) >= len(plan.candidates['restart'].seconds) + 1
    for grads in served:
        assert all(torch.equal(mine, theirs) for mine, theirs in zip(grads, forced))


@pytest.mark.parametrize('problem, admitted', [(_spheres_problem, True), (_sines_problem, False)])
def test_one_tighter_solve_checks_the_checkpoint_and_the_paper_rule(monkeypatch, problem, admitted):
    """The first plan measures the checkpoint before the paper's rule: the checkpoint's
    check judges the paper's rule too, against the same reference, so the plan makes
    one tighter solve, not two (admitting both on the nested spheres, refusing both on
    sines with 10 times)."""
    references = []
    original = paper_rule._reference

    def counted(*args, **kwargs):
        references.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(paper_rule, '_reference', counted)
    func, y0, t = problem()
    served = _served(func, y0, t)
    plan = _plan()
    checkpoint, paper = plan.candidates['checkpoint'], plan.candidates[paper_rule.PAPER]
    assert len(references) == 1, str(plan)
    assert checkpoint.error_ratio is not None and paper.error_ratio is not None
    assert checkpoint.admitted == paper.admitted == admitted, str(plan)
    # A judged pass's own calls run it without a check; a refused one never runs.
    assert ('paper' in served) == admitted and ('checkpoint' in served) == admitted
    if admitted:  # measured at least once (a slow time may prune it after that)
        assert paper.seconds, str(plan)
    else:
        assert paper.excluded.startswith('its gradient') and not paper.seconds


def test_a_check_judges_only_the_passes_awaiting_theirs_in_its_plan():
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.plans_made = 'exploring', 1
    plan.checked = {'checkpoint', 'paper'}
    plan.candidates = {
        'restart': planner.Candidate('restart', 20.0),
        'checkpoint': planner.Candidate('checkpoint', 20.0, checked=True),
        'paper': planner.Candidate('paper', 10.0, checked=True),
    }
    ticket = planner.Ticket(plan, 'checkpoint', True, 'exploring', generation=1, checked=True)
    assert plan.awaiting_check(ticket) == ['paper']
    stale = planner.Ticket(plan, 'checkpoint', True, 'exploring', generation=0, checked=True)
    assert plan.awaiting_check(stale) == []
    plan.accuracy_checked(ticket, 5.0, admitted=False, name='paper')
    paper = plan.candidates['paper']
    assert paper.error_ratio == 5.0 and paper.excluded.startswith('its gradient 5 times')
    assert plan.candidates['checkpoint'].error_ratio is None
    assert plan.awaiting_check(ticket) == []


def test_a_failing_reference_solve_refuses_the_rule_and_serves_the_call(monkeypatch):
    def underflow(*args, **kwargs):
        raise AssertionError('underflow in dt 0.0')

    monkeypatch.setattr(paper_rule, '_reference', underflow)
    func, y0, t = _spheres_problem()
    served = _served(func, y0, t)
    paper = _plan().candidates[paper_rule.PAPER]
    assert paper.excluded == 'its accuracy check failed (AssertionError: underflow in dt 0.0)'
    assert 'paper' not in served and not paper.seconds


@pytest.mark.parametrize(
    'kwargs, dtype, why',
    [
        (dict(rtol=1e-7, atol=1e-9), torch.float64, 'tight tolerances'),
        (dict(rtol=1e-3, atol=1e-3, gtol=0.5), torch.float64, 'a quadrature rule was given'),
        (
            dict(rtol=1e-3, atol=1e-3, method='rk4', options=dict(step_size=0.1)),
            torch.float64,
            'not an adaptive method',
        ),
        (dict(rtol=1.1e-5, atol=1e-6), torch.float32, 'no reference solve'),
        (dict(rtol=torch.tensor(1e-3), atol=1e-3), torch.float64, 'tolerances given as tensors'),
    ],
)
def test_where_the_paper_rule_is_not_offered(kwargs, dtype, why):
    func, y0, t = _spheres_problem()
    func, y0, t = func.to(dtype), y0.to(dtype), t.to(dtype)
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, info=info, **kwargs)
    solution[-1].sum().backward()
    plan = _plan()
    assert paper_rule.PAPER not in plan.candidates, str(plan)
    record = _record(func, y0, t, **kwargs)
    assert why in paper_rule.check_problem(record.settings, dtype)


def test_the_float32_floor_admits_rtol_2e_5():
    func, y0, t = _spheres_problem()
    record = _record(func, y0, t, rtol=2e-5, atol=1e-6)
    assert paper_rule.check_problem(record.settings, torch.float32) is None
    assert math.isclose(
        paper_rule._reference_rtol(2e-5, torch.float32), 10 * torch.finfo(torch.float32).eps
    )


@pytest.mark.parametrize('name', ['paper', 'checkpoint'])
def test_planning_by_estimate_never_takes_a_checked_pass(name):
    torch_gq_adjoint.set_planning('estimate')
    func, y0, t = _spheres_problem()
    for _ in range(8):
        _, info = _step(func, y0, t)
        assert info['backward'] != name


@pytest.mark.parametrize('name', ['paper', 'checkpoint'])
def test_a_plan_pinned_to_a_checked_pass_runs_it_unchecked(name):
    func, y0, t = _spheres_problem()
    _step(func, y0, t)
    _plan().pin(name)
    for _ in range(3):
        _, info = _step(func, y0, t)
        assert info['backward'] == name
    assert _plan().candidates[name].error_ratio is None
    with pytest.raises(ValueError, match=f"'{name}'"):
        _plan().pin('gauss')


def _record(func, y0, t, **kwargs):
    """The settings a call makes, read back through a forced pass's record."""
    from torch_gq_adjoint._impl import gq_adjoint

    seen = []
    original = gq_adjoint.ForwardRecord

    class Spy(original):
        def __post_init__(self):
            super().__post_init__()
            seen.append(self)

    gq_adjoint.ForwardRecord = Spy
    try:
        solution = odeint_adjoint_gq(func, y0, t, backward='restart', **kwargs)
        solution[-1].sum().backward()
    finally:
        gq_adjoint.ForwardRecord = original
    return seen[0]


def test_solves_sharing_a_call_site_never_get_a_refused_rule():
    """Several solves per training step take their tickets before any backward pass; the
    one checked first refuses the rule, and the others (a second backward through the
    same solve too) get the error-controlled pass, not the refused rule."""
    func, y0, t = _sines_problem()
    params = list(func.parameters())
    served = []
    for _ in range(14):
        infos = [{}, {}]
        solutions = [
            odeint_adjoint_gq(func, y0 * scale, t, rtol=1e-3, atol=1e-3, info=info)
            for scale, info in zip((1.0, 0.9), infos)
        ]
        loss = sum((solution**2).sum() for solution in solutions)
        first = torch.autograd.grad(loss, params, retain_graph=True)
        served += [info['backward'] for info in infos]
        second = torch.autograd.grad(loss, params)
        served += [info['backward'] for info in infos]
        assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert _plan().candidates[paper_rule.PAPER].error_ratio > paper_rule.ERROR_FACTOR
    assert 'paper' not in served


def test_a_rule_checked_on_its_own_call_counts_the_checks_evaluations(monkeypatch):
    """Where the checkpoint is not offered (``checkpoint_memory=0``), the paper's rule
    is checked on its own first call."""
    _slow_all_but(monkeypatch, 'paper', seconds=0.02)
    func, y0, t = _spheres_problem()
    counts = []
    for _ in range(_EXPLORING):
        _, info = _step(func, y0, t, checkpoint_memory=0)
        counts.append((info['backward'], info['backward_nfe']))
    ran = [nfe for served, nfe in counts if served == 'paper']
    # The first call ran the pass and the check (an error-controlled pass and a tighter
    # solve both ways); the later ones ran the pass alone.
    assert ran[0] > 3 * ran[-1] and len(set(ran[1:])) == 1, counts


def test_a_pass_that_fails_when_judged_beside_a_check_is_refused(monkeypatch):
    def failing(self, grad_solution):
        raise RuntimeError('no memory left')

    monkeypatch.setattr(paper_rule.PaperBackward, '__call__', failing)
    func, y0, t = _spheres_problem()
    served = _served(func, y0, t)
    plan = _plan()
    paper = plan.candidates[paper_rule.PAPER]
    assert paper.excluded == 'its accuracy check failed (RuntimeError: no memory left)'
    assert 'paper' not in served and plan.candidates['checkpoint'].admitted, str(plan)


def test_the_checked_call_counts_the_checks_evaluations(monkeypatch):
    _slow_all_but(monkeypatch, 'checkpoint', seconds=0.02)
    checks, judged = [], []

    def spy(function, into):
        def spied(*args, **kwargs):
            into.append(function(*args, **kwargs))
            return into[-1]

        return spied

    monkeypatch.setattr(gq_adjoint, 'check_accuracy', spy(gq_adjoint.check_accuracy, checks))
    monkeypatch.setattr(gq_adjoint, '_judge_beside', spy(gq_adjoint._judge_beside, judged))
    func, y0, t = _spheres_problem()
    counts = []
    for _ in range(_EXPLORING + 1):
        _, info = _step(func, y0, t)
        counts.append((info['backward'], info['backward_nfe']))
    checkpoint = [nfe for served, nfe in counts if served == 'checkpoint']
    paper = [nfe for served, nfe in counts if served == 'paper']
    # The checkpoint's first call ran the pass (through its kept graph: no evaluation),
    # the check (an error-controlled pass and a tighter solve both ways) and the paper's
    # rule judged beside it; the later calls of either ran the pass alone.
    (check,), ((beside, beside_evaluations),) = checks, judged
    assert [name for name, *_ in beside] == ['paper'] and beside_evaluations > 0
    assert checkpoint[0] == check.evaluations + beside_evaluations, counts
    assert set(checkpoint[1:]) == {0} and len(set(paper)) == 1, counts


def test_a_spent_budget_never_switches_to_a_checked_pass(monkeypatch):
    """Not even one admitted at the smaller solve: its error moves with the solve."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'propagator', 2
    plan.calibration = {'propagator': 1.0, 'checkpoint': 1.0}
    plan.checked = {'checkpoint', 'paper'}
    plan.candidates = {
        'checkpoint': planner.Candidate('checkpoint', 50.0, checked=True, error_ratio=0.5),
        'propagator': planner.Candidate('propagator', 100.0, seconds=[1.0, 1.0]),
    }
    plan.calls, plan.spent, plan.first_exploration = 500, 40, 11
    prices = {'propagator': 100.0, 'checkpoint': 20.0}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: prices[name])
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan.choice == 'propagator' and plan.reason.endswith('estimates keep it')


def test_a_checked_choice_is_checked_again_where_the_solve_moves(monkeypatch):
    """Where the re-priced estimates keep a checked pass alone, it is checked again, not
    just kept; the cheapest unchecked pass is held in reserve, measured only where the
    check refuses it."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'checkpoint', 1
    plan.calibration = {'checkpoint': 1.0, 'restart': 1.0, 'interpolated': 1.0}
    plan.checked = {'checkpoint', 'paper'}
    plan.candidates = {
        'checkpoint': planner.Candidate(
            'checkpoint', 10.0, seconds=[1.0, 1.0], checked=True, error_ratio=0.5
        )
    }
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    prices = {'checkpoint': 10.0, 'restart': 50.0, 'interpolated': 40.0}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: prices[name])
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan.state == 'exploring' and plan.plans_made == 2, str(plan)
    live = {name for name, c in plan.candidates.items() if c.excluded is None}
    assert live == {'checkpoint'}
    checkpoint = plan.candidates['checkpoint']
    assert checkpoint.checked and checkpoint.error_ratio is None and not checkpoint.seconds
    ticket = plan.ticket()
    assert ticket.candidate == 'checkpoint' and plan.check_status(ticket) == 'check'
    # Admitted, it is kept on its own calls: nothing else ran.
    plan.accuracy_checked(ticket, 0.5, admitted=True)
    for _ in range(planner.ROUNDS):
        plan.learn(ticket, _Size(38, 6), 'checkpoint', 1.0)
        ticket = plan.ticket()
    assert plan.state == 'settled' and plan.choice == 'checkpoint', str(plan)
    assert not plan.candidates['interpolated'].seconds and plan.explored == 2


def test_a_refused_check_in_a_re_plan_measures_the_pass_held_in_reserve(monkeypatch):
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'checkpoint', 1
    plan.calibration = {'checkpoint': 1.0, 'restart': 1.0, 'interpolated': 1.0}
    plan.checked = {'checkpoint'}
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    prices = {'checkpoint': 10.0, 'restart': 50.0, 'interpolated': 40.0}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: prices[name])
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan._reserve[0] == 'interpolated'
    assert plan.candidates['interpolated'].excluded is not None  # not measured yet
    ticket = plan.ticket()
    plan.accuracy_checked(ticket, 5.0, admitted=False)
    plan.learn(ticket, _Size(38, 6), 'restart', 1.0)  # the controlled pass served it
    ran = []
    while plan.state == 'exploring':
        ticket = plan.ticket()
        ran.append(ticket.candidate)
        plan.learn(ticket, _Size(38, 6), ticket.candidate, 1.0)
    assert ran == ['interpolated'] * planner.ROUNDS
    assert plan.choice == 'interpolated', str(plan)
    assert plan.candidates['checkpoint'].excluded.startswith('its gradient')


class _Size:
    """What the planner reads of a record: the forward's evaluations and steps."""

    def __init__(self, nfe, steps):
        self.forward_nfe, self.forward_steps = nfe, steps


def test_a_checked_ticket_is_refused_after_a_reset_and_the_worse_check_stands():
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.plans_made = 'exploring', 1
    plan.checked = {'checkpoint'}
    plan.candidates = {'checkpoint': planner.Candidate('checkpoint', 10.0, checked=True)}
    first, second = plan.ticket(), plan.ticket()
    assert first.checked and plan.check_status(first) == 'check'
    # Two calls in flight checked it: the refusal stands whatever order they end in.
    plan.accuracy_checked(first, 9.0, admitted=False)
    plan.accuracy_checked(second, 1.0, admitted=True)
    candidate = plan.candidates['checkpoint']
    assert candidate.error_ratio == 9.0 and candidate.excluded.startswith('its gradient 9')
    assert plan.check_status(second) == 'refused'
    plan.reset()  # between a forward and its backward
    assert plan.check_status(second) == 'refused'


@pytest.mark.parametrize(
    'kwargs, why',
    [
        (dict(gtol=0.5), 'a quadrature rule was given'),
        (dict(checkpoint_memory=0), None),
    ],
)
def test_where_the_checkpoint_is_not_offered_checked(kwargs, why):
    func, y0, t = _spheres_problem()
    _step(func, y0, t, **kwargs)
    plan = _plan()
    assert 'checkpoint' not in plan.candidates and 'checkpoint' not in plan.checked, str(plan)
    if why is not None:
        record = _record(func, y0, t, rtol=1e-3, atol=1e-3, **kwargs)
        assert why in paper_rule.check_problem(record.settings, torch.float32)


def test_a_refused_rule_is_not_taken_by_the_re_priced_estimates(monkeypatch):
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'propagator', 2
    plan.calibration = {'propagator': 1.0, 'paper': 1.0}
    plan.checked = {'paper'}
    plan.candidates = {
        'paper': planner.Candidate(
            'paper', 50.0, excluded='refused', checked=True, error_ratio=58.6
        ),
        'propagator': planner.Candidate('propagator', 100.0, seconds=[1.0, 1.0]),
    }
    plan.calls, plan.spent, plan.first_exploration = 500, 40, 11
    monkeypatch.setattr(
        choice, 'estimate', lambda name, record: {'propagator': 100.0, 'paper': 50.0}[name]
    )
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan.choice == 'propagator' and plan.reason.endswith('estimates keep it')


def test_a_re_priced_round_with_the_rule_keeps_the_current_choice_in_reserve(monkeypatch):
    """Its check may refuse the rule; the pass the plan runs is then measured."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'propagator', 1
    plan.calibration = {'propagator': 1.0, 'paper': 1.0}
    plan.checked = {'paper'}
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    monkeypatch.setattr(
        choice, 'estimate', lambda name, record: {'propagator': 300.0, 'paper': 100.0}[name]
    )
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan.state == 'exploring'
    assert plan.candidates['paper'].excluded is None
    assert plan.candidates['propagator'].excluded is not None  # held in reserve
    ticket = plan.ticket()
    assert ticket.candidate == 'paper' and plan.check_status(ticket) == 'check'
    plan.accuracy_checked(ticket, 3.0, admitted=False)
    assert plan.candidates['propagator'].excluded is None
    assert plan.ticket().candidate == 'propagator'


def test_an_inaccurate_checkpoint_is_refused_and_its_checked_call_served_controlled():
    """On sines at 10 times and rtol 1e-3 the forward takes 3 steps over 10 intervals:
    the discretisation's gradient is about 9 times as far from a tighter solve as the
    error-controlled pass's."""
    func, y0, t = _sines_problem()
    calls = []
    for _ in range(_EXPLORING):
        grads, info = _step(func, y0, t)
        calls.append((info['backward'], grads))
    plan = _plan()
    checkpoint = plan.candidates['checkpoint']
    assert checkpoint.error_ratio > paper_rule.ERROR_FACTOR, str(plan)
    assert checkpoint.excluded.startswith('its gradient') and not checkpoint.seconds
    assert 'checkpoint' not in [ran for ran, _ in calls] and plan.choice != 'checkpoint'
    # The check's time was charged to the plan's exploring calls (a check is a tighter
    # solve: more than a call's time).
    assert plan._check_seconds > 0 and plan.first_exploration > plan.explored
    forced, _ = _step(func, y0, t, backward='restart')
    served = [grads for ran, grads in calls if ran == 'restart']
    # The restart pass's own measured calls, and the checked call it served.
    assert len(served) >= len(plan.candidates['restart'].seconds) + 1
    for grads in served:
        assert all(torch.equal(mine, theirs) for mine, theirs in zip(grads, forced))


def test_at_tight_tolerances_the_checkpoint_is_a_candidate_without_a_check():
    func, y0, t = _spheres_problem()
    func, y0, t = func.double(), y0.double(), t.double()
    for _ in range(1 + planner.ROUNDS * len(choice.PASSES)):
        _step(func, y0, t, rtol=1e-7, atol=1e-9)
    plan = _plan()
    assert not plan.checked and not plan.candidates['checkpoint'].checked, str(plan)
    assert plan.candidates['checkpoint'].error_ratio is None
    assert plan.candidates['checkpoint'].seconds, str(plan)


def test_a_check_is_charged_to_the_budget_by_its_time(monkeypatch):
    """A check is a solve at tighter tolerances: it costs several calls of the current
    choice, and the budget counts them; the next re-plan that must check a pass waits
    until the budget holds one more such check."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'paper', 1
    plan.calibration = {'paper': 1.0, 'interpolated': 1.0}
    plan.checked = {'paper'}
    plan.calls, plan.spent, plan.first_exploration = 200, 11, 11  # 10 calls of budget
    plan._times.extend((plan.calls, 0.5) for _ in range(planner.WINDOW))
    costs = {'paper': 0.5, 'interpolated': 1.2}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: costs[name])
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    ticket = plan.ticket()
    assert ticket.candidate == 'paper' and plan.check_status(ticket) == 'check'
    plan.accuracy_checked(ticket, 0.5, admitted=True, seconds=2.0)  # four calls of 0.5 s
    plan.learn(ticket, _Size(38, 6), 'paper', 0.5)
    assert plan.state == 'settled' and plan.choice == 'paper', str(plan)
    assert plan.spent == pytest.approx(15.0) and plan.explored == 1
    # 5 calls of budget left at 200 calls: the next check (about 4 calls) and a call
    # fit; at 120 calls (1 left) they do not, and the estimates keep the plan.
    for calls, replans in ((120, False), (200, True)):
        plan.calls, plan.spent = calls, 15.0
        plan.reference = ((30, 30), (5, 5))
        plan._ratios.clear()
        plan._recalibrate(_Size(50, 8), (50, 8), 'the solve moved')
        assert (plan.state == 'exploring') == replans, str(plan)
        if not replans:
            assert 'budget is spent' in plan.reason
        plan.state = 'settled'


def test_a_re_plan_checks_no_pass_priced_above_the_current_choice(monkeypatch):
    """Measuring a checked pass costs its check: where the re-priced estimates put it
    above the current choice, it is not checked (nor run)."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'paper', 1
    plan.calibration = {'paper': 1.0, 'checkpoint': 1.0, 'interpolated': 1.0}
    plan.checked = {'paper', 'checkpoint'}
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    plan._times.extend((plan.calls, 0.5) for _ in range(planner.WINDOW))
    costs = {'paper': 0.5, 'checkpoint': 0.6, 'interpolated': 0.9}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: costs[name])
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    assert plan.candidates['checkpoint'].excluded is not None, str(plan)
    assert plan.candidates['paper'].excluded is None
    # Priced below it, it is checked and measured.
    costs['checkpoint'] = 0.4
    plan.state = 'settled'
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    assert plan.candidates['checkpoint'].excluded is None, str(plan)


def _owing_a_check(monkeypatch, costs, per_call=0.5):
    """A plan settled on the checked ``paper`` whose solve just moved, its calls timed
    at ``per_call`` s and its last check at 2 s (four calls)."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'paper', 1
    plan.calibration = dict.fromkeys(costs, 1.0)
    plan.checked = {name for name in costs if name in ('paper', 'checkpoint')}
    plan._check_seconds, plan.reference = 2.0, ((30, 30), (5, 5))
    plan._times.extend((0, per_call) for _ in range(planner.WINDOW))
    monkeypatch.setattr(choice, 'estimate', lambda name, record: costs[name])
    return plan


def test_a_pass_that_cannot_serve_in_a_re_plan_releases_the_reserve(monkeypatch):
    plan = _owing_a_check(monkeypatch, {'paper': 0.5, 'interpolated': 1.2})
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    ticket = plan.ticket()
    assert ticket.candidate == 'paper'
    plan.learn(ticket, _Size(38, 6), 'restart', 0.6)  # it could not serve this call
    assert plan.state == 'exploring', str(plan)
    assert plan.ticket().candidate == 'interpolated'


def test_a_re_plan_stops_before_a_check_the_budget_cannot_hold(monkeypatch):
    """A re-plan's next call is priced with its check (by the last one's time) where its
    pass awaits one: where the budget left holds the call but not the check, the re-plan
    stops before it."""
    plan = _owing_a_check(monkeypatch, {'restart': 0.3, 'paper': 0.4, 'interpolated': 0.5})
    plan.choice = 'interpolated'  # unchecked, its calls at 0.5 s; a check is 4 calls
    plan.calls, plan.spent, plan.first_exploration = 200, 16, 11  # 5 calls left
    plan._times.clear()
    plan._times.extend((plan.calls, 0.5) for _ in range(planner.WINDOW))
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    assert plan.state == 'exploring' and 'paper' in plan.reason, str(plan)
    ticket = plan.ticket()
    assert ticket.candidate == 'restart'  # the cheapest first
    plan.learn(ticket, _Size(38, 6), 'restart', 0.6)  # slower: 4 calls left, the check 5
    assert plan.state == 'settled' and plan.choice == 'interpolated', str(plan)
    paper = plan.candidates['paper']
    assert not paper.seconds and paper.error_ratio is None and plan.spent == 17


def test_a_re_plan_checks_the_checkpoint_first_and_judges_the_current_rule_beside_it(
    monkeypatch,
):
    """Where the current choice (the paper's rule) and the checkpoint both await their
    check, the checkpoint's call goes first: its check judges the paper's rule too, and
    prices the next check by its own time, not by the pass judged beside it."""
    plan = _owing_a_check(monkeypatch, {'paper': 0.5, 'checkpoint': 0.4, 'interpolated': 1.2})
    plan.calls, plan.spent, plan.first_exploration = 1000, 11, 11
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    ticket = plan.ticket()
    assert ticket.candidate == 'checkpoint' and plan.check_status(ticket) == 'check'
    assert plan.awaiting_check(ticket) == ['paper']
    plan.accuracy_checked(ticket, 0.8, admitted=True, seconds=2.0)  # 4 calls of 0.5 s
    plan.accuracy_checked(ticket, 0.6, admitted=True, seconds=0.5, name='paper')
    plan.learn(ticket, _Size(38, 6), 'checkpoint', 0.45)  # faster: no call spent
    assert plan._check_seconds == 2.0 and plan.spent == pytest.approx(16.0)
    assert plan.candidates['paper'].error_ratio == 0.6
    following = plan.ticket()
    assert plan.check_status(following) == 'run', str(plan)


def test_a_check_the_budget_cannot_hold_is_made_once_it_can(monkeypatch):
    """Where the solve moved and the budget cannot hold the current choice's check, the
    band is not moved: the next calls find the solve out of it again, and once the
    budget allows, the check is made."""
    plan = _owing_a_check(monkeypatch, {'paper': 0.5, 'interpolated': 1.2})
    plan.calls, plan.spent, plan.first_exploration = 200, 19, 11  # 2 calls left
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    assert plan.state == 'settled' and plan.choice == 'paper', str(plan)
    assert 'waits for the budget' in plan.reason
    assert plan.reference == ((30, 30), (5, 5))
    plan.spent = 11  # the budget holds the check again
    for _ in range(planner.WINDOW // 2 + 1):
        ticket = plan.ticket()
        plan.learn(ticket, _Size(38, 6), 'paper', 0.5)
    assert plan.state == 'exploring', str(plan)
    ticket = plan.ticket()
    assert ticket.candidate == 'paper' and plan.check_status(ticket) == 'check'


@pytest.mark.parametrize('spent, plans_anew', [(11.0, True), (13.0, False)])
def test_a_plan_made_anew_counts_the_check_it_will_make(spent, plans_anew):
    """Where the chosen pass cannot serve a call, the call site plans anew only where the
    budget holds the new plan's calls and, where passes are offered checked, a check."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', 'interpolated', 1
    plan.candidates = {
        'interpolated': planner.Candidate('interpolated', 10.0, seconds=[0.5, 0.5]),
        'restart': planner.Candidate('restart', 10.0, seconds=[1.0, 1.0]),
    }
    plan.checked = {'paper'}
    plan._check_seconds = 2.0  # four calls of the fastest pass (0.5 s)
    # 21 calls allowed; a plan made anew takes 1 + ROUNDS × 2 = 5 calls and the check 4.
    plan.calls, plan.spent, plan.first_exploration = 200, spent, 11.0
    plan._replan('interpolated could not serve a call (ran restart)', fallback='restart')
    if plans_anew:
        assert plan.state == 'new' and plan.reason.startswith('planning again'), str(plan)
    else:
        assert plan.state == 'settled' and plan.choice is None, str(plan)
        assert 'the exploring budget is spent' in plan.reason
