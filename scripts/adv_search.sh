#!/usr/bin/env bash
# Validation-only search for the adversarial settings used by the CPU protocol's adv and adv-dense
# runs: short runs (4 epochs, seed 0) of ResNet-26 -> ResNet-8, compared on the validation split
# (never on the test set). Each setting's log lands in results/adv-search/<name>/.
#
#   bash scripts/adv_search.sh                  # every setting below (about 40 min on one core)
#   SETTINGS="dense adv-dense" bash scripts/adv_search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-4}
OUT=${OUT:-results/adv-search}
declare -A ARGS=(
  [dense]="--method dense"
  [adv-dense]="--method adv-dense"
  [adv-dense-la0.01]="--method adv-dense --lambda-adv 0.01"
  [adv-dense-sn]="--method adv-dense --spectral-norm"
  [adv-dense-lsgan]="--method adv-dense --gan-loss lsgan"
  [adv-dense-d64]="--method adv-dense --d-hidden 64 32"
)
SETTINGS=${SETTINGS:-"dense adv-dense adv-dense-la0.01 adv-dense-sn adv-dense-lsgan adv-dense-d64"}
for name in $SETTINGS; do
  dir="$OUT/$name"
  if [ -f "$dir/log.jsonl" ] && [ "$(wc -l < "$dir/log.jsonl")" -ge "$EPOCHS" ]; then
    echo "done already: $dir"
    continue
  fi
  echo "=== $dir"
  # shellcheck disable=SC2086
  python -m dfkd_lib train ${ARGS[$name]} --teacher resnet26_cifar10 --student resnet8 --dataset cifar10 \
    --epochs "$EPOCHS" --seed 0 --out "$dir" --resume
done
