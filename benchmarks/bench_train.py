"""Time per training step of every method, relative to ``scratch`` and to ``kd``.

For each teacher -> student pair, every method's engine (:class:`dfkd_lib.train.Run`, the
same code ``train`` runs) takes steps on the same batches, methods interleaved round by round
so that all see the same machine load. Prints the median milliseconds per step and the ratios (with one discriminator step every other
student step, as in the second version's recipes, an even number of timed steps makes the median
about the mean of a step with and one without it).
The target for the full objective (``adv-dense``) is at most 1.25x a ``kd`` step. Extra
``adv-dense`` rows time other discriminator sizes (``--d-variants``) side by side.

Beside the times, each method's floating-point operations per step (convolutions and matrix
products) and the number of ATen operations it dispatches per step (every kernel PyTorch runs,
forward, backward and optimiser). On a GPU these small networks are bound by the second, not the
first: on an H200 a step took 15 to 25 microseconds per operation whatever the method
(``results/gpu_check.md``), so the operation count, which any machine can measure, predicts a
method's GPU step time where its FLOPs do not. (On a CPU the optimisers update one tensor at a
time, so their share of the count is larger there than on a GPU, where they update all at once.)

    python benchmarks/bench_train.py [--batch 128] [--rounds 8] [--pairs 26:8 56:20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from dfkd_lib.data import get_loaders, make_synthetic
from dfkd_lib.losses import initial_flow_loss
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import METHODS, RECIPES, Run, TrainConfig, config_for

DEFAULT_D_HIDDEN = TrainConfig().d_hidden  # what every method uses unless told otherwise


class CountFlops(TorchDispatchMode):
    """FLOPs of the convolutions and matrix products run inside it, by PyTorch's own formulas
    (those of ``FlopCounterMode``, whose module tracking cannot follow the ``autograd.grad`` of
    the R1 penalty), and the number of ATen operations dispatched (``ops``)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8, help="timed steps per method (after one warm-up step)")
    ap.add_argument("--pairs", nargs="+", default=["26:8", "56:20"], help="teacher:student depths")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--d-hidden", type=int, nargs="+", default=None, help="discriminator hidden widths")
    ap.add_argument(
        "--d-variants", nargs="*", default=["256,128"],
        help="extra adv-dense rows with these discriminator hidden widths (comma-separated), timed side by side",
    )  # fmt: skip
    args = ap.parse_args()
    device = torch.device(args.device)
    data = make_synthetic(10, train_per_class=(args.rounds + 2) * args.batch // 10 + 1, test_per_class=2)
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.rounds} steps, discriminators {tuple(args.d_hidden or DEFAULT_D_HIDDEN)}")  # fmt: skip
    for pair in args.pairs:
        t_depth, s_depth = (int(v) for v in pair.split(":"))
        torch.manual_seed(0)  # the same random networks whatever else runs first
        loaders = get_loaders(data, batch_size=args.batch, val_size=0, device=device, channels_last=True)
        batches = list(loaders.train)[: args.rounds + 1]
        # A random teacher whose batch-norm statistics are measured on the data, so that its
        # activations are normalised as a trained network's are; timing does not depend on
        # the weights.
        teacher = cifar_resnet(t_depth).to(device)
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average
        with torch.no_grad():
            for x, _ in batches:
                teacher(x)
        teacher.eval()
        # A recipe that types its flow weight (fsp; the first version's dense and adv-dense) suits
        # the trained teacher; this random one has far larger flows. Such weights are set so that
        # the flow term starts at 1, else the first steps can overflow. The second version's recipes
        # measure theirs by the gradient rule (calibrate, as train does). Timing does not depend on
        # the value, but a weight of 0 would switch the term off and time another step.
        x0 = batches[0][0]
        lam_flow = 1.0 / initial_flow_loss(teacher, cifar_resnet(s_depth).to(device), x0)
        runs = {}
        for m in args.methods:
            lam = lam_flow if RECIPES[m].get("lambda_flow", 0.0) > 0 else 0.0
            extra = {"d_hidden": tuple(args.d_hidden)} if args.d_hidden else {}
            given = None if m == "scratch" else "given"  # the teacher object is passed in below
            cfg = config_for(
                m, teacher=given, student=f"resnet{s_depth}", device=str(device), epochs=2, lambda_flow=lam, **extra
            )
            run = Run(cfg, loaders, None if m == "scratch" else teacher, progress=False)
            run.calibrate()  # the gradient rule's flow weight, where the recipe asks for it
            runs[m] = (run, run.flags(run.stage(0)))  # fsp: its first stage (flow only)
            if "flow" in run.method.terms and not runs[m][1]["flow"]:
                raise RuntimeError(f"{m}: its flow term would be off, so this would time another step")
        for v in args.d_variants if "adv-dense" in args.methods else []:
            hidden = tuple(int(h) for h in v.split(","))
            cfg = config_for("adv-dense", teacher="given", student=f"resnet{s_depth}", device=str(device), epochs=2,
                             lambda_flow=lam_flow, d_hidden=hidden)  # fmt: skip
            run = Run(cfg, loaders, teacher, progress=False)
            run.calibrate()
            runs[f"adv-dense D{v}"] = (run, run.flags(0))
        times = {m: [] for m in runs}
        for k, (x, y) in enumerate(batches):
            for m, (run, flags) in runs.items():
                sync(device)
                t = time.perf_counter()
                run.train_step(x, y, flags)
                sync(device)
                if k > 0:  # the first step warms up
                    times[m].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        flops, ops = {}, {}
        for m, (run, flags) in runs.items():  # more steps, counted instead of timed: as many as
            n = run.cfg.d_every  # one discriminator step takes, so each counts its share of it
            with CountFlops() as counter:
                for j in range(n):
                    run.train_step(*batches[j % len(batches)], flags)
            flops[m], ops[m] = counter.total / n, counter.ops / n
        print(f"\nResNet-{t_depth} -> ResNet-{s_depth}")
        print(f"{'method':<19} {'ms/step':>8} {'/scratch':>9} {'/kd':>6} {'GFLOP':>7} {'FLOP /kd':>9} {'ops':>6} "
              f"{'us/op':>6}")  # fmt: skip
        for m, v in med.items():
            kd = f"{v / med['kd']:>5.2f}x" if "kd" in med else "   -"
            sc = f"{v / med['scratch']:>8.2f}x" if "scratch" in med else "       -"
            fl = f"{flops[m] / flops['kd']:>8.2f}x" if "kd" in flops else "       -"
            print(
                f"{m:<19} {v * 1e3:>8.1f} {sc} {kd} {flops[m] / 1e9:>7.1f} {fl} {ops[m]:>6.0f} {v * 1e6 / ops[m]:>6.1f}"
            )


if __name__ == "__main__":
    main()
