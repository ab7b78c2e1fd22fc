"""Whole training runs of the client workloads, the backpropagation modes side by side.

One step of an untrained model does not show what a training run costs: the forward's
evaluations grow as a model trains, and ``backward='auto'`` plans at each call site as
the run goes (``torch_gq_adjoint.plans()``). Here each mode trains its own copy of a
workload (the same initial parameters and data) with Adam for the workload's
``train_steps``; the modes take turns in chunks of steps, in an order rotated each
turn, so that drifts of the machine touch all of them alike; each step draws its batch
as the workload's script does (``Workload.next_batch``, the same sequence for every
mode). Reported per mode: the mean
seconds of a step over the whole run (forward, loss, backward, optimiser step); the
ratio of each chunk's mean to direct backprop's in the same turn (median and quartiles);
and, for the default, which passes served its calls and how many of them the planner
spent exploring.
"""

from __future__ import annotations

import collections
import re
import statistics
import time

import torch
from tqdm import tqdm

import torch_gq_adjoint
from benchmarks.timing import paired_ratios, rotated
from benchmarks.workloads import build
from common.devices import synchronise

#: Steps each mode trains before the next takes its turn.
CHUNK = 20
#: The mode of ``benchmarks.clients`` that forces the paper's rule (``'paper'`` in a plan).
PAPER_MODE = 'gq gtol=0.1'
#: The modes of ``benchmarks.clients`` that force one backward pass of the library.
FORCED = ('gq checkpoint', 'gq interpolated', 'gq propagator', 'gq restart', PAPER_MODE)


def mode_of(name):
    """The ``benchmarks.clients`` mode that forces the pass ``name`` (``info['backward']``)."""
    return PAPER_MODE if name == 'paper' else 'gq ' + name


def train_in_turns(name, modes, runner_factory, steps, device, chunk=CHUNK, quiet=False):
    """Train ``name`` once per mode for ``steps`` steps, the modes taking turns.

    Args:
        name: a workload of :mod:`benchmarks.workloads`.
        modes: mode names; ``runner_factory(workload, mode)`` gives an object with
            ``solve`` (the solver) and ``info`` (the library's ``info`` dict, or None).
        runner_factory: as above.
        steps: int, training steps per mode.
        device: torch device.
        chunk: int, steps per mode per turn (default :data:`CHUNK`).
        quiet: bool, no progress bar (default False: one on stderr, its steps those of
            every mode, with the pass the default's last step ran).

    Returns:
        ``{mode: dict(seconds=[per step], passes=Counter of the passes that served the
        step's last call (library modes), losses=[first, last], plans=[...])}``; a mode
        whose step raises gets ``dict(failed=reason)`` and leaves the turns.
    """
    torch_gq_adjoint.reset_plans()
    runs = {}
    for mode in modes:
        workload = build(name, torch.float32, device)
        runner = runner_factory(workload, mode)
        optimiser = torch.optim.Adam(workload.params, lr=workload.learning_rate)
        runs[mode] = dict(
            workload=workload,
            runner=runner,
            optimiser=optimiser,
            seconds=[],
            passes=collections.Counter(),
            losses=[],
        )
    done = turn = 0
    # The time left averages the whole run (later steps of a neural ODE often cost more).
    bar = tqdm(total=steps * len(runs), desc=name, unit='step', disable=quiet, smoothing=0)
    while done < steps:
        count = min(chunk, steps - done)
        for mode in rotated(list(runs), turn):
            run = runs[mode]
            if 'failed' in run:
                bar.update(count)
                continue
            try:
                for _ in range(count):
                    _step(run, device)
                    bar.update()
            except Exception as error:  # noqa: BLE001 - reported in the table, not raised
                run['failed'] = f'{type(error).__name__}: {str(error).splitlines()[0]}'
            if 'last' in run and mode == 'gq default':
                bar.set_postfix_str(f'default ran {run["last"]}', refresh=False)
        done += count
        turn += 1
    bar.close()
    results = {}
    for mode, run in runs.items():
        if 'failed' in run:
            results[mode] = dict(failed=run['failed'])
            continue
        results[mode] = dict(
            seconds=run['seconds'],
            passes=run['passes'],
            losses=[run['losses'][0], run['losses'][-1]],
        )
    # The default's plans: the only call sites that planned (forced passes never do).
    planned = [plan for plan in torch_gq_adjoint.plans() if plan.plans_made]
    if 'gq default' in results and 'failed' not in results['gq default']:
        results['gq default']['plans'] = planned
    return results


def _step(run, device):
    workload, runner, optimiser = run['workload'], run['runner'], run['optimiser']
    workload.next_batch()  # before the clock: data loading is no mode's cost
    synchronise(device)
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    loss = workload.loss(runner.solve)
    loss.backward()
    optimiser.step()
    synchronise(device)
    run['seconds'].append(time.perf_counter() - start)
    run['losses'].append(float(loss))
    if runner.info is not None and 'backward' in runner.info:
        run['passes'][runner.info['backward']] += 1
        run['last'] = runner.info['backward']


def chunk_ratios(seconds, reference, chunk=CHUNK):
    """``(median, lower quartile, upper quartile)`` of the ratio of each chunk's mean step
    to ``reference``'s in the same chunk (the turns of :func:`train_in_turns`)."""

    def means(values):
        return [statistics.fmean(values[i : i + chunk]) for i in range(0, len(values), chunk)]

    return paired_ratios(dict(mode=means(seconds), reference=means(reference)), 'mode', 'reference')


def exploring(plans):
    """``(calls spent exploring, calls)`` over the default's call sites, from their plans
    as the library prints them (``str(plan)``, as the record keeps them)."""
    explored = calls = 0
    for text in plans:
        match = re.search(r'(\d+) calls, (\d+) exploring', text)
        if match:
            calls += int(match.group(1))
            explored += int(match.group(2))
    return explored, calls


def choices(plans):
    """The pass each printed plan settled on (None where it chose nothing)."""
    found = []
    for text in plans:
        match = re.search(r'^  \w+: (\S+)', text, re.MULTILINE)
        found.append(None if match is None or match.group(1) == 'nothing' else match.group(1))
    return found
