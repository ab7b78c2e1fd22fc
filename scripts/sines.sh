#!/usr/bin/env bash
# Sines over the paper's grid: 4 options × 5 widths × 5 repeats, for NTIMES (default 10) and
# REGULAR (default regular) taken from the environment. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
NTIMES="${NTIMES:-10}"; REGULAR="${REGULAR:-regular}"
EXPERIMENT=sines; MODULE=experiments.sines; ABLATION="${NTIMES}_${REGULAR}"
EXTRA="--ntimes $NTIMES --regular_times $REGULAR"
OPTIONS=(direct adjoint_ode adjoint_seminorm adjoint_gq)
WIDTHS=(5 20 200 1000 2000); REPEATS=5
QUICK_OPTIONS=("${OPTIONS[@]}"); QUICK_WIDTHS=(5 20); QUICK_REPEATS=2; QUICK_EXTRA="--nepochs 10"
run_sweep "$@"
