#!/usr/bin/env bash
# The GPU check: what only a CUDA GPU can show, with a short report: about 5 minutes on an H200
# (2026-12-04), at most about 10 (each step has its time limit).
#
#   bash scripts/gpu_check.sh            # from the repository root, on a machine with a CUDA GPU
#
# 1. the GPU tests (tests/test_gpu.py, `pytest -m gpu`): a few steps of every method with AMP in
#    bfloat16 and in float16 (with its gradient scaler), resume on CUDA after a kill, dense flows
#    under autocast against float32, DistributedDataParallel with one process on NCCL;
# 2. chapter 2 executed in the gpu profile (the default on a GPU), each training cell's expected
#    time beside the time it took. CIFAR-10 from $DFKD_DATA or data/; without a copy, a generated
#    stand-in of CIFAR-10's size (timing is what this step measures; its accuracies mean nothing);
# 3. benchmarks/bench_train.py on the GPU: time per step of every method, ResNet-26 -> ResNet-8 and
#    ResNet-56 -> ResNet-20 (45 flow items and 45 discriminators: many small kernels), and
#    benchmarks/bench_disc.py: the engine's discriminator step against one with fewer operations.
#
# Writes benchmarks/results/gpu_check.md (the report), gpu_check_tests.txt, bench_train_gpu.txt and
# bench_disc_gpu.txt;
# (GPU_CHECK_OUT=DIR writes them there instead); with GPU_CHECK_KEEP=DIR it also keeps the executed chapter and its log there. The report names
# the commit from git, or from $GIT_COMMIT where the copy has no git (a machine that got the files
# without the repository).
# Installs nothing (GPU machines may be offline): needs torch, pytest, and nbconvert for step 2.
# With pytest-timeout installed, a test that hangs (NCCL, say) fails after 120 s and the rest run.
# Exit status: that of the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-benchmarks/results}  # where the report goes
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU visible to PyTorch: nothing to check" >&2
  exit 2
fi

echo "== 1/3 GPU tests"
per_test=()
python -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 120)
timeout 230 python -m pytest -m gpu tests/test_gpu.py -v -rA -p no:cacheprovider --durations=5 ${per_test[@]+"${per_test[@]}"} \
  > "$OUT/gpu_check_tests.txt" 2>&1
tests_rc=$?
tail -5 "$OUT/gpu_check_tests.txt"

echo "== 2/3 chapter 2 in the gpu profile"
chapter_note=""
if [ -z "${DFKD_DATA:-}" ] && [ ! -f data/cifar10.npz ] && [ ! -d data/cifar-10-batches-py ]; then
  mkdir -p "$WORK/data"
  python - "$WORK/data/cifar10.npz" <<'EOF'
import sys

import numpy as np

from dfkd_lib.data import make_synthetic

d = make_synthetic(10, train_per_class=5000, test_per_class=1000, seed=0)
np.savez(sys.argv[1], x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test, classes=np.array(d.classes))
EOF
  export DFKD_DATA="$WORK/data"
  chapter_note="no CIFAR-10 on this machine: a generated stand-in of its size (dfkd_lib.make_synthetic, 50,000 + 10,000 images) was used, so the times are right and the accuracies mean nothing"
fi
chapter_start=$(date +%s)
if python -c "import nbconvert, ipykernel" 2>/dev/null; then
  (cd book && DFKD_PROFILE=gpu timeout 240 python -m nbconvert --to notebook --execute \
     --output "$WORK/chapter.ipynb" 02_knowledge_distillation.ipynb > "$WORK/chapter.log" 2>&1)
  chapter_rc=$?
else
  chapter_rc=127
  echo "nbconvert or ipykernel is not installed" > "$WORK/chapter.log"
fi
chapter_s=$(( $(date +%s) - chapter_start ))
if [ -n "${GPU_CHECK_KEEP:-}" ]; then
  mkdir -p "$GPU_CHECK_KEEP"
  cp "$WORK/chapter.log" "$GPU_CHECK_KEEP/gpu_check_chapter2.log"
  [ -f "$WORK/chapter.ipynb" ] && cp "$WORK/chapter.ipynb" "$GPU_CHECK_KEEP/gpu_check_chapter2.ipynb"
fi
echo "chapter: exit $chapter_rc in $chapter_s s"

