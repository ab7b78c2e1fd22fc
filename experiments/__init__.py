"""One thin command line per paper experiment (``python -m experiments.<name>``)."""

from common import interrupts

# Ctrl-C while the command imports torch: one line, not a traceback.
interrupts.install()
