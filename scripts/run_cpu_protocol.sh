#!/usr/bin/env bash
# The CPU-scale protocol: ResNet-26 (a shipped teacher) -> ResNet-8 on CIFAR-10, every method and
# the 10 %-label runs, 3 seeds. Defaults: the 15-epoch protocol of results/cpu (kd:0.1, added later,
# is the control for what the teacher's outputs on the unlabelled images give by themselves);
# scripts/run_protocol60.sh sets the 60-epoch one. RECIPE picks the version of the methods' recipes
# (dfkd_lib/methods.py): 1, the first, for the 15-epoch protocol; 2, the current one, for the 60-epoch. Resumable: a run whose log has every planned
# epoch (a two-stage run's flow-only stage included) is skipped, a killed one continues from its
# checkpoint. Only config.json, log.jsonl and data.json of each run are committed
# (results/.gitignore); the report command rebuilds the table, and STATUS.md in the output folder
# says which runs are done. A run longer than a working session is carried over by committing its
# checkpoint (scripts/carry_checkpoints.sh), which leaves the tree once the run is done.
#
#   bash scripts/run_cpu_protocol.sh                      # everything (about 10 hours on 2 cores)
#   RUNS="scratch scratch:0.1" SEEDS="0" bash scripts/run_cpu_protocol.sh   # a subset
#   UNTIL="23:15" bash scripts/run_cpu_protocol.sh      # start no new run after 23:15 today (date -d
#                                                       # syntax; after midnight: "tomorrow 02:00")
#   JOBS=2 bash scripts/run_cpu_protocol.sh             # two runs at a time, one thread each on 2 cores
#   PROBE=1 bash scripts/run_cpu_protocol.sh            # scratch gets the teacher too, as a flow probe
#   PROBE_ORDER=balanced bash scripts/run_cpu_protocol.sh   # probe images of every class in turn; the
#                            # 60-epoch protocol ran with "first": the first 1,000 validation images,
#                            # which in the class-sorted cifar10.npz are airplanes and automobiles only
#                            # (the 15-epoch protocol's runs logged no flow distances)
#   FIRST="kd-lf1.0-s2 fsp-lf1.0-s2" bash scripts/run_cpu_protocol.sh   # these runs (folder names)
#                            # first, after any cut off part-way; then the rest in the usual order
#   STATUS_ONLY=1 bash scripts/run_protocol60.sh        # rewrite STATUS.md from the logs, train nothing
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
RECIPE=${RECIPE:-1}
UNTIL=${UNTIL:-}
JOBS=${JOBS:-1}
PROBE=${PROBE:-0}
PROBE_ORDER=${PROBE_ORDER:-first}
FIRST=${FIRST:-}
stop_at=""
[ -n "$UNTIL" ] && stop_at=$(date -d "$UNTIL" +%s)
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  threads=$(( $(nproc) / JOBS ))
  OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
  export OMP_NUM_THREADS
fi
dirs=()
for seed in $SEEDS; do
  for spec in $RUNS; do
    method=${spec%%:*}
    frac=1.0
    [[ $spec == *:* ]] && frac=${spec##*:}
    dirs+=("$OUT/$method-lf$frac-s$seed")
  done
done

# STATUS.md: each planned run's folder, epochs logged of those planned, done or not
write_status() {
  python - "$OUT" "${dirs[@]}" <<'PY'
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from dfkd_lib.report import planned_epochs
out, dirs = Path(sys.argv[1]), sys.argv[2:]
rows, done = [], 0
for d in map(Path, dirs):
    cfg, log = d / "config.json", d / "log.jsonl"
    if not cfg.exists():
        rows.append(f"| {d.name} | - | not started |")
        continue
    n = len(log.read_text().splitlines()) if log.exists() else 0
    planned = planned_epochs(json.loads(cfg.read_text()))
    state = "done" if n >= planned else ("stopped (non-finite loss)" if (d / "stopped.json").exists() else "running or cut off")
    done += n >= planned
    rows.append(f"| {d.name} | {n} / {planned} | {state} |")
stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out.mkdir(parents=True, exist_ok=True)
(out / "STATUS.md").write_text(
    f"# Status of {out}\n\n{done} of {len(dirs)} runs done ({stamp}; written by scripts/run_cpu_protocol.sh).\n\n"
    "| run | epochs logged / planned | state |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
)
PY
}
is_done() {  # every planned epoch logged
  [ -f "$1/config.json" ] && [ -f "$1/log.jsonl" ] && python - "$1" <<'PY'
import json, sys
from pathlib import Path
from dfkd_lib.report import planned_epochs
d = Path(sys.argv[1])
n = len((d / "log.jsonl").read_text().splitlines())
sys.exit(0 if n >= planned_epochs(json.loads((d / "config.json").read_text())) else 1)
PY
}

if [ "${STATUS_ONLY:-0}" = 1 ]; then  # only write STATUS.md (say, while runs go on) and show it
  write_status
  cat "$OUT/STATUS.md"
  exit 0
fi

# the order runs start in: runs cut off part-way (a checkpoint to resume from) first, then those
# named in FIRST (that the plan has), then the others; STATUS.md keeps the plan's order
queue=()
for dir in "${dirs[@]}"; do
  [ -f "$dir/checkpoint.pt" ] && queue+=("$dir")
done
for name in $FIRST; do
  for dir in "${dirs[@]}"; do
    [ "${dir##*/}" = "$name" ] && [[ " ${queue[*]} " != *" $dir "* ]] && queue+=("$dir")
  done
done
for dir in "${dirs[@]}"; do
  [[ " ${queue[*]} " == *" $dir "* ]] || queue+=("$dir")
done

failed=0
pids=()  # background runs (JOBS > 1), waited for one by one at the end
for dir in "${queue[@]}"; do
  name=${dir##*/}
  seed=${name##*-s}
  spec=${name%-s*}
  method=${spec%-lf*}
  frac=${spec##*-lf}
  if is_done "$dir"; then
    echo "done already: $dir"
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do  # wait for a free slot
    wait -n || true  # its status is read again below
    write_status
  done
  if [ -n "$stop_at" ] && [ "$(date +%s)" -ge "$stop_at" ]; then
    echo "past UNTIL=$UNTIL: not starting $dir"
    continue
  fi
  teacher=(--teacher "$TEACHER")
  [ "$method" = scratch ] && [ "$PROBE" = 0 ] && teacher=()
  cmd=(python -m dfkd_lib train --method "$method" --recipe "$RECIPE" "${teacher[@]}" --student resnet8 --dataset cifar10
    --epochs "$EPOCHS" --labelled-fraction "$frac" --seed "$seed" --probe-order "$PROBE_ORDER" --out "$dir" --resume)
  if [ "$JOBS" -gt 1 ]; then
    mkdir -p "$dir"
    echo "=== $dir (console: $dir/console.log)"
    "${cmd[@]}" > "$dir/console.log" 2>&1 &
    pids+=($!)
  else
    echo "=== $dir"
    "${cmd[@]}" || failed=1
    write_status
  fi
done
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
write_status
python -m dfkd_lib report --runs "$OUT"
exit $failed
