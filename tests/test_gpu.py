"""What only a CUDA GPU can check: mixed precision, resuming on the GPU, flows under autocast, NCCL.

The GPU tests are marked ``gpu`` and skipped without CUDA, so the suite passes on a CPU;
``scripts/gpu_check.sh`` runs them (``pytest -m gpu``) on a GPU machine and writes a report to
``benchmarks/results/`` (the last test checks that, without a GPU, the script stops at once).
The engine picks bfloat16 where the GPU supports it and float16 with a gradient scaler
otherwise (a T4); the float16 path is forced here by making the GPU look as if it had no
bfloat16, so that one GPU tests both.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfkd_lib.train import METHODS, config_for, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TEACHER = "resnet26_cifar10"  # the pretrained teacher shipped with the package

NO_CUDA = not torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU (scripts/gpu_check.sh runs these)")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TIMING = {"wall_s", "train_time_s", "images_per_s"}


def use_dtype(monkeypatch, name: str) -> None:
    """Make the engine choose ``name``: fp16 by hiding bfloat16 support, bf16 only where it exists."""
    if name == "fp16":
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    elif not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bfloat16 (only emulated)")


def small(method: str, **kw):
    """A few steps: 2 epochs (fsp needs two stages) of about 4 batches of generated data, on the GPU."""
    base = dict(student="resnet8", dataset="synthetic", synthetic_per_class=24, epochs=2, batch_size=50,
                device="cuda", amp=True)  # fmt: skip
    return config_for(method, teacher=None if method == "scratch" else TEACHER, **{**base, **kw})


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_takes_mixed_precision_steps(method, dtype, monkeypatch):
    use_dtype(monkeypatch, dtype)
    seen = {}

    def on_start(run):
        seen["amp_dtype"] = run.amp_dtype
        seen["fp16_scaler"] = run.scaler.is_enabled()
        seen["before"] = {k: v.detach().clone() for k, v in run.student.state_dict().items()}

    cfg = small(method)
    res = train(cfg, progress=False, verbose=False, on_start=on_start)
    assert seen["amp_dtype"] == DTYPES[dtype]
    assert seen["fp16_scaler"] == (dtype == "fp16")  # float16 needs loss scaling, bfloat16 does not
    assert len(res.history) == getattr(cfg, "total_epochs", cfg.epochs)  # two-stage: stage 1 on top
    for rec in res.history:
        losses = {k: v for k, v in rec.items() if k.startswith("loss_")}
        assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), rec
        assert 0 <= rec["test_acc"] <= 100
    # the master weights stay float32 on the GPU, and the steps changed them
    params = dict(res.student.named_parameters())
    assert all(p.dtype == torch.float32 and p.is_cuda for p in params.values())
    assert any(not torch.equal(params[k], seen["before"][k]) for k in params)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_resume_on_cuda_after_a_kill_continues_the_run(dtype, tmp_path):
    """Killed after epoch 1 and resumed, a run ends as the same run never interrupted.

    On a GPU some backward kernels (max-pooling among them) add in a nondeterministic order, so
    the two runs agree to rounding, not bit for bit: losses to 1e-3 relative, accuracies to a
    point. Checked exactly: the checkpoint's epoch and history, and that it holds the gradient
    scaler's state (float16) and the CUDA generator states; both logs have the same keys. That
    they are restored on resume is checked on a CPU, in tests/test_train.py.
    """
    if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bfloat16 (only emulated)")
    script = str(ROOT / "tests" / "scripts" / "gpu_killed_run.py")
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.run([sys.executable, script, str(killed), "1", dtype], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr[-3000:]
    from dfkd_lib.checkpoint import safe_load

    ck = safe_load(killed / "checkpoint.pt")
    assert ck["epoch"] == 0 and len(ck["history"]) == 1 and "cuda" in ck["rng"]
    if dtype == "fp16":
        assert ck["scaler"] and ck["scaler"]["scale"] > 0
    for out, kill in ((killed, "99"), (full, "99")):  # resume the killed run; run the other uninterrupted
        proc = subprocess.run([sys.executable, script, str(out), kill, dtype], env=ENV, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2, 3]
    assert a[0] == ck["history"][0]  # epoch 1 as the checkpoint knows it
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys(), ra["epoch"]
        for key in ra.keys() - TIMING:
            if key.startswith(("loss_", "lr")):
                assert ra[key] == pytest.approx(rb[key], rel=1e-3), (ra["epoch"], key)
            elif key.endswith("acc") or key.startswith("d_acc"):
                assert ra[key] == pytest.approx(rb[key], abs=1.0), (ra["epoch"], key)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", list(DTYPES))
@torch.no_grad()
def test_flows_under_autocast_equal_float32(dtype):
    """Dense flows of the shipped teacher and a ResNet-8, from taps computed under autocast, match
    float32 within the precision of the type: as the engine computes them (taps cast to float32,
    products outside autocast) and, in bfloat16, entirely under autocast."""
    if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bfloat16 (only emulated)")
    from dfkd_lib import cifar_resnet, load_pretrained, make_flow_plan
    from dfkd_lib.losses import flow_loss

    torch.manual_seed(0)
    teacher = load_pretrained(TEACHER).cuda().eval()
    student = cifar_resnet(8).cuda().eval()
    plan = make_flow_plan(teacher, student, pairs="dense")
    x = torch.randn(64, 3, 32, 32, device="cuda")
    tol = {"bf16": 2e-2, "fp16": 5e-3}[dtype]  # measured on a CPU: 4e-3 and 5e-4 at most
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # a true float32 reference
    try:
        t32, s32 = teacher(x, return_taps=True)[1], student(x, return_taps=True)[1]
        g32, h32 = plan.teacher_flows(t32), plan.student_flows(s32)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    with torch.autocast("cuda", dtype=DTYPES[dtype]):
        t16, s16 = teacher(x, return_taps=True)[1], student(x, return_taps=True)[1]
        inside = plan.teacher_flows(t16)
    assert t16[-1].dtype == DTYPES[dtype]
    engine = plan.teacher_flows([t.float() for t in t16])
    h_engine = plan.student_flows([s.float() for s in s16])
    # entirely under autocast only in bfloat16: a float16 product of two 32 x 32 maps can pass
    # float16's largest value (65504) before it is divided by 32^2, which is why the engine
    # computes the flows in float32
    checked = [("engine", engine)] + ([("inside autocast", inside)] if dtype == "bf16" else [])
    for name, flows in checked:
        for k, (a, b) in enumerate(zip(flows, g32)):
            rel = float((a.float() - b).norm() / b.norm())
            assert rel < tol, f"{name}: item {plan.names[k]} differs by {rel:.2e} relative"
    l32, l16 = float(flow_loss(g32, h32)), float(flow_loss(engine, h_engine))
    assert l16 == pytest.approx(l32, rel=tol)


@pytest.mark.gpu
@needs_cuda
def test_ddp_with_one_process_on_nccl_matches_plain_training(tmp_path):
    """torchrun with one process: NCCL initialises, and DistributedDataParallel around the library's
    ResNet-8 takes the same steps as the bare model (an all-reduce over one rank changes nothing).
    The engine itself takes its DDP path only with two or more processes, which needs two GPUs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=29531",
           str(ROOT / "tests" / "scripts" / "gpu_ddp_one.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ddp.json").read_text())
    assert result["backend"] == "nccl" and result["world_size"] == 1
    assert result["all_reduce"] == 3.0
    assert result["max_weight_difference"] <= 1e-6
    assert result["engine_epochs"] == 1 and result["engine_device"].startswith("cuda")


@pytest.mark.skipif(not NO_CUDA, reason="on a GPU the script runs for minutes")
def test_gpu_check_script_stops_at_once_without_a_gpu():
    """scripts/gpu_check.sh checks for CUDA first: here it says so and exits 2, writing no report."""
    report = ROOT / "benchmarks" / "results" / "gpu_check.md"
    before = report.read_text() if report.exists() else None
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr
    assert (report.read_text() if report.exists() else None) == before
