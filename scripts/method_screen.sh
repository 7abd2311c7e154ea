#!/usr/bin/env bash
# The method screen of the second version (issue "Make adversarial dense flow earn its place"):
# short runs of ResNet-26 (the shipped teacher) -> ResNet-8 on CIFAR-10, judged on the validation
# split only, one choice at a time, with scratch, kd and the first version's adv-dense beside them.
# Every run gets the teacher, so that runs without a flow term log the flow distances as a probe.
# Resumable: a run whose log is complete is skipped, a killed one continues from its checkpoint.
# Logs land in results/method-screen/<setting>-s<seed>/ (config.json, log.jsonl, data.json).
# The settings spell out their options on top of the first version's recipes (--recipe 1), as they
# ran; the second version's recipes were then set from this screen.
#
#   bash scripts/method_screen.sh                                  # every setting, seeds 0 and 1
#   SETTINGS="scratch kd" SEEDS="0" bash scripts/method_screen.sh  # a subset
#   JOBS=2 bash scripts/method_screen.sh                           # two runs at a time, one thread each
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
OUT=${OUT:-results/method-screen}
SEEDS=${SEEDS:-"0 1"}
JOBS=${JOBS:-1}
TEACHER=${TEACHER:-resnet26_cifar10}
# the first version's recipes, spelled out so that later recipe changes leave these settings as they ran
V1_DENSE="--pairs dense --lambda-flow 5e-4 --flow-norm none"
V1_ADV="--lambda-adv 0.01 --spectral-norm --d-hidden 64 32 --d-input raw --d-noise 0 --d-r1 0 --d-every 1"
declare -A ARGS=(
  # controls
  [scratch]="--method scratch"
  [kd]="--method kd"
  [adv-dense-v1]="--method adv-dense $V1_DENSE $V1_ADV"
  [dense-v1]="--method dense $V1_DENSE"
  # 1. the flow term: items balanced by the teacher's norm, weight by the gradient rule (the first
  # version's lambda_flow = 5e-4 is a gradient ratio of 7.0 by this rule, measured on its first batches)
  [dense-tn-g0.3]="--method dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3"
  [dense-tn-g1]="--method dense --pairs dense --flow-norm teacher --flow-grad-ratio 1"
  [dense-tn-g3]="--method dense --pairs dense --flow-norm teacher --flow-grad-ratio 3"
  [dense-tn-g10]="--method dense --pairs dense --flow-norm teacher --flow-grad-ratio 10"
  [dense-item-g1]="--method dense --pairs dense --flow-norm item --flow-grad-ratio 1"
  # 2. discriminators that stay informative (on the flow term chosen in 1)
  [adv-dense-unit]="--method adv-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3 --lambda-adv 0.01 --spectral-norm --d-input unit"
  [adv-dense-unit-noise]="--method adv-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3 --lambda-adv 0.01 --spectral-norm --d-input unit --d-noise 1"
  [adv-dense-unit-r1]="--method adv-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3 --lambda-adv 0.01 --spectral-norm --d-input unit --d-r1 1 --d-every 2"
  # the pilots (3-5 epochs of 50 batches) found every discriminator above 95 % within 250 steps at
  # lambda_adv 0.01 or 0.1; at lambda_adv 1 (with R1 and every other step) it rose slowest and the
  # student's accuracy was the same
  [adv-dense-unit-r1-a1]="--method adv-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3 --lambda-adv 1 --spectral-norm --d-input unit --d-r1 1 --d-every 2"
  # 3. fsp at an equal budget: a flow-only stage at a small learning rate, then scratch's epochs
  [fsp-v2]="--method fsp --pairs sparse --lambda-flow 1e-3 --two-stage --stage1-epochs 2 --stage1-lr 0.01"
  # 4. Hinton KD with the flow term and the discriminators chosen above
  [kd-dense-tn-g0.3]="--method kd-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3"
  [kd-adv-dense-unit-r1-a1]="--method kd-adv-dense --pairs dense --flow-norm teacher --flow-grad-ratio 0.3 --lambda-adv 1 --spectral-norm --d-input unit --d-r1 1 --d-every 2"
)
SETTINGS=${SETTINGS:-"scratch adv-dense-v1 kd dense-v1 dense-tn-g0.3 dense-tn-g1 dense-tn-g3 dense-tn-g10"}
for name in $SETTINGS; do  # every name is checked before anything runs
  if [ -z "${ARGS[$name]+set}" ]; then
    echo "unknown setting: $name (known: ${!ARGS[*]})" >&2
    exit 2
  fi
done
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))
fi
failed=0
for seed in $SEEDS; do
  for name in $SETTINGS; do
    dir="$OUT/$name-s$seed"
    planned=$EPOCHS
    [[ " ${ARGS[$name]} " == *" --two-stage "* ]] && planned=$(( EPOCHS + $(sed -E 's/.*--stage1-epochs ([0-9]+).*/\1/' <<< "${ARGS[$name]}") ))
    if [ -f "$dir/log.jsonl" ] && [ "$(wc -l < "$dir/log.jsonl")" -ge "$planned" ]; then
      echo "done already: $dir"
      continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
    mkdir -p "$dir"
    echo "=== $dir (console: $dir/console.log)"
    # shellcheck disable=SC2086
    python -m dfkd_lib train --recipe 1 ${ARGS[$name]} --teacher "$TEACHER" --student resnet8 --dataset cifar10 \
      --epochs "$EPOCHS" --seed "$seed" --probe-order first --out "$dir" --resume > "$dir/console.log" 2>&1 &
  done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
exit $failed
