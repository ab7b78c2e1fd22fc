"""The planner of ``backward='auto'``: it measures the admissible passes on real calls and
takes the fastest, re-plans when the solve changes, explores within its bound, and plans
by estimate alone (bit-identical gradients) under the deterministic switch."""

import gc
import threading
import time
import warnings

import pytest
import torch
from torch import nn

import torch_gq_adjoint
from torch_gq_adjoint import odeint, odeint_adjoint_gq
from torch_gq_adjoint._impl import choice, planner

from .test_paper_rule import _Size  # what the planner reads of a record


class _Field(nn.Module):
    def __init__(self, dim=2, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim)).double()

    def forward(self, t, z):
        return self.net(z)


def _step(func, y0, t, **kwargs):
    """One training step's gradient from one call site; ``(gradients, info)``."""
    info = {}
    solution = odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-9, info=info, **kwargs)
    loss = (solution**2).sum()
    return torch.autograd.grad(loss, list(func.parameters())), info


def _problem():
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-1.0, 0.2]], dtype=torch.float64)
    return _Field(), y0, torch.linspace(0, 1, 6, dtype=torch.float64)


def _slowed(monkeypatch, names, seconds=0.15):
    """Make the passes ``names`` slower by ``seconds`` per backward pass."""
    for name in names:
        cls = choice._BY_NAME[name].backward
        original = cls.__call__

        def slow(self, grad_solution, original=original):
            time.sleep(seconds)
            return original(self, grad_solution)

        monkeypatch.setattr(cls, '__call__', slow)


def _site_plan():
    (plan,) = torch_gq_adjoint.plans()
    return plan


def _exploring_calls():
    return 1 + planner.ROUNDS * len(choice.PASSES)


@pytest.fixture
def size_band_only(monkeypatch):
    """The plan watches the solve's size alone, not its pass's time: for the tests of what
    the size band does, whose calls (milliseconds) a busy machine may slow by half."""
    monkeypatch.setattr(planner, 'TIME_BAND', float('inf'))


@pytest.mark.parametrize('fast', ['checkpoint', 'interpolated', 'restart'])
def test_the_plan_takes_the_pass_that_is_fastest(monkeypatch, fast):
    func, y0, t = _problem()
    _slowed(monkeypatch, [name for name in choice.PASSES if name != fast])
    ran = []
    for _ in range(_exploring_calls() + 3):
        _, info = _step(func, y0, t)
        ran.append(info['backward'])
    plan = _site_plan()
    assert plan.state == 'settled' and plan.choice == fast, str(plan)
    assert ran[-3:] == [fast] * 3
    # Every candidate that was measured served a call with its own pass.
    measured = [c for c in plan.candidates.values() if c.seconds]
    assert len(measured) >= 2
    assert 'fastest measured' in plan.reason and fast in str(plan)


def test_every_explored_call_gives_direct_backprops_gradient():
    func, y0, t = _problem()
    solution = odeint(func, y0, t, rtol=1e-10, atol=1e-10)
    wanted = torch.autograd.grad((solution**2).sum(), list(func.parameters()))
    ran = set()
    for _ in range(_exploring_calls()):
        grads, info = _step(func, y0, t)
        ran.add(info['backward'])
        for mine, reference in zip(grads, wanted):
            assert ((mine - reference).norm() / reference.norm()).item() < 1e-5
    assert len(ran) >= 3  # the calls served by different passes


def _settled_with_a_stiffer_solve_to_come():
    func, y0, t = _problem()
    for _ in range(_exploring_calls() + 1):
        _step(func, y0, t)
    plan = _site_plan()
    assert plan.state == 'settled' and plan.plans_made == 1
    with torch.no_grad():  # stiffer dynamics: many more steps
        for param in func.parameters():
            param.mul_(6.0)
    return plan, func, y0, t


