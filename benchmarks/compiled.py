"""What ``torch.compile`` on ``func`` costs or saves in a training step.

``python -m benchmarks.compiled [--workload W ...] [--repeats N] [--threads T]`` builds
each workload of :mod:`benchmarks.workloads` twice, once with its vector field compiled
(``torch.compile``, the default inductor backend), and times one training step of each
under ``odeint_adjoint_gq``'s default and under direct backprop, all four in turns
(median of ``--repeats``). It prints the compiled step's time over the plain one's and the
first compiled step's time (the compilation a run pays once). Workloads whose ``func`` is
not one module (the bouncing ball) are left out.
"""

import argparse
import time

import torch

from benchmarks.timing import add_machine_flags, time_in_turns
from benchmarks.workloads import build
from common.arguments import positive_int
from torch_gq_adjoint import odeint, odeint_adjoint_gq

#: Workloads whose vector field is one module, ``workload.func``.
COMPILABLE = ('spiral', 'latent_ode', 'cnf_hutchinson', 'spheres2000', 'sines10')


def _step(workload, solver):
    def step():
        loss = workload.loss(lambda func, y0, t, **kwargs: solver(func, y0, t, **kwargs))
        torch.autograd.grad(loss, workload.params, allow_unused=True)

    return step


def measure(name, repeats, device):
    """``{(mode, compiled): seconds}`` and the first compiled steps' seconds per mode."""
    steps, first = {}, {}
    for compiled in (False, True):
        workload = build(name, torch.float32, device)
        if compiled:
            # The paper's models keep their field in their case (benchmarks.gradient_speed).
            owner = getattr(workload, 'case', workload)
            owner.func = torch.compile(owner.func)
        for mode, solver in (('gq default', odeint_adjoint_gq), ('direct', odeint)):
            step = _step(workload, solver)
            if compiled:
                start = time.perf_counter()
                step()
                first[mode] = time.perf_counter() - start
            steps[(mode, compiled)] = step
    timed = time_in_turns(steps, repeats, device)
    return {key: seconds for key, (seconds, _) in timed.items()}, first


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.compiled', description=__doc__.split('\n\n')[0]
    )
    parser.add_argument(
        '--workload', action='append', choices=COMPILABLE, help='workload (repeatable; default all)'
    )
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=5,
        help='timed steps per variant, in turns (default 5)',
    )
    add_machine_flags(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f'{"workload":<16}{"mode":<12}{"plain s":>10}{"compiled s":>12}{"ratio":>8}'
        f'{"first compiled s":>18}'
    )
    for name in args.workload or COMPILABLE:
        seconds, first = measure(name, args.repeats, args.device)
        for mode in ('gq default', 'direct'):
            plain, compiled = seconds[(mode, False)], seconds[(mode, True)]
            print(
                f'{name:<16}{mode:<12}{plain:>10.4f}{compiled:>12.4f}'
                f'{compiled / plain:>8.2f}{first[mode]:>18.1f}',
                flush=True,
            )


if __name__ == '__main__':
    main()
