#!/usr/bin/env bash
# Shared machinery of the sweep scripts; sourced, never run. A sweep script sets
#   EXPERIMENT    a name in experiments/grids.py (its grids, command and results naming)
#   STUDY_FLAGS   array of flags added to every run (e.g. --ntimes 50)
# then calls: run_sweep "$@"
#
# Flags: --grid paper|reduced|quick (default paper; --quick and --reduced are short for
# the last two), --jobs N (runs at once, default 1; with --slurm, array tasks at once,
# default no limit), --results_dir DIR (default runs, ignored by git; results to extend
# the committed runs), --log_dir DIR (default logs); --slurm writes a job array (one task
# per run) and a figures job that waits for it, and submits both with sbatch (--no-submit
# only writes them); --time T, --cpus N, --mem M set each task's resources (default
# 04:00:00, 1, 8G). Everything after -- is added to STUDY_FLAGS (e.g. -- --nepochs 60)
# and wins over the grid's own flags. The runs come from 'python -m experiments.grids
# runs'; a run that experiments.results reports complete with the same settings and
# epochs is skipped; every run saves a checkpoint each epoch and resumes from it, so a
# half-finished run continues where it stopped. SIGTERM, SIGINT or SIGHUP stops the runs too.
# One log per run; a summary line at the end. Runs use $PYTHON (default: python, so
# activate the project's environment first) from the repository root; relative
# --results_dir and --log_dir are taken from there.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PYTHON="${PYTHON:-python}"
export PYTHON

sweep_usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

_run_one() {
    # one line of the runs file: <run folder> TAB <log file> TAB <python arguments...>
    local fields folder log
    IFS=$'\t' read -r -a fields <<< "$1"
    folder="${fields[0]}"; log="${fields[1]}"
    if "$PYTHON" -m experiments.results complete --quiet "$folder" -- "${fields[@]:2}"; then
        echo skipped >> "$STATUS_FILE"
        return 0
    fi
    mkdir -p "$(dirname "$log")"
    if "$PYTHON" "${fields[@]:2}" > "$log" 2>&1; then
        echo done >> "$STATUS_FILE"
    else
        echo failed >> "$STATUS_FILE"
        echo "failed: $PYTHON ${fields[*]:2} (log: $log)" >&2
    fi
}
export -f _run_one

