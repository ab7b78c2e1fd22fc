"""Every experiment's sweep grids and results naming, in one table.

The commands (the experiment scripts, the bash sweeps through ``python -m
experiments.grids``), the figures, the summary tables, the reproduction report and the
tests all read :data:`EXPERIMENTS`.

An experiment has three grids: ``paper`` (the paper's, §3 of the paper and its
appendix), ``reduced`` (converged runs that fit a small machine) and ``quick`` (a few
epochs, to check that everything runs). A grid is options × widths × repeats, plus
flags added to every run; the flags of a study (``--ntimes 50``, ``--dataset digits``)
come on top, from the sweep's environment or the caller. :func:`runs` lists a grid's
runs, :func:`plan` counts what a sweep would start.
"""

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Optional

from models.backprop import ADJOINT_OPTIONS, EXTRA_OPTIONS
from models.sde import SDE_OPTIONS as TORCHSDE_OPTIONS
from study import flags, results

#: The options of the ODE sweeps, and of the SDE sweep (torchsde's two, then GQ).
ODE_OPTIONS = ADJOINT_OPTIONS
SDE_OPTIONS = TORCHSDE_OPTIONS + ('adjoint_gq',)
PAPER_WIDTHS = (5, 20, 100, 500, 1000, 1500, 2000, 2500, 3000)


#: Folder under ``results_dir`` of the short runs that only time a few epochs (Block.epochs).
EPOCH_TIMES_DIR = 'epoch_times'


@dataclass(frozen=True)
class Block:
    """One rectangle of a grid's runs: options × widths × repeats.

    ``epochs`` (None: the grid's) makes the block's runs short timing runs: they train
    that many epochs (``--nepochs``) and write under ``<results_dir>/epoch_times``, so
    that no table or figure of full runs mistakes them for finished training.
    """

    options: tuple
    widths: tuple
    repeats: int
    epochs: Optional[int] = None

    @property
    def flags(self):
        """The flags the block adds to each of its runs."""
        return () if self.epochs is None else ('--nepochs', str(self.epochs))

    @property
    def folder(self):
        """The folder under ``results_dir`` its runs write to ('' for that folder itself)."""
        return '' if self.epochs is None else EPOCH_TIMES_DIR


@dataclass(frozen=True)
class Grid:
    """Options × widths × repeats, and flags added to every run.

    ``lr`` maps a width to its learning rate (``--lr``), where the experiment's default
    is not kept; ``budget`` is the measured wall-clock time of the whole grid with
    ``--jobs 2`` on a 2-core CPU machine, where it has been measured (None otherwise);
    ``study_widths`` maps an ablation folder (a study: ``50_irregular``) to the widths it
    runs, where a study runs fewer widths than the grid, and ``study_options`` to the
    options it runs (an ablation of one method); a study restricted either way runs no
    :class:`Block`. ``parts`` are further runs (:class:`Block`), e.g. two options at widths
    where the others do not fit. ``pending`` names runs of the grid that are not committed
    under ``results/`` yet: folder prefixes relative to the results folder
    (``ornstein_uhlenbeck/10/50``); a sweep runs them like the others, and the report says
    which they are.
    """

    options: tuple
    widths: tuple
    repeats: int
    flags: tuple = ()
    budget: str = None
    lr: dict = None
    study_widths: dict = None
    study_options: dict = None
    parts: tuple = ()
    pending: tuple = ()

    def widths_of(self, ablation):
        """The widths of the grid's options × widths that a study (its ablation folder)
        runs."""
        return (self.study_widths or {}).get(ablation, self.widths)

    def trained_widths(self):
        """Every width some option trains in full (the widths a learning rate is set for)."""
        widths = set(self.widths)
        widths.update(w for part in self.parts if part.epochs is None for w in part.widths)
        return tuple(sorted(widths))

    def blocks(self, ablation=None):
        """The grid's runs as :class:`Block` s, for the study ``ablation`` (None: all)."""
        allowed = (self.study_widths or {}).get(ablation)
        options = (self.study_options or {}).get(ablation)
        found = [Block(options or self.options, self.widths_of(ablation), self.repeats)]
        for part in self.parts if options is None else ():
            widths = tuple(w for w in part.widths if allowed is None or w in allowed)
            found.append(dataclasses.replace(part, widths=widths))
        return [block for block in found if block.widths]

    def flags_of(self, width):
        """The grid's flags for runs at ``width``: its own flags, then its ``--lr``."""
        if self.lr and width in self.lr:
            return (*self.flags, '--lr', repr(self.lr[width]))
        return self.flags


