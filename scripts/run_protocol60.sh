#!/usr/bin/env bash
# The 60-epoch protocol (issue "A protocol the field would accept"): ResNet-26 (the 80-epoch
# teacher resnet26_cifar10_e80) -> ResNet-8 on CIFAR-10, 60 epochs, the current (second) recipes of dfkd_lib/methods.py,
# seeds 0, 1, 2: all labels for scratch, kd, fsp, dense, adv-dense, kd-adv-dense; 10 % of the labels
# for scratch, kd, adv-dense, kd-adv-dense. 30 runs; two at a time at one thread each, on 2 cores
# scratch trains about 1,070 images/s (about 50 minutes a run), kd about 550 (about 90 minutes), the
# flow and adversarial methods less: plan it over several sessions; it resumes where it was cut off. Every run gets the teacher
# (scratch too, as a probe of the flow distances). Results and STATUS.md: results/cpu60/.
#
#   JOBS=2 bash scripts/run_protocol60.sh
#   UNTIL="tomorrow 00:20" JOBS=2 bash scripts/run_protocol60.sh   # start nothing after 00:20
set -euo pipefail
cd "$(dirname "$0")/.."
#
# The runs that chapter 7 and the preface need before they lead with this protocol (3 seeds of
# adv-dense, scratch, kd and fsp with all labels: report.LEAD_METHODS) start first; the order changes
# nothing in a run, only which are done when a session ends.
EPOCHS=60 RECIPE=2 OUT=${OUT:-results/cpu60} TEACHER=${TEACHER:-resnet26_cifar10_e80} PROBE=1 \
  FIRST=${FIRST:-"adv-dense-lf1.0-s1 scratch-lf1.0-s2 kd-lf1.0-s2 fsp-lf1.0-s2 adv-dense-lf1.0-s2"} \
  RUNS=${RUNS:-"scratch kd fsp dense adv-dense kd-adv-dense scratch:0.1 kd:0.1 adv-dense:0.1 kd-adv-dense:0.1"} \
  exec bash scripts/run_cpu_protocol.sh
