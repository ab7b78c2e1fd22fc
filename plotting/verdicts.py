"""The statistics behind every verdict of the reproduction report, computed from the runs.

Speed (:func:`compare_speed`). Two options are compared at one width repeat by repeat: the
same repeat number means the same seed, hence the same initial model and batches, so each
repeat gives one paired ratio of training times. Both times cover the same epochs: whole
runs where both options trained in full; where the reference only ran a short timing run
of its first k epochs (``results/epoch_times``), the option's own short runs if it has
them, else the first k epochs of its full runs. The time is the process's CPU time where
both runs recorded it (it moves less than wall time when other work shares the machine),
wall time otherwise; the wall-time ratios are kept beside it. The rule, :data:`LEVEL`:
the geometric mean of the ratios with a two-sided 95 % Student-t interval on their
logarithms; "faster" where the whole interval lies below 1, "slower" where it lies
above, "not distinguishable" otherwise (and with a single repeat, "one repeat").

Accuracy (:func:`compare_accuracy`). The final validation loss of the option's repeats
against the reference's, Welch's t-test on its logarithm (two-sided), and, where the
metric is a classification accuracy, Fisher's exact test (two-sided) on how many repeats
of each reach :data:`FULL_ACCURACY`. "differs" where p < 1 − :data:`LEVEL`, "no difference
detected" otherwise: with two or three repeats a test detects only large differences.
"""

import math
import pathlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats

from study import results
from study.grids import EPOCH_TIMES_DIR, STUDIES

#: Confidence level of the speed intervals; 1 − LEVEL is the accuracy tests' threshold.
LEVEL = 0.95
#: The accuracy (%) a classification run must reach to count in Fisher's test.
FULL_ACCURACY = 100.0
#: Experiments whose validation metric is a classification accuracy in %.
CLASSIFIERS = ('nested_spheres', 'images')

#: (adjoint reference, direct reference) per experiment: the SDE has torchsde's options.
SDE_REFERENCES = ('sde_adjoint', 'sde_direct')
ODE_REFERENCES = ('adjoint_ode', 'direct')


def references(experiment):
    """``(adjoint reference, direct reference)`` of an experiment."""
    return SDE_REFERENCES if experiment == 'ornstein_uhlenbeck' else ODE_REFERENCES


def _repeat(run):
    return int(run['summary']['arguments']['experiment_no'])


def _by_repeat(found):
    return {_repeat(run): run for run in found or ()}


def _seconds(run, epochs, cpu):
    """Training seconds of the run's first ``epochs`` epochs (all where None)."""
    series = run['epoch_cpu_times' if cpu else 'epoch_times'][1:]
    return float(np.sum(series if epochs is None else series[:epochs]))


@dataclass(frozen=True)
class SpeedComparison:
    """Paired ratios of training times, ``option`` ÷ ``reference``, at one width.

    Attributes:
        study: a key of :data:`study.grids.STUDIES`.
        width: the model width.
        option, reference: the two options.
        repeats: the repeat numbers both options ran.
        ratios: one ratio per repeat, of CPU time where ``basis == 'CPU'``, else wall time.
        wall_ratios: the same ratios of wall time.
        basis: ``'CPU'`` or ``'wall'``.
        epochs: None where whole runs are compared, else the k first epochs compared.
        seconds: ``(option's, reference's)`` mean seconds over the compared epochs.
    """

    study: str
    width: int
    option: str
    reference: str
    repeats: tuple
    ratios: tuple
    wall_ratios: tuple
    basis: str
    epochs: Optional[int]
    seconds: tuple

    @property
    def mean(self):
        """Geometric mean of the paired ratios."""
        return float(np.exp(np.mean(np.log(self.ratios))))

    @property
    def interval(self):
        """``(low, high)``, the 95 % interval of the geometric mean (None with one repeat)."""
        if len(self.ratios) < 2:
            return None
        logs = np.log(self.ratios)
        spread = stats.t.ppf(0.5 + LEVEL / 2, len(logs) - 1) * logs.std(ddof=1)
        half = spread / math.sqrt(len(logs))
        return float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))

    @property
    def verdict(self):
        """'faster', 'slower', 'not distinguishable' or 'one repeat' (see the module)."""
        interval = self.interval
        if interval is None:
            return 'one repeat'
        if interval[1] < 1:
            return 'faster'
        if interval[0] > 1:
            return 'slower'
        return 'not distinguishable'

    @property
    def compared(self):
        """Which epochs the ratios compare, in words."""
        return 'whole runs' if self.epochs is None else f'first {self.epochs} epochs'


def _runs(results_dir, study):
    spec = STUDIES[study]
    full = results.complete_runs(results_dir, spec.experiment, spec.ablation())
    short = results.complete_runs(
        pathlib.Path(results_dir) / EPOCH_TIMES_DIR, spec.experiment, spec.ablation()
    )
    return full, short


