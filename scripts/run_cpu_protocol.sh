#!/usr/bin/env bash
# The CPU-scale protocol: ResNet-26 (the shipped teacher) -> ResNet-8 on CIFAR-10, 15 epochs,
# every method and the 10 %-label runs, 3 seeds (kd:0.1, added later, is the control for what the
# teacher's outputs on the unlabelled images give by themselves). Resumable: a run whose log is
# complete is skipped, a killed one continues from its checkpoint. Only config.json, log.jsonl
# and data.json of each run are committed (results/.gitignore); then the report command
# rebuilds the table.
#
#   bash scripts/run_cpu_protocol.sh                      # everything (about 10 hours on 2 cores)
#   RUNS="scratch scratch:0.1" SEEDS="0" bash scripts/run_cpu_protocol.sh   # a subset
#   UNTIL="23:15" bash scripts/run_cpu_protocol.sh      # start no new run after 23:15 today (date -d
#                                                       # syntax; after midnight: "tomorrow 02:00")
#   JOBS=2 bash scripts/run_cpu_protocol.sh             # two runs at a time, one thread each on 2 cores
#
# With JOBS > 1 each run's console output goes to console.log in its folder, and every run gets
# nproc / JOBS threads unless OMP_NUM_THREADS is set. On 2 cores, two one-thread runs side by side
# finish sooner than the same runs one after the other with two threads each.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-15}
OUT=${OUT:-results/cpu}
SEEDS=${SEEDS:-"0 1 2"}
RUNS=${RUNS:-"scratch kd at fsp dense adv adv-dense scratch:0.1 adv-dense:0.1 kd:0.1"}
TEACHER=${TEACHER:-resnet26_cifar10}
UNTIL=${UNTIL:-}
JOBS=${JOBS:-1}
stop_at=""
[ -n "$UNTIL" ] && stop_at=$(date -d "$UNTIL" +%s)
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  threads=$(( $(nproc) / JOBS ))
  OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
  export OMP_NUM_THREADS
fi
failed=0
pids=()  # background runs (JOBS > 1), waited for one by one at the end
for seed in $SEEDS; do
  for spec in $RUNS; do
    method=${spec%%:*}
    frac=1.0
    [[ $spec == *:* ]] && frac=${spec##*:}
    dir="$OUT/$method-lf$frac-s$seed"
    if [ -f "$dir/log.jsonl" ] && [ "$(wc -l < "$dir/log.jsonl")" -ge "$EPOCHS" ]; then
      echo "done already: $dir"
      continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do  # wait for a free slot
      wait -n || true  # its status is read again below
    done
    if [ -n "$stop_at" ] && [ "$(date +%s)" -ge "$stop_at" ]; then
      echo "past UNTIL=$UNTIL: not starting $dir"
      continue
    fi
    teacher=(--teacher "$TEACHER")
    [ "$method" = scratch ] && teacher=()
    cmd=(python -m dfkd_lib train --method "$method" "${teacher[@]}" --student resnet8 --dataset cifar10
      --epochs "$EPOCHS" --labelled-fraction "$frac" --seed "$seed" --out "$dir" --resume)
    if [ "$JOBS" -gt 1 ]; then
      mkdir -p "$dir"
      echo "=== $dir (console: $dir/console.log)"
      "${cmd[@]}" > "$dir/console.log" 2>&1 &
      pids+=($!)
    else
      echo "=== $dir"
      "${cmd[@]}" || failed=1
    fi
  done
done
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
python -m dfkd_lib report --runs "$OUT"
exit $failed
