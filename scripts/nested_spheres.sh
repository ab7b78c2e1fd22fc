#!/usr/bin/env bash
# Nested spheres over the paper's grid: 4 options × 9 widths × 10 repeats. --help for flags.
source "$(dirname "$0")/sweep_common.sh"
EXPERIMENT=nested_spheres; MODULE=experiments.nested_spheres; ABLATION=gtol0.1; EXTRA="--gtol 0.1"
OPTIONS=(direct adjoint_ode adjoint_seminorm adjoint_gq)
WIDTHS=(5 20 100 500 1000 1500 2000 2500 3000); REPEATS=10
QUICK_OPTIONS=("${OPTIONS[@]}"); QUICK_WIDTHS=(5 20 100); QUICK_REPEATS=2
QUICK_EXTRA="--nepochs 3"
run_sweep "$@"