def compare_speed(
    results_dir, study, width, reference, option='adjoint_gq', runs=None, short_runs=False
):
    """The :class:`SpeedComparison` of ``option`` against ``reference`` at ``width``, or
    None where the two share no repeat.

    ``runs``: ``(full, short)`` as :func:`study.results.complete_runs` gives them for
    the study and its timing runs (read from ``results_dir`` where None). ``short_runs``:
    compare over the reference's short timing runs even where it trained in full.
    """
    full, short = runs or _runs(results_dir, study)
    mine, theirs, epochs = full.get((width, option)), full.get((width, reference)), None
    if short_runs or not (mine and theirs):
        theirs = short.get((width, reference))
        if not theirs:
            return None
        epochs = int(theirs[0]['summary']['epochs_done'])
        mine = short.get((width, option)) or mine
    mine, theirs = _by_repeat(mine), _by_repeat(theirs)
    repeats = tuple(sorted(set(mine) & set(theirs)))
    if not repeats:
        return None
    pairs = [(mine[number], theirs[number]) for number in repeats]
    cpu = all('epoch_cpu_times' in run for pair in pairs for run in pair)
    ratios, wall, seconds = [], [], ([], [])
    for own, other in pairs:
        for basis, into in ((cpu, ratios), (False, wall)):
            into.append(_seconds(own, epochs, basis) / _seconds(other, epochs, basis))
        seconds[0].append(_seconds(own, epochs, cpu))
        seconds[1].append(_seconds(other, epochs, cpu))
    return SpeedComparison(
        study,
        width,
        option,
        reference,
        repeats,
        tuple(ratios),
        tuple(wall),
        'CPU' if cpu else 'wall',
        epochs,
        (float(np.mean(seconds[0])), float(np.mean(seconds[1]))),
    )


def speed_comparisons(results_dir, study, option='adjoint_gq'):
    """Every :class:`SpeedComparison` of ``option`` in a study: against the adjoint, then
    direct backprop, at each width where ``option`` trained in full (where whole runs
    pair in one repeat only, the comparison over the short timing runs follows it)."""
    runs = _runs(results_dir, study)
    widths = sorted({width for width, name in runs[0] if name == option})
    found = []
    for reference in references(STUDIES[study].experiment):
        for width in widths:
            comparison = compare_speed(results_dir, study, width, reference, option, runs)
            if comparison is not None:
                found.append(comparison)
            if comparison is not None and comparison.epochs is None and len(comparison.ratios) < 2:
                # One whole-run repeat decides nothing: the short runs' repeats stand beside.
                extra = compare_speed(results_dir, study, width, reference, option, runs, True)
                if extra is not None:
                    found.append(extra)
    return found


@dataclass(frozen=True)
class AccuracyComparison:
    """Final validation losses and metrics of two options at one width, and the tests.

    Attributes:
        losses, metrics: ``(option's, reference's)`` tuples of per-repeat final values.
        welch_p: Welch's t-test on the log losses (None with fewer than 2 repeats a side
            or no spread).
        fisher: ``(option's count, reference's count, p)`` reaching :data:`FULL_ACCURACY`,
            for classifiers (else None).
    """

    study: str
    width: int
    option: str
    reference: str
    losses: tuple
    metrics: tuple
    welch_p: Optional[float]
    fisher: Optional[tuple]

    @property
    def verdict(self):
        """'one repeat' where a side has a single repeat (nothing can be tested),
        'differs' where a test gives p < 1 − LEVEL, else 'no difference detected'."""
        if min(len(values) for values in self.losses) < 2:
            return 'one repeat'
        found = [self.welch_p] + ([self.fisher[2]] if self.fisher else [])
        return (
            'differs'
            if any(p is not None and p < 1 - LEVEL for p in found)
            else 'no difference detected'
        )


def compare_accuracy(results_dir, study, width, reference, option='adjoint_gq', runs=None):
    """The :class:`AccuracyComparison` of two options' full runs at ``width``, or None
    where either has none."""
    full, _ = runs or _runs(results_dir, study)
    mine, theirs = full.get((width, option)), full.get((width, reference))
    if not (mine and theirs):
        return None
    losses = tuple(
        tuple(float(run['epoch_loss_history'][-1]) for run in found) for found in (mine, theirs)
    )
    metrics = tuple(
        tuple(float(run['epoch_val_metric_history'][-1]) for run in found)
        for found in (mine, theirs)
    )
    welch = None
    logs = [np.log(np.maximum(values, 1e-300)) for values in losses]
    if min(len(values) for values in logs) >= 2 and max(np.std(v) for v in logs) > 0:
        welch = float(stats.ttest_ind(logs[0], logs[1], equal_var=False).pvalue)
    fisher = None
    if STUDIES[study].experiment in CLASSIFIERS:
        counts = [sum(value >= FULL_ACCURACY for value in values) for values in metrics]
        table = [[counts[0], len(metrics[0]) - counts[0]], [counts[1], len(metrics[1]) - counts[1]]]
        fisher = (counts[0], counts[1], float(stats.fisher_exact(table).pvalue))
    return AccuracyComparison(study, width, option, reference, losses, metrics, welch, fisher)


def accuracy_comparisons(results_dir, study, option='adjoint_gq'):
    """Every :class:`AccuracyComparison` of ``option`` in a study against each option it
    trained beside in full (the adjoint, direct backprop and the others), width by width."""
    runs = _runs(results_dir, study)
    found = []
    for width, name in sorted(runs[0]):
        if name != option and (width, option) in runs[0]:
            found.append(compare_accuracy(results_dir, study, width, name, option, runs))
    return found
