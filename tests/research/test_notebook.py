"""The g1d example notebook runs end to end (nbclient), its parameter cell made tiny."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from study.grids import ODE_OPTIONS

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_g1d_notebook_executes():
    notebook = nbformat.read(REPOSITORY / 'examples' / 'g1d_example.ipynb', as_version=4)
    (parameters,) = [
        cell for cell in notebook.cells if 'parameters' in cell.get('metadata', {}).get('tags', [])
    ]
    assert 'WIDTH = 3000' in parameters.source  # the original notebook's large model
    parameters.source = 'WIDTH = 8\nLR = 0.01\nEPOCHS = 3'
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name='python3',
        # Jupyter starts the kernel in the notebook's folder, not the repository's root.
        resources={'metadata': {'path': str(REPOSITORY / 'examples')}},
    ).execute()
    printed = ''.join(
        output.get('text', '')
        for cell in notebook.cells
        if cell.cell_type == 'code'
        for output in cell.get('outputs', [])
    )
    for option in ODE_OPTIONS:
        assert option in printed
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == 'code'
        for output in cell.get('outputs', [])
        if 'image/png' in output.get('data', {})
    ]
    assert len(images) == 1
