"""Data sets of the paper's experiments; generated files land in ``datasets/data/``."""

import pathlib

from common import interrupts

# Ctrl-C while the command imports torch: one line, not a traceback.
interrupts.install()

#: Default folder of generated and downloaded data (ignored by git).
DATA_DIR = pathlib.Path(__file__).resolve().parent / 'data'