@dataclass(frozen=True)
class Experiment:
    """One experiment: its command, results folder naming and grids.

    Attributes:
        name: the results folder under ``results_dir`` and the sweep's name.
        module: the ``python -m`` module of its command line.
        ablation: ``ablation(args) -> str``, the folder between the experiment and the
            width (``gtol0.003``, ``aug3``, ``10_regular``, ``digits/32``, ...), from parsed flags.
        grids: ``{'paper': Grid, 'reduced': Grid, 'quick': Grid}``.
        metric: axis label of the validation metric.
    """

    name: str
    module: str
    ablation: object
    grids: dict = field(default_factory=dict)
    metric: str = 'validation metric'

    def parser(self):
        """The experiment's own argument parser (its defaults and checks)."""
        return flags.parser_of(self.name)

    def parse(self, flags=()):
        """Parse ``flags`` with the experiment's parser (exit 2 on a bad flag)."""
        return self.parser().parse_args(list(flags))

    def ablation_of(self, flags=()):
        """The ablation folder of runs made with ``flags``."""
        return self.ablation(self.parse(flags))

    def run_folder(self, args):
        """Folder of the run described by parsed flags ``args``."""
        return results.run_dir(
            args.results_dir,
            self.name,
            self.ablation(args),
            args.width,
            args.adjoint_option,
            args.experiment_no,
        )


#: The Ornstein–Uhlenbeck cosines ablation (the paper's Figure 3, right): numbers of
#: cosines of the Brownian approximation, 10 being the main study's. Each other number is
#: a study of its own, GQ alone at width 5.
OU_COSINES = (0, 1, 5, 10, 25, 50)
OU_COSINE_WIDTHS = {str(number): (5,) for number in OU_COSINES if number != 10}
OU_COSINE_OPTIONS = {str(number): ('adjoint_gq',) for number in OU_COSINES if number != 10}