def test_a_solve_that_changes_moves_the_band_where_the_prices_keep_the_plan(size_band_only):
    plan, func, y0, t = _settled_with_a_stiffer_solve_to_come()
    reference = plan.reference
    for _ in range(8):  # the median of recent calls leaves the band after a few calls
        _step(func, y0, t)
    assert 'moved from' in plan.reason
    assert plan.reference[0][0] > planner.BAND * reference[0][1]
    if plan.state == 'settled':  # the re-priced passes kept the choice, or no budget
        assert plan.plans_made == 1
        assert 'keep it' in plan.reason or 'budget is spent' in plan.reason


def test_it_measures_again_where_the_re_priced_passes_compete(monkeypatch, size_band_only):
    monkeypatch.setattr(planner, 'EXPLORE_SHARE', 1.0)  # no budget limit in this test
    plan, func, y0, t = _settled_with_a_stiffer_solve_to_come()
    # Every other measured pass priced far below the current choice (priced from its
    # recent calls): they are measured again.
    plan.calibration = {name: 1e-12 for name in plan.calibration if name != plan.choice}
    assert len(plan.calibration) >= 1
    for _ in range(8):
        _step(func, y0, t)
        if plan.state == 'exploring':
            break
    assert plan.state == 'exploring' and plan.plans_made == 2
    assert 'measuring' in plan.reason
    for _ in range(_exploring_calls()):
        _step(func, y0, t)
    assert plan.state == 'settled' and plan.plans_made == 2


def test_one_batchs_outlier_does_not_move_the_plan(size_band_only):
    """Batches of different difficulty (ode_demo draws a new one every step): a single
    stiff batch between ordinary ones leaves the plan and its band alone."""
    plan, func, y0, t = _settled_with_a_stiffer_solve_to_come()
    with torch.no_grad():
        for param in func.parameters():
            param.div_(6.0)
    stiff = [param.detach().clone() * 6.0 for param in func.parameters()]
    ordinary = [param.detach().clone() for param in func.parameters()]
    reference = plan.reference
    for number in range(20):
        with torch.no_grad():
            for param, value in zip(func.parameters(), stiff if number == 10 else ordinary):
                param.copy_(value)
        _step(func, y0, t)
    assert plan.reference == reference and plan.plans_made == 1


def test_exploring_stays_within_its_bound_over_a_long_run():
    """A solve that keeps changing (its dynamics grow every call) would re-plan at every
    call; the budget keeps the calls spent exploring within 9 + EXPLORE_SHARE of all calls."""
    func, y0, t = _problem()
    calls = 500
    for _ in range(calls):
        with torch.no_grad():
            for param in func.parameters():
                param.mul_(1.002)
        _step(func, y0, t)
    plan = _site_plan()
    assert plan.calls == calls
    # It re-priced the passes as the solve grew: measured again, or (the budget spent)
    # moved its band on the re-priced estimates.
    assert plan.plans_made >= 2 or 'moved from' in plan.reason, str(plan)
    assert plan.spent <= plan.first_exploration + planner.EXPLORE_SHARE * calls


def test_the_deterministic_switch_plans_by_estimate_with_identical_gradients(monkeypatch):
    timed = []
    original = planner.Ticket.start

    def start(self, device):
        timed.append(self.timed)
        original(self, device)

    monkeypatch.setattr(planner.Ticket, 'start', start)
    runs = []
    torch.use_deterministic_algorithms(True)
    try:
        assert torch_gq_adjoint.planning() == 'estimate'
        for _ in range(2):
            torch_gq_adjoint.reset_plans()
            func, y0, t = _problem()
            runs.append([_step(func, y0, t) for _ in range(_exploring_calls() + 2)])
    finally:
        torch.use_deterministic_algorithms(False)
    assert not any(timed)
    for (first, first_info), (second, second_info) in zip(*runs):
        assert first_info['backward'] == second_info['backward']
        assert first_info['plan'] == 'estimated'
        assert all(torch.equal(a, b) for a, b in zip(first, second))
    # The plan shows the pass the last call ran.
    assert f"estimated: {second_info['backward']} (the last call's estimate)" in str(_site_plan())
    assert torch_gq_adjoint.planning() == 'measure'


