#!/usr/bin/env bash
# Ornstein–Uhlenbeck over the paper's grid: sde_direct, sde_adjoint, adjoint_gq × widths
# 5 20 50 100 × 5 repeats, NCOSINES (default 10) from the environment. --help for flags.
# (The paper ran sde_direct only up to width 50; here every option runs every width.)
source "$(dirname "$0")/sweep_common.sh"
NCOSINES="${NCOSINES:-10}"
EXPERIMENT=ornstein_uhlenbeck; MODULE=experiments.ornstein_uhlenbeck; ABLATION="$NCOSINES"
EXTRA="--ncosines $NCOSINES"
OPTIONS=(sde_direct sde_adjoint adjoint_gq); WIDTHS=(5 20 50 100); REPEATS=5
QUICK_OPTIONS=("${OPTIONS[@]}"); QUICK_WIDTHS=(5); QUICK_REPEATS=1; QUICK_EXTRA="--nepochs 2"
run_sweep "$@"