EXPERIMENTS = {
    'nested_spheres': Experiment(
        # The paper's nested-spheres figure used gtol 0.003 (its plotting reads that folder).
        'nested_spheres',
        'experiments.nested_spheres',
        lambda a: f'gtol{a.gtol}',
        {
            'paper': Grid(ODE_OPTIONS, PAPER_WIDTHS, 10, ('--gtol', '0.003')),
            # lr per width: results/lr_probe/nested_spheres.json (50 epochs of adjoint_gq).
            # At the paper's widths 1000 and 2000 only direct and GQ train in full (the
            # adjoint options take about 5 times as long per epoch); every option's time
            # per epoch there comes from short runs of 3 epochs (results/epoch_times).
            'reduced': Grid(
                ODE_OPTIONS,
                (5, 20, 100, 500),
                3,
                ('--gtol', '0.003'),
                lr={5: 0.01, 20: 0.01, 100: 0.001, 500: 0.001, 1000: 0.0001, 2000: 0.0001},
                # Width 2000 has five repeats of direct and GQ, each pair run side by side
                # (scripts/paired.sh): their time ratio is the "faster than direct" verdict.
                # The adjoint trains in full at 1000 and 2000, so that GQ ÷ adjoint there
                # compares whole runs, not only the plateau epochs of the short runs.
                parts=(
                    Block(('direct', 'adjoint_gq'), (1000,), 2),
                    Block(('direct', 'adjoint_gq'), (2000,), 5),
                    Block(('adjoint_ode',), (1000,), 2),
                    Block(('adjoint_ode',), (2000,), 1),
                    Block(ODE_OPTIONS, (1000, 2000), 2, epochs=3),
                ),
                budget='about 35 min for 2 repeats, the third about 20 min; '
                'width 5 about 4 min; widths 1000 and 2000: about 102 '
                'min (the committed sweeps), the third repeat at 2000 about 47 min',
            ),
            'quick': Grid(ODE_OPTIONS, (5, 20, 100), 2, ('--gtol', '0.003', '--nepochs', '3')),
        },
        'validation accuracy (%)',
    ),
    'g1d': Experiment(
        'g1d',
        'experiments.g1d',
        lambda a: f'aug{a.aug_dim}',
        {
            'paper': Grid(ODE_OPTIONS, PAPER_WIDTHS, 10, ('--gtol', '0.1')),
            # lr per width: results/lr_probe/g1d.json (50 epochs of adjoint_gq).
            # Width 2000 has five repeats of direct and GQ: their time ratio is the one
            # "faster than direct" verdict, and each run takes about a minute.
            'reduced': Grid(
                ODE_OPTIONS,
                (20, 500),
                2,
                ('--gtol', '0.1'),
                lr={20: 0.01, 500: 0.001, 2000: 0.0001},
                parts=(
                    Block(('direct', 'adjoint_gq'), (2000,), 5),
                    Block(
                        tuple(o for o in ODE_OPTIONS if o not in ('direct', 'adjoint_gq')),
                        (2000,),
                        2,
                    ),
                ),
                budget='about 24 min for 2 repeats (the committed sweep); repeats 3 to 5 of '
                'direct and GQ at width 2000 about 3 min',
            ),
            'quick': Grid(ODE_OPTIONS, (5, 20), 1, ('--gtol', '0.1', '--nepochs', '10')),
        },
        'validation MSE',
    ),
    'sines': Experiment(
        'sines',
        'experiments.sines',
        lambda a: f'{a.ntimes}_{a.regular_times}',
        {
            'paper': Grid(ODE_OPTIONS, (5, 20, 200, 1000, 2000), 5),
            # The propagator backward (beyond the paper) is trained beside the paper's four.
            # lr per width: results/lr_probe/sines.json (100 epochs of adjoint_gq, 10 times).
            # With 50 irregular times the adjoint options restart 749 times per step:
            # 5.6 s per epoch at width 20, 12 s at 200 (adjoint_ode), and about 40 s at 500,
            # so width 500 does not fit the budget there.
            # At width 1000 (10 regular times only) the adjoint options' time per epoch
            # comes from short runs of 10 epochs (results/epoch_times).
            'reduced': Grid(
                ODE_OPTIONS + EXTRA_OPTIONS,
                (20, 200, 500),
                2,
                lr={20: 0.01, 200: 0.001, 500: 0.0001, 1000: 0.0001},
                study_widths={'50_irregular': (20, 200)},
                parts=(
                    Block(('direct', 'adjoint_gq', 'adjoint_gq_propagator'), (1000,), 2),
                    Block(ODE_OPTIONS + EXTRA_OPTIONS, (1000,), 2, epochs=10),
                ),
                budget='10 regular times: about 15 min, width 1000 about '
                '5 min more; 50 irregular times: about 72 min (the '
                'committed sweeps)',
            ),
            'quick': Grid(ODE_OPTIONS, (5, 20), 2, ('--nepochs', '10')),
        },
        'validation MSE',
    ),
    'images': Experiment(
        'images',
        'experiments.images',
        lambda a: f'{a.dataset}/{a.batchsize}',
        {
            'paper': Grid(ODE_OPTIONS[1:], (50, 200, 350, 500), 3),
            # lr per width: results/lr_probe/images.json (5 epochs of adjoint_gq, digits).
            'reduced': Grid(
                ODE_OPTIONS[1:],
                (50, 200, 500),
                2,
                ('--dataset', 'digits'),
                lr={50: 0.01, 200: 0.01, 500: 0.01},
                budget='about 48 min (the committed sweep)',
            ),
            'quick': Grid(ODE_OPTIONS[1:], (4, 8), 1, ('--dataset', 'digits', '--nepochs', '1')),
        },
        'validation accuracy (%)',
    ),
    'ornstein_uhlenbeck': Experiment(
        'ornstein_uhlenbeck',
        'experiments.ornstein_uhlenbeck',
        lambda a: str(a.ncosines),
        {
            # The paper ran sde_direct only up to width 50; here every option runs every width.
            'paper': Grid(
                SDE_OPTIONS,
                (5, 20, 50, 100),
                5,
                study_widths=OU_COSINE_WIDTHS,
                study_options=OU_COSINE_OPTIONS,
            ),
            # The paper's widths and 100 epochs, 2 repeats. Measured (python -m
            # experiments.grids budget, 1 epoch each, s per epoch at widths 5, 20, 50, 100):
            # sde_direct 11.7, 18.0, 36.4, 73.3; sde_adjoint 30.6, 41.1, 60.3, 106.3; GQ 6.8,
            # 8.1, 18.8, 38.7 -- 750 min for the whole grid with --jobs 2. torchsde's two
            # options give the same gradients (hence the same KL), so sde_adjoint trains in
            # full at width 5 only and is timed by short runs of 3 epochs at the others;
            # sde_direct trains in full up to width 50 (as in the paper) and is timed at 100.
            # The cosines ablation (Figure 3, right) trains GQ alone at width 5.
            'reduced': Grid(
                SDE_OPTIONS,
                (5,),
                2,
                study_widths=OU_COSINE_WIDTHS,
                study_options=OU_COSINE_OPTIONS,
                # Width 50 has five repeats of GQ and torchsde direct (their KL decides
                # "comparable"); at 100 all three options train in full (the headline ratio
                # compares whole runs), their 3-epoch timing runs kept beside.
                parts=(
                    Block(('sde_direct', 'adjoint_gq'), (20,), 2),
                    Block(('sde_direct', 'adjoint_gq'), (50,), 5),
                    Block(('adjoint_gq', 'sde_direct', 'sde_adjoint'), (100,), 2),
                    Block(('sde_adjoint',), (20, 50, 100), 2, epochs=3),
                    Block(('sde_direct',), (100,), 2, epochs=3),
                ),
                budget='about 355 min with --jobs 2, the cosines ablation included '
                '(estimated from the measurements above)',
            ),
            'quick': Grid(SDE_OPTIONS, (5,), 1, ('--nepochs', '2')),
        },
        'validation log-likelihood',
    ),
}