def test_set_planning_is_the_explicit_switch():
    torch_gq_adjoint.set_planning('estimate')
    assert torch_gq_adjoint.planning() == 'estimate'
    torch_gq_adjoint.set_planning('measure')
    assert torch_gq_adjoint.planning() == 'measure'
    with pytest.raises(ValueError, match="'measure', 'estimate' or None; got 'fast'"):
        torch_gq_adjoint.set_planning('fast')


def test_a_plan_can_be_pinned_read_and_reset():
    func, y0, t = _problem()
    _step(func, y0, t)
    plan = _site_plan()
    with pytest.raises(ValueError, match="pin: name must be one of .*got 'fastest'"):
        plan.pin('fastest')
    plan.pin('restart')
    for _ in range(_exploring_calls()):
        _, info = _step(func, y0, t)
        assert info['backward'] == 'restart' and info['plan'] == 'pinned'
    assert 'pinned' in str(plan) and 'test_planner.py' in str(plan)
    plan.unpin()
    assert plan.state == 'new' and plan.choice is None
    assert '  new: nothing chosen (planning again: unpinned)' in str(plan)
    with pytest.raises(ValueError, match='nothing is chosen yet'):
        plan.pin()
    torch_gq_adjoint.reset_plans()
    assert torch_gq_adjoint.plans() == []


def test_a_pinned_pass_that_cannot_serve_warns_and_names_what_ran():
    from torch_gq_adjoint._impl import notices

    notices.forget()
    func, y0, t = _problem()
    t = t[[0, -1]]  # one output interval: the propagator does not serve it
    _step(func, y0, t)
    _site_plan().pin('propagator')
    with pytest.warns(RuntimeWarning, match=r"pinned to 'propagator', which cannot serve") as seen:
        _, info = _step(func, y0, t)
    assert info['backward'] != 'propagator' and info['plan'] == 'pinned'
    assert f"got '{info['backward']}'" in str(seen[0].message)
    assert 'one output interval' in str(seen[0].message)


def test_batches_and_series_of_varying_length_share_a_few_plans():
    """Irregular series (a different number of output times per batch) and the last,
    smaller batch of an epoch: one plan per length would explore at every call."""
    func, y0, _ = _problem()
    calls = 160
    for step in range(calls):
        length = 5 + step % 60
        batch = y0 if step % 4 else y0[:2]
        _step(func, batch, torch.linspace(0, 1, length, dtype=torch.float64))
    found = torch_gq_adjoint.plans()
    # Lengths 5-8, 9-16, 17-32, 33-64 (4), batches of 3 and of 2 (2): 8 plans.
    assert len(found) == 8
    assert sum(plan.calls for plan in found) == calls
    spent = sum(plan.spent for plan in found)
    assert spent <= len(found) * _exploring_calls() + planner.EXPLORE_SHARE * calls


@pytest.mark.parametrize(
    'first, second, shared',
    [
        (1, 2, False),  # one output time: no interval (the interpolating pass refuses)
        (2, 3, False),  # one interval: the propagator refuses it
        (3, 4, True),
        (4, 5, False),
        (5, 8, True),
        (8, 9, False),
    ],
)
def test_the_number_of_times_shares_plans_by_powers_of_two(first, second, shared):
    func, y0, _ = _problem()
    for length in (first, second):
        _step(func, y0, torch.linspace(0, 1, length, dtype=torch.float64))
    assert len(torch_gq_adjoint.plans()) == (1 if shared else 2)


def test_state_shapes_share_plans_by_their_leading_size_only():
    func = _Field(dim=2)
    for shape in ((3, 2), (4, 2), (5, 2), (4, 1, 2)):
        y0 = torch.ones(shape, dtype=torch.float64)
        _step(func, y0, torch.linspace(0, 1, 4, dtype=torch.float64))
    # (3, 2) and (4, 2) share; (5, 2) is the next power of two; (4, 1, 2) another layout.
    assert [plan.calls for plan in torch_gq_adjoint.plans()] == [2, 1, 1]
    text = str(torch_gq_adjoint.plans()[0])
    assert '4 times (a plan for 3-4 times' in text


