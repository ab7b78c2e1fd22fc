"""The research data layer: what a study is and where its runs live.

:mod:`study.results` writes and reads run folders (the only writer of results);
:mod:`study.grids` is the table of experiments, their grids and the report's studies;
:mod:`study.flags` builds every experiment's command-line parser (its defaults name the
run folders). The commands (:mod:`experiments`), the figures and tables
(:mod:`plotting`) and the benchmarks read runs through this package; it imports none of
them.
"""
