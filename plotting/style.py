"""One colour and line style per method, and saving a figure as PNG and PDF."""

import pathlib

import matplotlib

matplotlib.use('Agg')  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

#: label, colour, line style of every method across all figures
METHODS = {
    'adjoint_gq': ('GQ adjoint', 'tab:red', '-'),
    'adjoint_gq_propagator': ('GQ adjoint, propagator', 'tab:pink', (0, (1, 1))),
    'adjoint_ode': ('adjoint', 'tab:blue', '--'),
    'adjoint_seminorm': ('adjoint (seminorm)', 'tab:purple', '-.'),
    'direct': ('direct', 'tab:green', ':'),
    'mali': ('MALI', 'tab:orange', (0, (3, 1, 1, 1))),
    'aca': ('ACA', 'tab:brown', (0, (5, 2))),
    'sde_direct': ('torchsde direct', 'tab:green', ':'),
    'sde_adjoint': ('torchsde adjoint', 'tab:blue', '--'),
}


def line_style(method):
    """``dict(label=..., color=..., linestyle=...)`` for ``method``."""
    label, colour, dashes = METHODS[method]
    return {'label': label, 'color': colour, 'linestyle': dashes}


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
