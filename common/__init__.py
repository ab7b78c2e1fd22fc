"""Small helpers shared by the research code (datasets, experiments); not the library."""
