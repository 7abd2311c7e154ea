"""The benchmark scripts still run against the library (tiny settings: a smoke test, no timing is checked).

A benchmark that no test runs breaks silently when the engine changes: ``bench_train`` once timed the
second version's ``dense`` and ``adv-dense`` without their flow term and failed on ``scratch``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfkd_lib.methods import METHODS

pytestmark = pytest.mark.slow  # three subprocesses that import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_train_times_every_method_with_its_terms_on():
    text = run("bench_train.py", "--rounds", "2", "--pairs", "8:8", "--batch", "8", "--device", "cpu")
    rows = {line[:19].strip(): line[19:].split() for line in text.splitlines()[4:] if line.strip()}
    assert set(rows) == set(METHODS) | {"adv-dense D256,128"}
    assert rows["kd"][2] == "1.00x" and rows["scratch"][1] == "1.00x"
    flops = {m: float(r[4].rstrip("x")) for m, r in rows.items()}  # FLOPs over kd's
    # each term adds operations: a flow-less dense step would count as many FLOPs as kd's
    assert flops["scratch"] < flops["kd"] < flops["dense"] < flops["adv-dense"] < flops["adv-dense D256,128"]
    ops = {m: float(r[5]) for m, r in rows.items()}  # ATen operations dispatched per step
    assert ops["scratch"] < ops["kd"] < ops["dense"] < ops["adv-dense"]
    assert ops["adv-dense D256,128"] == ops["adv-dense"]  # wider discriminators, the same operations


def test_bench_flow_runs():
    assert run("bench_flow.py", "--batch", "4", "--repeats", "1", "--depths", "8", "--device", "cpu").strip()


def test_bench_disc_counts_fewer_operations_for_the_batched_discriminator_step():
    text = run("bench_disc.py", "--batch", "8", "--rounds", "1", "--pairs", "8:8", "--d-hidden", "8", "4")
    ops = {line[:12].strip(): int(line.split()[-3]) for line in text.splitlines() if " ms " in line}
    assert set(ops) == {"engine", "fewer ops"} and 0 < ops["fewer ops"] < ops["engine"]