GRID_NAMES = ('paper', 'reduced', 'quick')


@dataclass(frozen=True)
class Study:
    """One experiment with flags on top of its grid's: what a sweep runs, a figure draws
    and a summary table shows.

    Attributes:
        experiment: a key of :data:`EXPERIMENTS`.
        flags: the study's flags (``--ntimes 50``, ``--dataset digits``).
        reduced_flags: flags added on the reduced grid only (fewer epochs, to fit).
        paper_only: run only with the paper grid (the reduced and quick grids run a
            smaller stand-in, e.g. digits for MNIST).
    """

    experiment: str
    flags: tuple = ()
    reduced_flags: tuple = ()
    paper_only: bool = False

    def flags_of(self, grid):
        """The study's flags on ``grid``."""
        return self.flags + (self.reduced_flags if grid == 'reduced' else ())

    def ablation(self, grid=None):
        """The results folder between the experiment and the width (``gtol0.003``, ...) on
        ``grid`` (default: the reduced grid, or the paper's for a paper-only study)."""
        grid = grid or ('paper' if self.paper_only else 'reduced')
        spec = EXPERIMENTS[self.experiment]
        return spec.ablation_of([*self.flags_of(grid), *spec.grids[grid].flags])


#: The report's studies by name, in the report's order.
STUDIES = {
    'nested_spheres': Study('nested_spheres'),
    'g1d': Study('g1d'),
    'sines10': Study('sines', ('--ntimes', '10', '--regular_times', 'regular')),
    # 750 distinct times in all: the adjoint options restart 749 times per step, so 100
    # of the paper's 250 epochs, at widths 20 and 200, fit the budget.
    'sines50': Study(
        'sines',
        ('--ntimes', '50', '--regular_times', 'irregular'),
        reduced_flags=('--nepochs', '100'),
    ),
    'digits': Study('images', ('--dataset', 'digits', '--batchsize', '32')),
    'mnist': Study('images', ('--dataset', 'mnist', '--batchsize', '32'), paper_only=True),
    'ornstein_uhlenbeck': Study('ornstein_uhlenbeck'),
    **{
        f'ou_cosines{number}': Study('ornstein_uhlenbeck', ('--ncosines', str(number)))
        for number in OU_COSINES
        if number != 10
    },
}


