#!/usr/bin/env bash
# Every experiment's grid, then every figure. Flags are passed to each sweep (--quick,
# --reduced, --grid G, --jobs N, --results_dir DIR, --log_dir DIR); the studies are those
# of the report (sines with 10 regular and 50 irregular times, digits, and MNIST on the
# paper grid). Except on the paper grid the toy gradient uses T from 19 to 29 in steps
# of 0.5 instead of 0.02. Figures land in plotting/plots/ (python -m plotting.figures
# --plots_dir docs/figures rebuilds the report's).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON="${PYTHON:-python}"
results_dir=results; grid=paper; arguments=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) grid=quick ;;
        --reduced) grid=reduced ;;
        --grid) grid="${2:-}"; shift ;;
        --results_dir) results_dir="${2:-}"; shift ;;
    esac
    shift
done
status=0
if [ "$grid" = reduced ]; then
    # The report's studies, each with its own flags (experiments/grids.py REDUCED_STUDIES).
    while IFS=$'\t' read -r -a study; do
        bash "scripts/${study[0]}.sh" "${arguments[@]}" -- "${study[@]:1}" || status=1
    done < <("$PYTHON" -m experiments.grids studies)
else
    bash scripts/g1d.sh "${arguments[@]}" || status=1
    bash scripts/nested_spheres.sh "${arguments[@]}" || status=1
    NTIMES=10 REGULAR=regular bash scripts/sines.sh "${arguments[@]}" || status=1
    NTIMES=50 REGULAR=irregular bash scripts/sines.sh "${arguments[@]}" || status=1
    DATASET=digits bash scripts/images.sh "${arguments[@]}" || status=1
    [ "$grid" = paper ] && { DATASET=mnist bash scripts/images.sh "${arguments[@]}" || status=1; }
    bash scripts/ornstein_uhlenbeck.sh "${arguments[@]}" || status=1
fi
toy_flags=(--results_dir "$results_dir" --quiet)
[ "$grid" != paper ] && toy_flags+=(--t_step 0.5)
"$PYTHON" -m experiments.toy_gradient "${toy_flags[@]}" || status=1
"$PYTHON" -m plotting.figures --results_dir "$results_dir" --plots_dir plotting/plots || status=1
if [ "$grid" = paper ]; then
    "$PYTHON" -m plotting.plot_ode_times --experiment mnist --results_dir "$results_dir" || status=1
fi
if [ "$status" = 0 ]; then echo "reproduce: all steps succeeded"; else echo "reproduce: some steps failed (see above)"; fi
exit $status