def test_call_sites_and_settings_get_plans_of_their_own():
    func, y0, t = _problem()
    _step(func, y0, t)
    _step(func, y0[:2], t)  # another state size
    _step(func, y0, t[:3])  # other output times
    odeint_adjoint_gq(func, y0, t)[-1].sum().backward()  # another line
    assert len(torch_gq_adjoint.plans()) == 4


def test_a_solve_without_backward_records_and_plans_nothing():
    func, y0, t = _problem()
    info = {}
    with torch.no_grad():
        odeint_adjoint_gq(func, y0, t, info=info)
    assert torch_gq_adjoint.plans() == []
    assert info['checkpoint_steps'] == 0 and info['checkpoint_bytes'] == 0


def test_two_threads_share_a_plan_safely():
    func, y0, t = _problem()
    solution = odeint(func, y0, t, rtol=1e-10, atol=1e-10)
    wanted = torch.autograd.grad((solution**2).sum(), list(func.parameters()))
    errors = []

    def train():
        try:
            for _ in range(8):
                grads, _ = _step(func, y0, t)
                for mine, reference in zip(grads, wanted):
                    assert ((mine - reference).norm() / reference.norm()).item() < 1e-5
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=train) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _site_plan().calls == 16


def test_several_solves_per_step_from_one_line_settle_once(size_band_only):
    """Three solves of different lengths per training step from one line (as the
    bouncing ball's bounces): their tickets are taken before any backward pass, and the
    plan's band spans all three, so it settles once and stays."""
    func, y0, _ = _problem()
    horizons = [1.0, 2.0, 0.5]
    for _ in range(40):
        loss = 0.0
        for horizon in horizons:
            t = torch.linspace(0, horizon, 4, dtype=torch.float64)
            loss = loss + (odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-9) ** 2).sum()
        loss.backward()
    plan = _site_plan()
    assert plan.state == 'settled' and plan.plans_made == 1, str(plan)
    assert plan.calls == 120 and plan.explored <= _exploring_calls() + 2


class _Noisy(nn.Module):
    """A field that draws from the global generator at every evaluation (as one with
    dropout or noise would), with a draw that leaves its values alone (noisy values would
    stall the backward solves' step-size control)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, z):
        return self.net(z) + 0.0 * torch.rand((), dtype=z.dtype)


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(),
        dict(backward='restart'),
        dict(backward='interpolated'),
        dict(backward='propagator'),
        dict(backward='checkpoint'),
        dict(backward='checkpoint', checkpoint_memory=2000),  # the kept graph gives way
    ],
    ids=['auto', 'restart', 'interpolated', 'propagator', 'checkpoint', 'graph over budget'],
)
def test_the_generator_moves_as_under_direct_backprop(kwargs):
    """A seeded step draws exactly what direct backprop's draws: the backward passes'
    evaluations, the probes and a second forward attempt leave the generator alone."""
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-1.0, 0.2]], dtype=torch.float64)
    t = torch.linspace(0, 1, 6, dtype=torch.float64)

    def after_a_step(solve, **options):
        func = _Noisy()
        torch.manual_seed(5)
        solution = solve(func, y0, t, rtol=1e-6, atol=1e-8, **options)
        (solution**2).sum().backward()
        return torch.rand(4)

    wanted = after_a_step(odeint)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for _ in range(3):  # first call, then the planner's exploring calls
            assert torch.equal(after_a_step(odeint_adjoint_gq, **kwargs), wanted)


def test_a_pass_that_stops_serving_at_a_shared_call_site_leaves_each_call_the_estimate(
    size_band_only,
):
    # One call site, two functions: the first lets the propagator serve, the second
    # couples its samples. Once the exploring budget is spent, the propagator's refusal
    # must not settle the site on the pass the refused call fell back to (restart, twice
    # the interpolating pass's estimate, for every later call of both functions).
    import collections
    import warnings

    torch.manual_seed(0)

    class Independent(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2).double()

        def forward(self, t, z):
            return torch.tanh(self.linear(z))

    class Coupled(Independent):
        def forward(self, t, z):
            return torch.tanh(self.linear(z)) + 0.5 * torch.roll(z, 1, 0)

    t = torch.linspace(0, 3, 60, dtype=torch.float64)
    y0 = torch.randn(6, 2, dtype=torch.float64)
    first, second = Independent(), Coupled()
    ran = collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for step in range(30):
            func = second if step % 5 == 4 else first
            info = {}
            solution = odeint_adjoint_gq(func, y0, t, rtol=1e-3, atol=1e-3, info=info)
            solution.pow(2).sum().backward()
            if step >= 10:
                ran[type(func).__name__, info['backward']] += 1
    assert ran[('Independent', 'propagator')] == 16
    assert ran[('Coupled', 'interpolated')] == 4


def test_a_spent_budget_leaves_the_choice_to_the_calibrated_estimates(monkeypatch):
    """A pass tied with another when measured may grow with the solve while the other
    does not (sines with 10 times: the propagator against the interpolating pass); with
    nothing left to measure, the calibrated estimates switch where they clearly differ."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice = 'settled', 'propagator'
    plan.calibration = {'propagator': 1.0, 'interpolated': 1.0}
    plan.calls, plan.spent, plan.first_exploration = 50, 9, 7
    costs = {'propagator': 200.0, 'interpolated': 100.0}
    monkeypatch.setattr(choice, 'estimate', lambda name, record: costs[name])
    plan._recalibrate(None, (38, 6), 'the solve moved')
    assert plan.state == 'settled' and plan.spent == 9 and plan.explored == 0
    assert plan.choice == 'interpolated' and 'which it takes' in plan.reason
    plan.choice, costs['interpolated'] = 'propagator', 190.0  # within SWITCH_MARGIN
    plan._recalibrate(None, (50, 8), 'the solve moved again')
    assert plan.choice == 'propagator' and plan.reason.endswith('estimates keep it')


