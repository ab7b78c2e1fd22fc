"""One script per paper figure (``python -m plotting.<name>``); reads results through
:mod:`experiments.results`, writes PNG and PDF under ``plotting/plots/``."""

import pathlib

#: Default folder of the figures (kept empty in git).
PLOTS_DIR = pathlib.Path(__file__).resolve().parent / 'plots'
