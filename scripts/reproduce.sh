#!/usr/bin/env bash
# Every experiment's grid, then every figure. Flags are passed to each sweep (--quick,
# --jobs N, --results_dir DIR, --log_dir DIR); with --quick the toy gradient uses T from
# 19 to 29 in steps of 0.5 instead of 0.02. Figures land in plotting/plots/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON="${PYTHON:-python}"
results_dir=results; quick=0; arguments=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --results_dir) results_dir="${2:-}"; shift ;;
    esac
    shift
done
status=0
for script in g1d nested_spheres sines images ornstein_uhlenbeck; do
    bash "scripts/$script.sh" "${arguments[@]}" || status=1
done
toy_flags=(--results_dir "$results_dir" --quiet)
[ "$quick" = 1 ] && toy_flags+=(--t_step 0.5)
"$PYTHON" -m experiments.toy_gradient "${toy_flags[@]}" || status=1
figures=(--results_dir "$results_dir")
"$PYTHON" -m plotting.plot_toy_gradient "${figures[@]}" || status=1
for experiment in g1d nested_spheres sines10; do
    "$PYTHON" -m plotting.plot_ode_times --experiment "$experiment" "${figures[@]}" || status=1
done
if [ "$quick" = 1 ]; then
    "$PYTHON" -m plotting.plot_ode_times --experiment digits "${figures[@]}" || status=1
else
    "$PYTHON" -m plotting.plot_ode_times --experiment mnist "${figures[@]}" || status=1
fi
"$PYTHON" -m plotting.plot_sde_times "${figures[@]}" || status=1
"$PYTHON" -m plotting.plot_ou_solutions "${figures[@]}" || status=1
if [ "$status" = 0 ]; then echo "reproduce: all steps succeeded"; else echo "reproduce: some steps failed (see above)"; fi
exit $status
