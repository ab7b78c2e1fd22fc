#!/usr/bin/env bash
# Nested spheres over a grid of experiments/grids.py. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=nested_spheres; STUDY_FLAGS=()
run_sweep "$@"
