"""One script per paper figure (``python -m plotting.<name>``); reads results through
:mod:`experiments.results`, writes PNG and PDF under ``plotting/plots/``."""

import pathlib

from common import interrupts

# Ctrl-C while the command imports torch: one line, not a traceback.
interrupts.install()

#: Default folder of the figures (kept empty in git).
PLOTS_DIR = pathlib.Path(__file__).resolve().parent / 'plots'
