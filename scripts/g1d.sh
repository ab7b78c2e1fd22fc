#!/usr/bin/env bash
# g1d over the paper's grid (PAPER.md §3): 4 options × 9 widths × 10 repeats. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=g1d; MODULE=experiments.g1d; ABLATION=gtol0.1; EXTRA="--gtol 0.1"
OPTIONS=(direct adjoint_ode adjoint_seminorm adjoint_gq)
WIDTHS=(5 20 100 500 1000 1500 2000 2500 3000); REPEATS=10
QUICK_OPTIONS=("${OPTIONS[@]}"); QUICK_WIDTHS=(5 20); QUICK_REPEATS=1; QUICK_EXTRA="--nepochs 10"
run_sweep "$@"
