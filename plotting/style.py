"""One colour and line style per method, and saving a figure as PNG and PDF."""

import pathlib

import matplotlib

matplotlib.use('Agg')  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

#: label, colour, line style and marker of every method across all figures; the markers
#: differ so that a method drawn under another (equal times) still shows.
METHODS = {
    'adjoint_gq': ('GQ adjoint', 'tab:red', '-', 'o'),
    'adjoint_gq_propagator': ('GQ adjoint, propagator', 'tab:pink', (0, (1, 1)), 'D'),
    'adjoint_ode': ('adjoint', 'tab:blue', '--', '^'),
    'adjoint_seminorm': ('adjoint (seminorm)', 'tab:purple', '-.', 'v'),
    'direct': ('direct', 'tab:green', ':', 's'),
    'mali': ('MALI', 'tab:orange', (0, (3, 1, 1, 1)), 'P'),
    'aca': ('ACA', 'tab:brown', (0, (5, 2)), 'X'),
    'sde_direct': ('torchsde direct', 'tab:green', ':', 's'),
    'sde_adjoint': ('torchsde adjoint', 'tab:blue', '--', '^'),
}

#: Marker sizes by method order in a figure: the first drawn is the largest, so that
#: later ones on the same points sit inside it.
MARKER_SIZES = (9, 7, 5.5, 4.5, 3.5)


def line_style(method, order=None):
    """``dict(label=..., color=..., linestyle=...)`` for ``method``; with ``order`` (its
    index among the figure's methods) also its marker, sized to stay visible under the
    methods drawn after it."""
    label, colour, dashes, marker = METHODS[method]
    style = {'label': label, 'color': colour, 'linestyle': dashes}
    if order is not None:
        style.update(
            marker=marker,
            markersize=MARKER_SIZES[min(order, len(MARKER_SIZES) - 1)],
            markerfacecolor='none' if order else colour,
        )
    return style


#: The words for a study's settings (its ablation folder), per experiment.
def study_title(experiment, ablation):
    """A figure title in words: ``Nested spheres, C = 0.003`` for ``nested_spheres``
    and ``gtol0.003``."""
    ablation = str(ablation)
    if experiment == 'nested_spheres' and ablation.startswith('gtol'):
        return f'Nested spheres, GQ node factor C = {ablation[4:]}'
    if experiment == 'g1d' and ablation.startswith('aug'):
        return f'1-D Gaussian regression, {ablation[3:]} augmented dimensions'
    if experiment == 'sines' and '_' in ablation:
        ntimes, spacing = ablation.split('_', 1)
        return f'Sines, {ntimes} {spacing} observation times'
    if experiment == 'images' and '/' in ablation:
        dataset, batch = ablation.split('/', 1)
        return f'Image classification, {dataset}, batch {batch}'
    if experiment == 'ornstein_uhlenbeck':
        return f'Ornstein–Uhlenbeck, {ablation} cosines'
    return f'{experiment} ({ablation})'


def readable_log_ticks(axis, which='y'):
    """Label a log axis at 1, 2 and 5 times the powers of ten within its range (and the
    range's ends, to two figures, where fewer than two of those fall inside), with no
    minor labels: matplotlib's own labels collide on short ranges (``6.925×10⁻¹``)."""
    from matplotlib.ticker import NullFormatter

    low, high = axis.get_ylim() if which == 'y' else axis.get_xlim()
    ticks = [m * 10.0**e for e in range(-6, 7) for m in (1, 2, 5) if low <= m * 10.0**e <= high]
    if len(ticks) < 2:
        ticks = sorted({float(f'{low:.2g}'), *ticks, float(f'{high:.2g}')})
    target = axis.yaxis if which == 'y' else axis.xaxis
    target.set_minor_formatter(NullFormatter())
    target.set_ticks(ticks, [f'{tick:g}' for tick in ticks])
    if which == 'y':
        axis.set_ylim(low, high)
    else:
        axis.set_xlim(low, high)


def save(figure, plots_dir, name):
    """Write ``<plots_dir>/<name>.png`` and ``.pdf``; returns the two paths."""
    plots_dir = pathlib.Path(plots_dir)
    paths = [plots_dir / f'{name}.{suffix}' for suffix in ('png', 'pdf')]
    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
        for path, metadata in zip(paths, ({}, {'CreationDate': None})):
            # No creation date in the PDF: a rebuild from the same runs gives the same bytes.
            figure.savefig(path, dpi=150, bbox_inches='tight', metadata=metadata)
    except OSError as error:
        # One line naming the flag to change, exit status 1; no traceback.
        raise SystemExit(
            f'cannot write the figure into --plots_dir {plots_dir} ({error}); '
            'choose a writable folder'
        ) from None
    finally:
        plt.close(figure)
    return paths
