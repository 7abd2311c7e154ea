#!/usr/bin/env bash
# Validation-only search for the adversarial settings used by the CPU protocol's adv and adv-dense
# runs: short runs (4 epochs, seed 0) of ResNet-26 -> ResNet-8, compared on the validation split
# (never on the test set). Each setting's log lands in results/adv-search/<name>/.
#
#   bash scripts/adv_search.sh                  # every setting below (about 80 min on one core)
#   SETTINGS="dense adv-dense" bash scripts/adv_search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-4}
OUT=${OUT:-results/adv-search}
# round 1: the first recipe (lambda_A 0.1, BCE, 256x128 discriminators) and one change at a time;
# round 2: lambda_A 0.01 (the only round-1 change that kept the student near dense) with each other change
declare -A ARGS=(
  [dense]="--method dense"
  [adv-dense]="--method adv-dense --lambda-adv 0.1 --gan-loss bce --d-hidden 256 128 --no-spectral-norm"
  [adv-dense-la0.01]="--method adv-dense --lambda-adv 0.01 --gan-loss bce --d-hidden 256 128 --no-spectral-norm"
  [adv-dense-sn]="--method adv-dense --lambda-adv 0.1 --gan-loss bce --d-hidden 256 128 --spectral-norm"
  [adv-dense-la0.01-sn]="--method adv-dense --lambda-adv 0.01 --gan-loss bce --d-hidden 256 128 --spectral-norm"
  [adv-dense-la0.01-lsgan]="--method adv-dense --lambda-adv 0.01 --gan-loss lsgan --d-hidden 256 128 --no-spectral-norm"
  [adv-dense-la0.01-d64]="--method adv-dense --lambda-adv 0.01 --gan-loss bce --d-hidden 64 32 --no-spectral-norm"
  [adv-dense-la0.01-sn-d64]="--method adv-dense --lambda-adv 0.01 --gan-loss bce --d-hidden 64 32 --spectral-norm"
)
SETTINGS=${SETTINGS:-"dense adv-dense adv-dense-la0.01 adv-dense-sn adv-dense-la0.01-sn adv-dense-la0.01-lsgan adv-dense-la0.01-d64 adv-dense-la0.01-sn-d64"}
source scripts/_search.sh
