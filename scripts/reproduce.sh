#!/usr/bin/env bash
# Every study of a grid, then every figure. A grid must be chosen:
#   --quick           a few epochs of each study, to check that everything runs (minutes)
#   --reduced         the report's runs: the paper's epochs at fewer widths and repeats
#                     (many hours on two cores; what results/ holds)
#   --grid paper      the paper's whole grid (days on a CPU; MNIST's files needed)
# --dry-run lists each study's runs (complete, to start or resume) and its measured
# budget, and runs nothing. Other flags are passed to each sweep (--jobs N, --results_dir
# DIR (default runs; results extends the committed runs), --log_dir DIR, --slurm, ...);
# the studies are those of experiments/grids.py.
# Except on the paper grid the toy gradient uses T from 19 to 29 in steps of 0.5
# instead of 0.02. Figures land beside the runs, in <results_dir>/figures (python -m
# plotting.figures --results_dir results --plots_dir docs/figures rebuilds the report's).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON="${PYTHON:-python}"
results_dir=runs; grid=; dry_run=0; arguments=()
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
refuse() { echo "reproduce: $1 (see --help); nothing was run" >&2; exit 2; }
# Every flag is checked here, before any step: a flag a sweep would refuse must not let
# the steps after it (the toy gradient, the figures) run into --results_dir.
while [ $# -gt 0 ]; do
    [ "$1" != --dry-run ] && arguments+=("$1")
    case "$1" in
        --dry-run) dry_run=1 ;;
        --quick) grid=quick ;;
        --reduced) grid=reduced ;;
        --slurm|--no-submit) ;;
        --grid|--jobs|--results_dir|--log_dir)
            [ $# -ge 2 ] || refuse "$1 needs a value"
            case "$1" in
                --grid) grid="$2" ;;
                --jobs) [[ "$2" =~ ^[1-9][0-9]*$ ]] || refuse "--jobs must be a positive integer; got '$2'" ;;
                --results_dir) results_dir="$2" ;;
            esac
            [ -n "$2" ] || refuse "$1 must not be empty"
            arguments+=("$2")
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) refuse "unknown flag '$1'" ;;
    esac
    shift
done
case "$grid" in
    paper|reduced|quick) ;;
    '') refuse "choose a grid: --quick (minutes, checks that everything runs), --reduced (the report's runs, many hours) or --grid paper (days; MNIST files needed); --dry-run lists the runs first" ;;
    *) refuse "--grid must be paper, reduced or quick; got '$grid'" ;;
esac
if [ "$dry_run" = 1 ]; then
    "$PYTHON" -m experiments.grids plan --grid "$grid" --results_dir "$results_dir"
    exit $?
fi
status=0
# Each step runs in the background and is waited for, so that SIGINT or SIGTERM reaches
# this script at once: it stops the running sweep (which stops its runs: each saves what
# it finished) and exits instead of going on to the next step. A sweep that was stopped
# (status 130 or 143) ends reproduce.sh as well.
child=
stop() {
    trap - INT TERM
    if [ -n "$child" ]; then
        # A background job of a non-interactive shell ignores SIGINT: TERM stops it alike.
        kill -TERM "$child" 2> /dev/null
        wait "$child"
    fi
    echo "reproduce: stopped by SIG$1; finished epochs are saved, rerun the same command to resume" >&2
    [ "$1" = TERM ] && exit 143
    exit 130
}
trap 'stop INT' INT
trap 'stop TERM' TERM
step() {
    "$@" &
    child=$!
    wait "$child"
    local code=$?
    child=
    if [ "$code" = 130 ] || [ "$code" = 143 ]; then
        echo "reproduce: a step was stopped (status $code); not going on" >&2
        exit "$code"
    fi
    return "$code"
}
# The grid's studies, each with its own flags (experiments/grids.py STUDIES).
while IFS=$'\t' read -r -a study; do
    step bash "scripts/${study[0]}.sh" "${arguments[@]}" -- "${study[@]:1}" || status=1
done < <("$PYTHON" -m experiments.grids studies --grid "$grid")
toy_flags=(--results_dir "$results_dir" --quiet)
[ "$grid" != paper ] && toy_flags+=(--t_step 0.5)
step "$PYTHON" -m experiments.toy_gradient "${toy_flags[@]}" || status=1
step "$PYTHON" -m plotting.figures --results_dir "$results_dir" || status=1
if [ "$grid" = paper ]; then
    step "$PYTHON" -m plotting.plot_ode_times --experiment mnist --results_dir "$results_dir" || status=1
fi
if [ "$status" = 0 ]; then echo "reproduce: all steps succeeded"; else echo "reproduce: some steps failed (see above)"; fi
exit $status
