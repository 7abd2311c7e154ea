"""Time per training step of every method, relative to ``scratch`` and to ``kd``.

For each teacher -> student pair, every method's engine (:class:`dfkd_lib.train._Run`, the
same code ``train`` runs) takes steps on the same batches, methods interleaved round by round
so that all see the same machine load. Prints the median milliseconds per step and the ratios.
The target for the full objective (``adv-dense``) is at most 1.25x a ``kd`` step. Extra
``adv-dense`` rows time other discriminator sizes (``--d-variants``) side by side.

    python benchmarks/bench_train.py [--batch 128] [--rounds 8] [--pairs 26:8 56:20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dfkd_lib.data import get_loaders, make_synthetic
from dfkd_lib.losses import initial_flow_loss
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import METHODS, RECIPES, TrainConfig, _Run, config_for

DEFAULT_D_HIDDEN = TrainConfig().d_hidden  # what every method uses unless told otherwise


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
        # The recipes' flow weights suit the trained teacher; this random one has far larger
        # flows. Set every flow weight so that the flow term starts at 1 (the recipes' rule),
        # else the first steps can overflow. Timing does not depend on the value.
        x0 = batches[0][0]
        lam_flow = 1.0 / initial_flow_loss(teacher, cifar_resnet(s_depth).to(device), x0)
        runs = {}
        for m in args.methods:
            lam = lam_flow if RECIPES[m].get("lambda_flow", 0.0) > 0 else 0.0
            extra = {"d_hidden": tuple(args.d_hidden)} if args.d_hidden else {}
            cfg = config_for(
                m, teacher="given", student=f"resnet{s_depth}", device=str(device), epochs=2, lambda_flow=lam, **extra
            )
            run = _Run(cfg, loaders, teacher if m != "scratch" else None, progress=False)
            runs[m] = (run, run.flags(run.stage(0)))  # fsp: its first stage (flow only)
        for v in args.d_variants if "adv-dense" in args.methods else []:
            hidden = tuple(int(h) for h in v.split(","))
            cfg = config_for("adv-dense", teacher="given", student=f"resnet{s_depth}", device=str(device), epochs=2,
                             lambda_flow=lam_flow, d_hidden=hidden)  # fmt: skip
            run = _Run(cfg, loaders, teacher, progress=False)
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
        flops = {}
        for m, (run, flags) in runs.items():  # one more step each, counted instead of timed
            with FlopCounterMode(display=False) as counter:
                run.train_step(*batches[0], flags)
            flops[m] = counter.get_total_flops()
        print(f"\nResNet-{t_depth} -> ResNet-{s_depth}")
        print(f"{'method':<17} {'ms/step':>8} {'/scratch':>9} {'/kd':>6} {'GFLOP':>7} {'FLOP /kd':>9}")
        for m, v in med.items():
            kd = f"{v / med['kd']:>5.2f}x" if "kd" in med else "   -"
            sc = f"{v / med['scratch']:>8.2f}x" if "scratch" in med else "       -"
            fl = f"{flops[m] / flops['kd']:>8.2f}x" if "kd" in flops else "       -"
            print(f"{m:<17} {v * 1e3:>8.1f} {sc} {kd} {flops[m] / 1e9:>7.1f} {fl}")


if __name__ == "__main__":
    main()
