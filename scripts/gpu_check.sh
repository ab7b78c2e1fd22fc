#!/usr/bin/env bash
# The speed tables on a GPU, in at most 8 minutes: the client workloads
# (python -m benchmarks.clients) and the paper's models (python -m
# benchmarks.gradient_speed), every mode side by side, timed with CUDA synchronised
# around each step (benchmarks/timing.py). Each table has its own time limit, so that
# one slow table cannot eat the other's; a table that runs out prints what it finished.
#
#   bash scripts/gpu_check.sh                  # on cuda (or --device cuda:1)
#   bash scripts/gpu_check.sh --dry-run        # the same commands on the CPU, tiny
#
# Output goes to standard output; redirect it to keep it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON="${PYTHON:-python}"
device=cuda
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:-}"; shift ;;
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --device D or --dry-run)" >&2
           exit 2 ;;
    esac
    shift
done
if [ -z "$device" ]; then
    echo "gpu_check.sh: --device needs a value (cuda, cuda:N)" >&2
    exit 2
fi

if [ "$dry_run" = 1 ]; then
    device=cpu
    clients=(--workload spiral --mode "gq default" --mode "gq interpolated" --repeats 1)
    paper=(--case spheres20 --option direct --option adjoint_gq_interpolated
           --option adjoint_gq_default --repeats 1)
    limit_clients=120; limit_paper=120
else
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: torch sees no CUDA device (use --dry-run on a CPU machine)" >&2
        exit 2
    fi
    "$PYTHON" -c "import torch; print('GPU:', torch.cuda.get_device_name(0))"
    clients=(--repeats 3)
    paper=(--case spheres500 --case spheres2000 --case sines10 --case sines50
           --case latent16 --repeats 3)
    limit_clients=270; limit_paper=180
fi

status=0
echo "== client workloads (device $device) =="
timeout "$limit_clients" "$PYTHON" -m benchmarks.clients --device "$device" "${clients[@]}" \
    || status=$?
echo "== the paper's models (device $device) =="
timeout "$limit_paper" "$PYTHON" -m benchmarks.gradient_speed --device "$device" "${paper[@]}" \
    || status=$?
exit "$status"
