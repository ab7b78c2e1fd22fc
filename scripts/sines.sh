#!/usr/bin/env bash
# Sines over a grid of experiments/grids.py, for
# NTIMES (default 10) and REGULAR (default regular) taken from the environment. --help
# for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=sines
STUDY_FLAGS=(--ntimes "${NTIMES:-10}" --regular_times "${REGULAR:-regular}")
run_sweep "$@"
