"""Side-by-side speed and memory of the backprop options (``python -m benchmarks.<name>``)."""

from common import interrupts

# Ctrl-C while the command imports torch: one line, not a traceback.
interrupts.install()