def test_a_spent_budget_never_switches_to_a_pass_priced_from_an_older_plan(monkeypatch):
    """The current choice's price holds how its time grew since it was measured; a pass
    last measured in an earlier plan is priced from before that growth. With nothing
    left to measure, no switch rests on that difference (on the nested spheres at width
    2000 it took the interpolating pass at 2.3 times the paper's rule's time, for the
    rest of a 500-step run)."""
    plan = _settled_on('paper', 2.5, monkeypatch, {'paper': 20.0, 'interpolated': 20.0})
    plan.plans_made = 3
    plan.calibration = {'paper': 2.5 / 20, 'interpolated': 0.9 / 20}
    plan._measured_in = {'paper': 3, 'interpolated': 1}
    plan.calls, plan.spent, plan.first_exploration = 150, 40, 11  # the budget is spent
    plan._recalibrate(None, (26, 4), 'the solve moved')
    assert plan.choice == 'paper' and plan.reason.endswith('estimates keep it'), str(plan)
    # Measured in the same plan, the calibrated estimates still choose between them.
    plan._measured_in['interpolated'] = 3
    plan._recalibrate(None, (26, 4), 'the solve moved')
    assert plan.choice == 'interpolated' and 'which it takes' in plan.reason, str(plan)


def _delays(monkeypatch):
    """``{pass: seconds}`` each backward pass sleeps, read at every call (change it to
    make a pass slower from the next call on)."""
    delays = dict.fromkeys(choice.PASSES, 0.0)
    for name in choice.PASSES:
        cls = choice._BY_NAME[name].backward
        original = cls.__call__

        def slow(self, grad_solution, original=original, name=name):
            time.sleep(delays[name])
            return original(self, grad_solution)

        monkeypatch.setattr(cls, '__call__', slow)
    return delays


def _settled_on_the_checkpoint(monkeypatch, own, others):
    """A plan settled on the checkpoint (its backward sleeping ``own`` seconds, the other
    passes' ``others``), its first settled calls timed; ``(plan, delays, problem)``."""
    delays = _delays(monkeypatch)
    for name in delays:
        delays[name] = own if name == 'checkpoint' else others
    problem = _problem()
    for _ in range(_exploring_calls() + planner.WINDOW):
        _step(*problem)
    plan = _site_plan()
    assert plan.state == 'settled' and plan.choice == 'checkpoint', str(plan)
    return plan, delays, problem


