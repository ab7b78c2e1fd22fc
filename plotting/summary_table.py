"""Markdown tables of finished runs: mean ± std training time and final validation loss and
metric by width and method (``python -m plotting.summary_table``), for REPRODUCTION.md."""

import argparse

import numpy as np

from experiments import results
from experiments.grids import EXPERIMENTS

#: (experiment in experiments.grids, the study's flags) of the paper's figures
TABLES = (('g1d', ()), ('nested_spheres', ('--gtol', '0.003')),
          ('sines', ('--ntimes', '10', '--regular_times', 'regular')),
          ('sines', ('--ntimes', '50', '--regular_times', 'regular')),
          ('images', ('--dataset', 'digits', '--batchsize', '32')),
          ('images', ('--dataset', 'mnist', '--batchsize', '32')),
          ('ornstein_uhlenbeck', ('--ncosines', '10')))


def _cell(values, digits):
    values = np.asarray(values, dtype=float)
    return f'{values.mean():.{digits}g} ± {values.std():.1g}'


def table(results_dir, experiment, ablation):
    """One markdown table, or '' when there are no finished runs."""
    runs = results.complete_runs(results_dir, experiment, ablation)
    if not runs:
        return ''
    lines = [f'**{experiment} / {ablation}**', '',
             '| width | option | repeats | training time (s) | final val loss | final val metric |',
             '|---|---|---|---|---|---|']
    for (width, option), found in sorted(runs.items()):
        lines.append(f'| {width} | {option} | {len(found)} | '
                     f'{_cell([r["epoch_times"].sum() for r in found], 3)} | '
                     f'{_cell([r["epoch_loss_history"][-1] for r in found], 3)} | '
                     f'{_cell([r["epoch_val_metric_history"][-1] for r in found], 3)} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m plotting.summary_table',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--results_dir', default=str(results.RESULTS_DIR))
    args = parser.parse_args(argv)
    tables = (table(args.results_dir, name, EXPERIMENTS[name].ablation_of(flags))
              for name, flags in TABLES)
    text = '\n'.join(filter(None, tables))
    print(text or 'no finished runs found')
    return text


if __name__ == '__main__':
    main()
