#!/usr/bin/env bash
# A data-set circuit hunt as two Slurm array jobs (or Kubernetes Indexed Jobs), merged by
# `gim merge`. The merged report equals a single `gim circuit --data` run exactly.
#
#   tools/circuit_array_job.sh submit  DATA.jsonl  N  [gim circuit options…]   # on the login node
#
# Stage 1 (array 0..N-1): each task sums the edge scores of its slice of the finding examples.
# Merge 1: the sums become the found scores.      Stage 2 (array 0..N-1): each task patches the
# circuits on its slice of the evaluation examples. Merge 2: the report (table, JSON, figure).
# Every task must see the same model, data and options; `gim merge` refuses parts that differ.
#
# On Kubernetes, run each stage as an Indexed Job with completions=N and use
# JOB_COMPLETION_INDEX where this script uses SLURM_ARRAY_TASK_ID.
set -euo pipefail
GIM=${GIM:-gim}
MODEL=${MODEL:-smollm2-135m}
WORK=${WORK:-circuit-parts}

stage() {  # stage find|eval DATA N OPTIONS…   (run inside an array task)
    local kind=$1 data=$2 n=$3; shift 3
    local i=${SLURM_ARRAY_TASK_ID:-${JOB_COMPLETION_INDEX:?no array task index}}
    local extra=()
    [[ $kind == eval ]] && extra=(--scores "$WORK/scores.json")
    "$GIM" circuit --model "$MODEL" --data "$data" "$@" "${extra[@]}" \
        --shard "$i/$n" --out "$WORK/$kind-$i.json"
}

case ${1:-} in
    submit)
        data=$2 n=$3; shift 3
        mkdir -p "$WORK"
        me=$(realpath "$0")
        find=$(sbatch --parsable --array=0-$((n - 1)) --wrap "$me stage find $data $n $*")
        merge1=$(sbatch --parsable --dependency=afterok:$find \
            --wrap "$GIM merge $WORK/find-*.json --out $WORK/scores.json")
        eval=$(sbatch --parsable --array=0-$((n - 1)) --dependency=afterok:$merge1 \
            --wrap "$me stage eval $data $n $*")
        sbatch --dependency=afterok:$eval \
            --wrap "$GIM merge $WORK/eval-*.json --out $WORK/report.json --svg $WORK/curves.svg > $WORK/report.txt"
        ;;
    stage) shift; stage "$@" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac
