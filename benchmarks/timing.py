"""What the speed benchmarks share: the machine flags and timing calls in turns."""

import statistics
import time

import torch

from common.arguments import positive_int
from common.devices import device_name, synchronise


def add_machine_flags(parser):
    """Add ``--device`` and ``--threads`` to a benchmark's ``parser``."""
    parser.add_argument(
        '--device',
        type=device_name,
        default=torch.device('cpu'),
        help="'cpu' (default), 'cuda', 'cuda:N' or a GPU index N",
    )
    parser.add_argument(
        '--threads',
        type=positive_int,
        default=None,
        help='torch CPU threads (default: torch default)',
    )


def time_in_turns(calls, repeats, device):
    """``{name: (median seconds, result of the warm-up call)}`` for ``calls``
    (``{name: callable with no arguments}``).

    One warm-up call each first; then the calls take turns, repeat by repeat, so that
    drifts of the machine (other load, allocator state) touch all of them alike.
    """
    results = {name: call() for name, call in calls.items()}
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            synchronise(device)
            start = time.perf_counter()
            call()
            synchronise(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: (statistics.median(seconds[name]), results[name]) for name in calls}
