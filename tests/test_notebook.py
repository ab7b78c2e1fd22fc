"""The g1d example notebook runs end to end (nbclient) on a few epochs."""

import pathlib

import nbformat
from nbclient import NotebookClient

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def test_g1d_notebook_executes(monkeypatch):
    monkeypatch.setenv('G1D_EPOCHS', '3')
    notebook = nbformat.read(REPOSITORY / 'examples' / 'g1d_example.ipynb', as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': str(REPOSITORY)}}).execute()
    printed = ''.join(output.get('text', '') for cell in notebook.cells
                      if cell.cell_type == 'code' for output in cell.get('outputs', []))
    for option in ('direct', 'adjoint_ode', 'adjoint_seminorm', 'adjoint_gq'):
        assert option in printed
    images = [output for cell in notebook.cells if cell.cell_type == 'code'
              for output in cell.get('outputs', []) if 'image/png' in output.get('data', {})]
    assert len(images) == 1
