#!/usr/bin/env bash
# Run two options of one grid side by side, repeat by repeat, for a paired timing.
#
#   bash scripts/paired.sh EXPERIMENT WIDTH OPTION_A OPTION_B [flags] [-- STUDY FLAGS]
#
# For each repeat of the grid at WIDTH, the run of OPTION_A and the run of OPTION_B start
# together, one thread each (OMP_NUM_THREADS=1), and the next repeat starts when both
# have ended: the two runs of a repeat share the machine's conditions, so their time
# ratio is a fair pair (plotting/verdicts.py pairs runs by repeat number). The runs are
# exactly the grid's (python -m experiments.grids runs); a complete run is skipped, an
# unfinished one resumes from its checkpoint.
#
# Flags: --grid paper|reduced|quick (default reduced), --repeats "1 2 …" (default: every
# repeat the grid has for both options), --results_dir DIR (default runs), --log_dir DIR
# (default logs). Example, the paired repeats of nested spheres at width 2000:
#   bash scripts/paired.sh nested_spheres 2000 direct adjoint_gq --results_dir results
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PYTHON="${PYTHON:-python}"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

grid=reduced repeats= results_dir=runs log_dir=logs study=() positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --grid) grid="${2:-}"; shift ;;
        --repeats) repeats="${2:-}"; shift ;;
        --results_dir) results_dir="${2:-}"; shift ;;
        --log_dir) log_dir="${2:-}"; shift ;;
        --) shift; study=("$@"); break ;;
        -*) echo "$0: unknown flag '$1' (see --help)" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
if [ "${#positional[@]}" -ne 4 ]; then
    echo "$0: expected EXPERIMENT WIDTH OPTION_A OPTION_B; got ${#positional[@]} arguments (see --help)" >&2
    exit 2
fi
experiment="${positional[0]}" width="${positional[1]}" first="${positional[2]}" second="${positional[3]}"
if ! [[ "$width" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: WIDTH must be a positive integer; got '$width'" >&2
    exit 2
fi
if [ -z "$results_dir" ] || [ -z "$log_dir" ] || [ -z "$grid" ]; then
    echo "$0: --grid, --results_dir and --log_dir each take a value" >&2
    exit 2
fi
for number in $repeats; do
    if ! [[ "$number" =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: --repeats takes positive integers; got '$number'" >&2
        exit 2
    fi
done

listing=$("$PYTHON" -m experiments.grids runs "$experiment" --grid "$grid" \
    --results_dir "$results_dir" --log_dir "$log_dir" -- "${study[@]}") || exit 2

# The grid's line of one run (folder TAB log TAB python arguments), or nothing.
line_of() {
    local option="$1" number="$2"
    printf '%s\n' "$listing" | awk -F'\t' -v tail="/$width/$option/$number" \
        'substr($1, length($1) - length(tail) + 1) == tail { print; exit }'
}

if [ -z "$repeats" ]; then
    repeats=$(printf '%s\n' "$listing" | awk -F'\t' -v w="$width" -v a="$first" -v b="$second" '
        { n = split($1, p, "/"); if (p[n-2] == w) { seen[p[n], p[n-1]] = 1; found[p[n]] = 1 } }
        END { for (r in found) if (((r, a) in seen) && ((r, b) in seen)) print r }' | sort -n | tr '\n' ' ')
fi
if [ -z "$repeats" ]; then
    echo "$0: the $grid grid of $experiment runs no repeat of both $first and $second at width $width" >&2
    exit 2
fi

children=()
stop() {
    trap - TERM INT
    [ "${#children[@]}" -gt 0 ] && kill -TERM "${children[@]}" 2> /dev/null
    wait
    echo "$0: stopped; rerun the same command to resume (finished runs are skipped)" >&2
    exit 130
}
trap stop TERM INT

# One run: skipped when complete, else started (resuming) with its log.
start() {
    local fields
    IFS=$'\t' read -r -a fields <<< "$1"
    if "$PYTHON" -m experiments.results complete --quiet "${fields[0]}" -- "${fields[@]:2}"; then
        echo "complete: ${fields[0]}"
        return 1
    fi
    mkdir -p "$(dirname "${fields[1]}")"
    echo "start: ${fields[0]} (log ${fields[1]})"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PYTHON" "${fields[@]:2}" > "${fields[1]}" 2>&1 &
    children+=($!)
}

failed=0
for number in $repeats; do
    children=()
    for option in "$first" "$second"; do
        line=$(line_of "$option" "$number")
        if [ -z "$line" ]; then
            echo "$0: the grid has no run of $option at width $width, repeat $number" >&2
            failed=1
            continue
        fi
        start "$line"
    done
    for child in "${children[@]}"; do
        wait "$child" || { failed=1; echo "$0: a run of repeat $number failed (see its log)" >&2; }
    done
done
exit "$failed"
