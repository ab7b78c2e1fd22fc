"""Markdown tables of finished runs: mean ± std training time and final validation loss and
metric by width and method (``python -m plotting.summary_table``), for REPRODUCTION.md."""

import argparse

import numpy as np

from experiments import results

#: (results experiment, ablation) pairs of the paper's figures
TABLES = (('g1d', 'gtol0.1'), ('nested_spheres', 'gtol0.1'), ('sines', '10_regular'),
          ('sines', '50_regular'), ('images', 'digits/32'), ('images', 'mnist/32'),
          ('ornstein_uhlenbeck', '10'))


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
    text = '\n'.join(filter(None, (table(args.results_dir, *pair) for pair in TABLES)))
    print(text or 'no finished runs found')
    return text


if __name__ == '__main__':
    main()