def test_a_pass_whose_time_grows_on_an_unchanged_solve_is_planned_again(monkeypatch):
    """The forward's size cannot see a backward that grows on its own (the paper's rule
    on the nested spheres off their plateau takes three times its first time): the plan
    watches its pass's time and, where it leaves TIME_BAND, measures the others again."""
    monkeypatch.setattr(planner, 'EXPLORE_SHARE', 1.0)  # the budget is tested below
    plan, delays, (func, y0, t) = _settled_on_the_checkpoint(monkeypatch, 0.0, 0.03)
    reference = plan.reference
    delays['checkpoint'] = 0.15  # five times the others' from now on
    ran = []
    for _ in range(planner.WINDOW + _exploring_calls() + 3):
        _, info = _step(func, y0, t)
        ran.append(info['backward'])
    assert plan.plans_made == 2 and plan.reference == reference, str(plan)
    assert plan.state == 'settled' and plan.choice != 'checkpoint', str(plan)
    assert ran[-3:] == [plan.choice] * 3
    # The checkpoint was priced from its recent calls and not measured again: the others
    # cost a fifth of it.
    assert plan.candidates['checkpoint'].excluded.startswith('re-priced at'), str(plan)
    assert ran.count('checkpoint') <= planner.WINDOW // 2 + 2


def test_a_time_within_its_band_keeps_the_plan(monkeypatch):
    plan, delays, (func, y0, t) = _settled_on_the_checkpoint(monkeypatch, 0.1, 0.3)
    delays['checkpoint'] = 0.12  # slower, within TIME_BAND
    for _ in range(2 * planner.WINDOW):
        _step(func, y0, t)
    assert plan.plans_made == 1 and plan.choice == 'checkpoint', str(plan)
    assert 'moved' not in plan.reason


def _settled_on(name, seconds, monkeypatch, costs):
    """A plan settled on ``name``, its last calls timed at ``seconds`` each, whose next
    re-pricing finds the estimates ``costs`` (calibrated 1:1 for every pass)."""
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.plans_made = 'settled', name, 1
    plan.calibration = dict.fromkeys(costs, 1.0)
    plan.calls, plan.spent, plan.first_exploration = 40, 9, 9
    times = [seconds] * (planner.WINDOW - 1) + [1.1 * seconds]
    plan._times.extend((plan.calls, time) for time in times)
    monkeypatch.setattr(choice, 'estimate', lambda name, record: costs[name])
    return plan


def _serve(plan, seconds):
    """Run ``plan``'s exploring calls, each pass taking ``seconds[pass]``; the passes run."""
    ran = []
    while plan.state == 'exploring':
        ticket = plan.ticket()
        ran.append(ticket.candidate)
        plan.learn(ticket, _Size(38, 6), ticket.candidate, seconds[ticket.candidate])
    return ran


def test_a_re_plan_spends_nothing_on_a_pass_that_runs_faster(monkeypatch):
    """Measuring a pass that turns out faster than the current choice costs no step: the
    budget counts only calls slower than the pass they would replace."""
    plan = _settled_on('restart', 1.0, monkeypatch, {'restart': 1.0, 'checkpoint': 0.8})
    plan._recalibrate(_Size(38, 6), (38, 6), 'its calls moved')
    assert plan.state == 'exploring'
    # The current choice is priced from its recent calls: only the checkpoint is run.
    assert plan.candidates['restart'].seconds == [1.0, 1.1][-planner.ROUNDS :]
    ran = _serve(plan, {'checkpoint': 0.7})
    assert ran == ['checkpoint'] * planner.ROUNDS
    assert plan.choice == 'checkpoint' and plan.spent == 9 and plan.explored == 2