echo "== 3/3 bench_train and bench_disc on the GPU"
timeout 90 python benchmarks/bench_train.py --device cuda --rounds 20 --pairs 26:8 56:20 \
  > "$OUT/bench_train_gpu.txt" 2>&1
bench_rc=$?
tail -3 "$OUT/bench_train_gpu.txt"
timeout 60 python benchmarks/bench_disc.py --device cuda --rounds 20 > "$OUT/bench_disc_gpu.txt" 2>&1
disc_rc=$?
tail -3 "$OUT/bench_disc_gpu.txt"

python - "$OUT" "$WORK" "$tests_rc" "$chapter_rc" "$chapter_s" "$bench_rc" "$(( $(date +%s) - start ))" "$chapter_note" "$disc_rc" <<'EOF'
"""Write the report from the three steps' outputs."""
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

out, work = Path(sys.argv[1]), Path(sys.argv[2])
tests_rc, chapter_rc, chapter_s, bench_rc, total_s = (int(v) for v in sys.argv[3:8])
note, disc_rc = sys.argv[8], int(sys.argv[9])


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    except OSError:  # no git on this machine
        return ""


commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
if not commit:
    commit, dirty = os.environ.get("GIT_COMMIT", "?"), os.environ.get("GIT_DIRTY", "")
p = torch.cuda.get_device_properties(0)
lines = [
    "# GPU check",
    "",
    f"Run by `scripts/gpu_check.sh` on {datetime.date.today()} at commit {commit}"
    + (" (with uncommitted changes)" if dirty else "") + f", in {total_s} s.",
    "",
    f"- GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}; "
    f"bfloat16 {'native' if torch.cuda.is_bf16_supported(including_emulation=False) else 'emulated only: runs take float16'}",
    f"- PyTorch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
    "",
    "## 1. GPU tests (`pytest -m gpu tests/test_gpu.py`)",
    "",
]
log = (out / "gpu_check_tests.txt").read_text().splitlines()
summary = next((x for x in reversed(log) if re.search(r"\d+ (passed|failed|error)", x)), "(no summary: timed out?)")
lines += [f"Exit status {tests_rc}: {summary.strip('= ')}.", ""]
lines += [f"- {x}" for x in log if x.startswith(("FAILED", "ERROR"))]
lines += ["", "Full output: `gpu_check_tests.txt`.", "", "## 2. Chapter 2 in the gpu profile", ""]
if note:
    lines += [f"Data: {note}.", ""]
lines.append(f"Exit status {chapter_rc}, {chapter_s} s in all (kernel start and data loading included).")
executed = work / "chapter.ipynb"
if executed.exists():
    rows = []
    for cell in json.loads(executed.read_text())["cells"]:
        text = "".join(
            "".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream"
        )
        m = re.search(r"expected time: (about [\d.]+ \w+)", text)
        t = cell.get("metadata", {}).get("execution", {})
        if m and "iopub.execute_input" in t:
            parse = datetime.datetime.fromisoformat
            took = (parse(t["shell.execute_reply"].rstrip("Z")) - parse(t["iopub.execute_input"].rstrip("Z")))
            line = next(x for x in text.splitlines() if x.startswith("expected time: "))
            runs = line.split(" for ", 1)[-1].replace(" (book.estimate_seconds)", "")
            rows.append(f"| {m.group(1)} | {took.total_seconds():.0f} s | {runs} |")
    if rows:
        lines += ["", "| expected (book.estimate_seconds) | measured (the cell) | runs |", "| --- | --- | --- |", *rows]
else:
    lines += ["", "```", *(work / "chapter.log").read_text().splitlines()[-15:], "```"]
lines += ["", "## 3. `benchmarks/bench_train.py --device cuda --rounds 20`", "", f"Exit status {bench_rc}.", "", "```"]
lines += (out / "bench_train_gpu.txt").read_text().splitlines()[-40:] + ["```", ""]
lines += ["## 4. `benchmarks/bench_disc.py --device cuda --rounds 20`", "", f"Exit status {disc_rc}.", "", "```"]
lines += (out / "bench_disc_gpu.txt").read_text().splitlines()[-12:] + ["```", ""]
(out / "gpu_check.md").write_text("\n".join(lines))
print(f"report: {out / 'gpu_check.md'}")
EOF
exit $tests_rc