def studies_of(grid):
    """``[(name, Study)]`` that a sweep of ``grid`` runs."""
    return [
        (name, study) for name, study in STUDIES.items() if grid == 'paper' or not study.paper_only
    ]


#: (experiment, flags) of the studies whose reduced grids the reproduction report shows;
#: their runs are committed under results/.
REDUCED_STUDIES = tuple(
    (study.experiment, study.flags_of('reduced')) for _, study in studies_of('reduced')
)

#: The report's figures: file name -> the study it draws (None: the toy gradient, which
#: has no grid, the speed-up figure, which draws every study, and the cosines ablation,
#: which draws the Ornstein–Uhlenbeck studies of every number of cosines).
FIGURES = {
    'speedup': None,
    'toy_gradient': None,
    'ode_times_nested_spheres': 'nested_spheres',
    'ode_times_g1d': 'g1d',
    'ode_times_sines10': 'sines10',
    'ode_times_sines50': 'sines50',
    'ode_times_digits': 'digits',
    'sde_times': 'ornstein_uhlenbeck',
    'ou_cosines': None,
    'ou_solutions_adjoint_gq': 'ornstein_uhlenbeck',
}


@dataclass(frozen=True)
class Run:
    """One run of a sweep: where it writes, where it logs, and its command's arguments."""

    folder: pathlib.Path
    log: pathlib.Path
    argv: tuple  # arguments of ``python``: ('-m', module, flag, value, ...)


def _blocks(spec, chosen, flags):
    """The blocks of ``chosen`` (a Grid of ``spec``) that the study ``flags`` runs."""
    return chosen.blocks(spec.ablation_of([*flags, *chosen.flags]))


def runs(experiment, grid='paper', flags=(), results_dir=results.RUNS_DIR, log_dir='logs'):
    """Every run of ``experiment``'s ``grid``, with the study's ``flags`` on top.

    Each run's arguments are checked by the experiment's own parser here, so a bad flag
    stops the sweep before anything runs.
    """
    spec = EXPERIMENTS[experiment]
    chosen = spec.grids[grid]
    found = []
    for block in _blocks(spec, chosen, flags):
        folder_of_block = pathlib.Path(results_dir) / block.folder
        for option in block.options:
            for width in block.widths:
                for number in range(1, block.repeats + 1):
                    # The study's and the user's flags come last, so that they win over
                    # the grid's (argparse keeps the last value of a flag).
                    flags_of_run = (
                        '--adjoint_option',
                        option,
                        '--width',
                        str(width),
                        '--experiment_no',
                        str(number),
                        *chosen.flags_of(width),
                        *block.flags,
                        *flags,
                        '--results_dir',
                        str(folder_of_block),
                        '--save_model',
                        '1',
                        '--load_model',
                        '1',
                        '--quiet',
                    )
                    args = spec.parse(flags_of_run)
                    folder = spec.run_folder(args)
                    name = f'{spec.ablation(args).replace("/", "_")}_{width}_{option}_{number}.log'
                    log = pathlib.Path(log_dir) / experiment / block.folder / name
                    found.append(Run(folder, log, ('-m', spec.module, *flags_of_run)))
    return found


def plan(grid, results_dir):
    """``[(study name, runs, complete, to run, budget or None)]`` of every study of
    ``grid`` against the runs under ``results_dir``."""
    rows = []
    for name, study in studies_of(grid):
        found = runs(study.experiment, grid, study.flags_of(grid), results_dir)
        nepochs = [EXPERIMENTS[study.experiment].parse(run.argv[2:]).nepochs for run in found]
        complete = sum(
            results.is_complete(run.folder, epochs) for run, epochs in zip(found, nepochs)
        )
        budget = EXPERIMENTS[study.experiment].grids[grid].budget
        rows.append((name, len(found), complete, len(found) - complete, budget))
    return rows
