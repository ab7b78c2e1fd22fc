"""The memory–time figure of the clients benchmark: per workload, the extra peak memory
of one training step against its seconds, one point per mode (direct backprop, the
adjoint, each backward pass of the library, its default, and torchode where installed).
"""

import math

import matplotlib

matplotlib.use('Agg')  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

#: Marker and colour per mode; the default stands out.
STYLE = {
    'direct': ('s', 'tab:green'),
    'adjoint': ('D', 'tab:blue'),
    'gq default': ('*', 'black'),
    'gq restart': ('o', 'tab:red'),
    'gq propagator': ('v', 'tab:pink'),
    'gq checkpoint': ('^', 'tab:orange'),
    'gq interpolated': ('P', 'tab:purple'),
    'gq gtol=0.1': ('x', 'tab:brown'),
    'torchode': ('h', 'tab:gray'),
}


def draw(results, path):
    """Write the figure of ``results`` (``{workload: {mode: dict(seconds, memory)}}``, as
    :func:`benchmarks.clients.main` returns them) to ``path`` (PNG, no timestamp)."""
    names = list(results)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        for mode, result in results[name].items():
            if 'failed' in result or result.get('memory') is None:
                continue
            marker, colour = STYLE.get(mode, ('o', 'tab:olive'))
            size = 140 if mode == 'gq default' else 45
            axis.scatter(
                result['seconds'],
                max(result['memory'] / 2**20, 0.01),
                s=size,
                marker=marker,
                color=colour,
                label=mode,
                zorder=3 if mode == 'gq default' else 2,
                alpha=0.85,
            )
        axis.set_xscale('log')
        axis.set_yscale('log')
        for scale in (axis.xaxis, axis.yaxis):
            # Label a few minor ticks only where an axis spans less than a decade (all of
            # them collide: 2×10⁻², 3×10⁻², ...).
            scale.set_minor_formatter(
                LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(1, 0.4))
            )
        axis.set_title(name.replace('_', ' '))
        axis.set_xlabel('seconds per training step')
        axis.set_ylabel('extra peak memory (MiB)')
        axis.grid(True, which='both', alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis('off')
    handles = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    legend_rows = math.ceil(len(handles) / 5)
    height = figure.get_size_inches()[1]
    figure.legend(
        list(handles.values()),
        list(handles),
        loc='lower center',
        ncol=min(len(handles), 5),
        frameon=False,
    )
    figure.tight_layout(rect=(0, (0.3 * legend_rows + 0.15) / height, 1, 1))
    figure.savefig(path, dpi=120, metadata={'Software': None})
    plt.close(figure)
