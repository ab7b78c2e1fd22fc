#!/usr/bin/env bash
# Images over a grid of experiments/grids.py for
# DATASET (default mnist) and BATCHSIZE (default 32) from the environment; the reduced
# and quick grids use digits. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=images
STUDY_FLAGS=(--dataset "${DATASET:-mnist}" --batchsize "${BATCHSIZE:-32}")
run_sweep "$@"
