"""Side-by-side speed and memory of the backprop options (``python -m benchmarks.<name>``)."""