def test_a_re_plan_spends_its_slower_calls_and_stops_at_the_budget(monkeypatch):
    costs = {'restart': 1.0, 'checkpoint': 0.8, 'interpolated': 0.9}
    plan = _settled_on('restart', 1.0, monkeypatch, costs)
    allowed = plan.first_exploration + planner.EXPLORE_SHARE * plan.calls  # 11 calls
    plan._recalibrate(_Size(38, 6), (38, 6), 'its calls moved')
    # Cheapest first; both slower than the current choice: each call is spent, and the
    # re-plan stops where the next would pass the budget, keeping the current choice.
    ran = _serve(plan, {'checkpoint': 1.3, 'interpolated': 1.4})
    assert ran == ['checkpoint', 'interpolated']
    assert plan.spent == 11 <= allowed and plan.choice == 'restart', str(plan)
    assert plan.state == 'settled'


def test_a_settled_call_is_timed_on_the_cpu_and_sampled_elsewhere():
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.calls = 'settled', 'checkpoint', 1
    ticket = plan.ticket()
    assert not ticket.timed and ticket.timed_on_cpu
    ticket.start(torch.device('cuda'))  # no clock (and no wait for the device)
    assert not ticket.timed
    ticket.start(torch.device('cpu'))
    time.sleep(0.01)
    ticket.stop(torch.device('cpu'))
    assert ticket.timed and ticket.seconds >= 0.01
    # One ticket in SAMPLE_EVERY is timed wherever it runs (tickets, not calls: several
    # solves per step take theirs before any backward pass).
    timed = [plan.ticket().timed for _ in range(2 * planner.SAMPLE_EVERY)]
    assert sum(timed) == 2 and timed[planner.SAMPLE_EVERY - 2]


def test_a_checked_choice_is_checked_first_before_a_re_plan_may_stop(monkeypatch):
    """The paper's rule, the current choice, is re-checked before a slower pass's call
    spends the budget: the re-plan cannot stop on a pass it just found slower."""
    plan = _settled_on('paper', 1.0, monkeypatch, {'paper': 1.0, 'restart': 0.9})
    plan.checked, plan.spent = {'paper'}, 10  # one call of budget left
    plan._recalibrate(_Size(38, 6), (38, 6), 'its calls moved')
    first = plan.ticket()
    assert first.candidate == 'paper' and plan.check_status(first) == 'check'
    assert len(plan.candidates['paper'].seconds) == planner.ROUNDS - 1
    plan.accuracy_checked(first, 0.5, admitted=True)
    plan.learn(first, _Size(38, 6), 'paper', 1.0)
    second = plan.ticket()
    assert second.candidate == 'restart'
    plan.learn(second, _Size(38, 6), 'restart', 1.3)  # slower: spent, and the last call
    assert plan.state == 'settled' and plan.choice == 'paper', str(plan)
    assert plan.spent == 11


