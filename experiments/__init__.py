"""One thin command line per paper experiment (``python -m experiments.<name>``)."""