run_sweep() {
    local grid=paper jobs= slurm=0 submit=1 results_dir=runs log_dir=logs stopped=
    local time_limit=04:00:00 cpus=1 memory=8G
    # From the first moment: a signal while the runs are being listed must stop the sweep
    # before any run starts, not be lost while Python answers.
    trap 'stopped=TERM' TERM
    trap 'stopped=INT' INT
    # A closed terminal (SIGHUP) stops the runs as SIGTERM does, with the summary line.
    trap 'stopped=HUP' HUP
    while [ $# -gt 0 ]; do
        case "$1" in
            --grid|--jobs|--time|--cpus|--mem|--results_dir|--log_dir)
                # A flag whose value was forgotten must not take the next flag, or a
                # default, as its value.
                if [ $# -lt 2 ] || [ -z "$2" ] || [[ "$2" == -* ]]; then
                    echo "$0: $1 needs a value (see --help)" >&2
                    return 2
                fi ;;
        esac
        case "$1" in
            --quick) grid=quick ;;
            --reduced) grid=reduced ;;
            --grid) grid="$2"; shift ;;
            --jobs) jobs="$2"; shift ;;
            --slurm) slurm=1 ;;
            --no-submit) submit=0 ;;
            --time) time_limit="$2"; shift ;;
            --cpus) cpus="$2"; shift ;;
            --mem) memory="$2"; shift ;;
            --results_dir) results_dir="$2"; shift ;;
            --log_dir) log_dir="$2"; shift ;;
            -h|--help) sweep_usage; return 0 ;;
            --) shift; STUDY_FLAGS+=("$@"); break ;;
            *) echo "$0: unknown flag '$1' (see --help)" >&2; return 2 ;;
        esac
        shift
    done
    if [ -n "$jobs" ] && ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: --jobs must be a positive integer; got '$jobs'" >&2
        return 2
    fi
    if ! [[ "$cpus" =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: --cpus must be a positive integer; got '$cpus'" >&2
        return 2
    fi
    if ! [[ "$time_limit" =~ ^[0-9:-]+$ ]] || ! [[ "$memory" =~ ^[0-9]+[KMGT]?$ ]]; then
        echo "$0: --time takes sbatch's form (e.g. 04:00:00) and --mem a size (e.g. 8G); got '$time_limit' and '$memory'" >&2
        return 2
    fi
    mkdir -p "$log_dir/$EXPERIMENT" || { echo "$0: cannot create --log_dir $log_dir" >&2; return 2; }
    # One sweep per log folder at a time: two would share runs.tsv, the queue and the
    # status file, and run each other's runs. The lock goes when this shell exits.
    local lock_fd
    if ! exec {lock_fd}>> "$log_dir/$EXPERIMENT/.sweep.lock" || ! flock -n "$lock_fd"; then
        echo "$0: another sweep of $EXPERIMENT is using --log_dir $log_dir right now; wait for it, or give this one another --log_dir" >&2
        return 2
    fi
    local runs_file="$log_dir/$EXPERIMENT/runs.tsv"
    "$PYTHON" -m experiments.grids runs "$EXPERIMENT" --grid "$grid" \
        --results_dir "$results_dir" --log_dir "$log_dir" -- "${STUDY_FLAGS[@]}" \
        > "$runs_file" || return 2
    local total
    total=$(wc -l < "$runs_file")
    if [ -n "$stopped" ]; then
        trap - TERM INT HUP
        echo "$EXPERIMENT: stopped by SIG$stopped before any run started" >&2
        [ "$stopped" = TERM ] && return 143
        [ "$stopped" = HUP ] && return 129
        return 130
    fi

    if [ "$slurm" = 1 ]; then
        local batch="$log_dir/$EXPERIMENT/array.sbatch" figures="$log_dir/$EXPERIMENT/figures.sbatch"
        # The environment active now is the one the tasks activate; the tasks run where
        # the job was submitted from (this repository's root).
        # Paths go into the scripts quoted for the shell (printf %q): a folder named with a
        # quote or a backtick must neither break the script nor run as a command. The
        # #SBATCH lines are read by sbatch, not the shell, and take no quoting: a log
        # folder with blanks or quotes is refused for them.
        if [[ "$log_dir" =~ [[:space:]\"\'\`\$\\] ]]; then
            echo "$0: with --slurm, --log_dir must not contain blanks, quotes, backticks, \$ or backslashes (sbatch reads it in #SBATCH lines); got '$log_dir'" >&2
            return 2
        fi
        local activate="" q_runs q_python q_results
        [ -n "${VIRTUAL_ENV:-}" ] && activate="source $(printf '%q' "$VIRTUAL_ENV/bin/activate")"
        q_runs=$(printf '%q' "$runs_file")
        q_python=$(printf '%q' "$PYTHON")
        q_results=$(printf '%q' "$results_dir")
        cat > "$batch" <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=$EXPERIMENT
#SBATCH --array=1-$total${jobs:+%$jobs}
#SBATCH --output=$log_dir/$EXPERIMENT/slurm_%a.log
#SBATCH --time=$time_limit
#SBATCH --cpus-per-task=$cpus
#SBATCH --mem=$memory
# One array task per line of the runs file; complete runs are skipped, others resume.
cd "\$SLURM_SUBMIT_DIR"
$activate
export OMP_NUM_THREADS=\$SLURM_CPUS_PER_TASK
IFS=\$'\\t' read -r -a fields <<< "\$(sed -n "\${SLURM_ARRAY_TASK_ID}p" $q_runs)"
if [ "\${#fields[@]}" -lt 3 ]; then
    echo "no run on line \${SLURM_ARRAY_TASK_ID} of $q_runs (the array has $total tasks)" >&2
    exit 1
fi
if $q_python -m experiments.results complete "\${fields[0]}" -- "\${fields[@]:2}"; then
    echo "skipped \${fields[0]}"; exit 0
fi
exec $q_python "\${fields[@]:2}"
SBATCH
        cat > "$figures" <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=${EXPERIMENT}_figures
#SBATCH --output=$log_dir/$EXPERIMENT/slurm_figures.log
#SBATCH --time=00:30:00
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
# Submitted to start once every task of array.sbatch has ended: the figures of whatever
# finished (missing runs are named in the log).
cd "\$SLURM_SUBMIT_DIR"
$activate
$q_python -m plotting.figures --results_dir $q_results
SBATCH
        echo "wrote $batch ($total array tasks${jobs:+, at most $jobs at once}) and $figures"
        if [ "$submit" = 1 ]; then
            if ! command -v sbatch > /dev/null; then
                echo "$0: sbatch not found; submit $batch, then $figures with --dependency=afterany:<its job id>, on the cluster" >&2
                return 1
            fi
            local array_id
            array_id=$(sbatch --parsable "$batch") || return 1
            sbatch --dependency="afterany:${array_id%%;*}" "$figures" || return 1
        fi
        return 0
    fi

    export STATUS_FILE="$log_dir/$EXPERIMENT/status.txt"
    : > "$STATUS_FILE"
    # The runs go in a process group of their own, so that SIGTERM (SLURM, timeout) or
    # SIGINT to this script stops them too: each says what it saved, and resumes later.
    local queue="$log_dir/$EXPERIMENT/runs.queue"
    tr '\n' '\0' < "$runs_file" > "$queue"
    set -m
    xargs -0 -a "$queue" -P "${jobs:-1}" -I{} bash -c '_run_one "$1"' _ {} &
    local group=$!
    set +m
    while kill -0 "$group" 2> /dev/null; do
        wait "$group"
        if [ -n "$stopped" ]; then
            local sent="$stopped"
            [ "$sent" = HUP ] && sent=TERM
            kill "-$sent" -- "-$group" 2> /dev/null
            wait "$group"
            # Runs save what they finished and exit; return only when all have (SIGKILL
            # after 60 s: a run killed hard still loses nothing that was written).
            local waited=0
            while kill -0 -- "-$group" 2> /dev/null && [ "$waited" -lt 300 ]; do
                sleep 0.2; waited=$((waited + 1))
            done
            kill -KILL -- "-$group" 2> /dev/null
            break
        fi
    done
    trap - TERM INT HUP
    if [ -n "$stopped" ]; then
        echo "$EXPERIMENT: stopped by SIG$stopped; finished epochs are saved, rerun the same command to resume" >&2
        [ "$stopped" = TERM ] && return 143
        [ "$stopped" = HUP ] && return 129
        return 130
    fi
    local done_count skipped failed
    done_count=$(grep -c '^done$' "$STATUS_FILE")
    skipped=$(grep -c '^skipped$' "$STATUS_FILE")
    failed=$(grep -c '^failed$' "$STATUS_FILE")
    echo "$EXPERIMENT: $total runs: $done_count done, $skipped skipped, $failed failed (logs in $log_dir/$EXPERIMENT)"
    [ "$failed" = 0 ]
}