def test_a_pass_kept_for_want_of_budget_stays_watched(monkeypatch):
    """Its time keeps the reference it was chosen at, so that once the budget allows, the
    next window still finds it moved and measures the passes again."""
    costs = {'propagator': 1.0, 'interpolated': 1.9}
    plan = _settled_on('propagator', 1.0, monkeypatch, costs)
    plan._times.clear()
    plan.reference, plan._time_reference = ((38, 38), (6, 6)), 1.0
    plan.calls, plan.spent, plan.first_exploration = 500, 40, 11  # the budget is spent
    for _ in range(planner.WINDOW // 2 + 1):
        plan.learn(plan.ticket(), _Size(38, 6), 'propagator', 2.0)
    assert plan.state == 'settled' and 'calibrated estimates keep it' in plan.reason
    plan.spent = 11  # the budget allows a re-plan again
    for _ in range(planner.WINDOW // 2 + 1):
        plan.learn(plan.ticket(), _Size(38, 6), 'propagator', 2.0)
    assert plan.state == 'exploring' and 'its calls moved from 1e+03 ms' in plan.reason


def test_a_second_backward_through_one_solve_is_not_another_call():
    """With ``retain_graph=True`` the second backward's clock would add to the first's."""
    func, y0, t = _problem()
    for _ in range(2):
        loss = (odeint_adjoint_gq(func, y0, t, rtol=1e-7, atol=1e-9) ** 2).sum()
        first = torch.autograd.grad(loss, list(func.parameters()), retain_graph=True)
        second = torch.autograd.grad(loss, list(func.parameters()))
        for one, other in zip(first, second):
            assert torch.allclose(one, other, rtol=1e-6, atol=0.0)
    assert _site_plan().calls == 2


def test_a_re_plan_the_time_alone_set_off_keeps_the_checks_made_at_this_solve(monkeypatch):
    """Each check of accuracy costs a tighter solve; the error moves with the solve's
    steps, not with the pass's time: at an unchanged solve the checks stand."""
    costs = {'paper': 1.0, 'checkpoint': 0.8, 'restart': 1.5}
    plan = _settled_on('paper', 1.0, monkeypatch, costs)
    plan.checked = {'paper', 'checkpoint'}
    plan._ratios = {'paper': 0.6, 'checkpoint': 0.9}
    plan._recalibrate(_Size(38, 6), (38, 6), 'its calls moved', solve_moved=False)
    paper, checkpoint = plan.candidates['paper'], plan.candidates['checkpoint']
    assert paper.admitted and len(paper.seconds) == planner.ROUNDS  # not run again
    assert checkpoint.admitted and checkpoint.error_ratio == 0.9
    ticket = plan.ticket()
    assert ticket.candidate == 'checkpoint' and plan.check_status(ticket) == 'run'
    # Where the solve moved, both are checked again.
    plan = _settled_on('paper', 1.0, monkeypatch, costs)
    plan.checked = {'paper', 'checkpoint'}
    plan._ratios = {'paper': 0.6, 'checkpoint': 0.9}
    plan._recalibrate(_Size(38, 6), (38, 6), 'the solve moved')
    assert plan.candidates['paper'].error_ratio is None
    assert plan.check_status(plan.ticket()) == 'check'


@pytest.fixture
def slow_collection():
    """A function that runs a collection of the garbage collector taking 0.3 s longer
    (as one of a large heap does)."""
    slow = []

    def sleep(phase, info):
        if phase == 'start' and slow:
            time.sleep(0.3)

    def collect():
        slow.append(True)
        try:
            return gc.collect()
        finally:
            slow.clear()

    planner.COLLECTOR.install()  # the planner's watch sees the whole collection
    gc.callbacks.append(sleep)
    yield collect
    gc.callbacks.remove(sleep)


def test_a_timed_call_leaves_out_the_garbage_collectors_time(slow_collection):
    plan = planner.CallSitePlan(('train.py', 1), 'a solve')
    plan.state, plan.choice, plan.calls = 'settled', 'checkpoint', 1
    ticket = plan.ticket()
    started = time.perf_counter()
    ticket.start(torch.device('cpu'))
    time.sleep(0.02)
    slow_collection()
    ticket.stop(torch.device('cpu'))
    assert time.perf_counter() - started >= 0.32
    assert 0.02 <= ticket.seconds < 0.15


def test_a_collection_on_the_fastest_passs_first_call_does_not_prune_it(
    monkeypatch, slow_collection
):
    # Every pass but the checkpoint 0.05 s slower; the checkpoint's first measured call
    # pays a collection of 0.3 s, more than twice the others' calls (it was pruned).
    func, y0, t = _problem()
    _slowed(monkeypatch, [name for name in choice.PASSES if name != 'checkpoint'], 0.05)
    cls = choice._BY_NAME['checkpoint'].backward
    original, collected = cls.__call__, []

    def collecting(self, grad_solution):
        if not collected:
            collected.append(slow_collection())
        return original(self, grad_solution)

    for _ in range(_exploring_calls()):
        _step(func, y0, t)
        # The first call records for every pass: the checkpoint's measured calls follow.
        monkeypatch.setattr(cls, '__call__', collecting)
    plan = _site_plan()
    assert collected and plan.candidates['checkpoint'].excluded is None, str(plan)
    assert plan.state == 'settled' and plan.choice == 'checkpoint', str(plan)
