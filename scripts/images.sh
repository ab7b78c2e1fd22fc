#!/usr/bin/env bash
# Images over the paper's grid: 3 options × 4 widths × 3 repeats for DATASET (default mnist)
# and BATCHSIZE (default 32) from the environment. --quick uses digits. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
DATASET="${DATASET:-mnist}"; BATCHSIZE="${BATCHSIZE:-32}"
for argument in "$@"; do [ "$argument" = --quick ] && DATASET=digits; done
EXPERIMENT=images; MODULE=experiments.images; ABLATION="$DATASET/$BATCHSIZE"
EXTRA="--dataset $DATASET --batchsize $BATCHSIZE"
OPTIONS=(adjoint_ode adjoint_seminorm adjoint_gq); WIDTHS=(50 200 350 500); REPEATS=3
QUICK_OPTIONS=("${OPTIONS[@]}"); QUICK_WIDTHS=(4 8); QUICK_REPEATS=1; QUICK_EXTRA="--nepochs 1"
run_sweep "$@"
