#!/usr/bin/env bash
# g1d over a grid of experiments/grids.py.
# --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=g1d; STUDY_FLAGS=()
run_sweep "$@"
