#!/usr/bin/env bash
# Ornstein–Uhlenbeck over a grid of experiments/grids.py, NCOSINES (default 10) from the
# environment. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=ornstein_uhlenbeck; STUDY_FLAGS=(--ncosines "${NCOSINES:-10}")
run_sweep "$@"
