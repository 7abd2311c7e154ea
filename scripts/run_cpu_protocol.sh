#!/usr/bin/env bash
# The CPU-scale protocol: ResNet-26 (the shipped teacher) -> ResNet-8 on CIFAR-10, 15 epochs,
# every method and the 10 %-label runs, 3 seeds. Resumable: a run whose log is complete is
# skipped, a killed one continues from its checkpoint. Only config.json and log.jsonl of each
# run are committed (results/.gitignore); then the report command rebuilds the table.
#
#   bash scripts/run_cpu_protocol.sh                      # everything (about 9 hours on 2 cores)
#   RUNS="scratch scratch:0.1" SEEDS="0" bash scripts/run_cpu_protocol.sh   # a subset
#   UNTIL="23:15" bash scripts/run_cpu_protocol.sh      # start no new run after 23:15 (date -d syntax)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-15}
OUT=${OUT:-results/cpu}
SEEDS=${SEEDS:-"0 1 2"}
RUNS=${RUNS:-"scratch kd at fsp dense adv adv-dense scratch:0.1 adv-dense:0.1"}
TEACHER=${TEACHER:-resnet26_cifar10}
UNTIL=${UNTIL:-}
stop_at=""
[ -n "$UNTIL" ] && stop_at=$(date -d "$UNTIL" +%s)
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
    if [ -n "$stop_at" ] && [ "$(date +%s)" -ge "$stop_at" ]; then
      echo "past UNTIL=$UNTIL: not starting $dir"
      continue
    fi
    teacher=(--teacher "$TEACHER")
    [ "$method" = scratch ] && teacher=()
    echo "=== $dir"
    python -m dfkd_lib train --method "$method" "${teacher[@]}" --student resnet8 --dataset cifar10 \
      --epochs "$EPOCHS" --labelled-fraction "$frac" --seed "$seed" --out "$dir" --resume
  done
done
python -m dfkd_lib report --runs "$OUT"
