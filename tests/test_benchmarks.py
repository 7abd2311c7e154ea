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


def test_bench_flow_times_both_implementations_for_each_depth():
    text = run("bench_flow.py", "--batch", "4", "--repeats", "1", "--depths", "8", "14", "--device", "cpu")
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("ResNet-")}
    assert set(rows) == {"ResNet-8", "ResNet-14"}
    # taps: the stem and one a block (1 + 3 n for depth 6 n + 2); dense items: pairs of taps
    assert rows["ResNet-8"][1:3] == ["4", "6"] and rows["ResNet-14"][1:3] == ["7", "21"]
    for cells in rows.values():  # two times and their ratio, forward then forward + backward
        times = [float(c.removesuffix("ms")) for c in cells if c.endswith("ms")]
        ratios = [float(c.removesuffix("x")) for c in cells if c.endswith("x")]
        assert len(times) == 4 and len(ratios) == 2 and min(times) >= 0 and min(ratios) > 0


def test_bench_disc_counts_fewer_operations_for_the_batched_discriminator_step():
    text = run("bench_disc.py", "--batch", "8", "--rounds", "1", "--pairs", "8:8", "--d-hidden", "8", "4")
    ops = {line[:12].strip(): int(line.split()[-3]) for line in text.splitlines() if " ms " in line}
    assert set(ops) == {"engine", "fewer ops"} and 0 < ops["fewer ops"] < ops["engine"]
