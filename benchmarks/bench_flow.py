"""Speed of the batched dense flow (one product per resolution) against the per-pair loop.

For the taps of ResNet-8, ResNet-14 and ResNet-26 at batch 128 (all ``dense`` pairs of each
network's own taps), times the flow items' forward pass, and forward plus backward, of both
implementations, alternating them so that both see the same machine load, and prints the
median times and their ratio.

    python benchmarks/bench_flow.py [--batch 128] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dfkd_lib.flow import dense_flows, flows_loop, make_pairs
from dfkd_lib.models import cifar_resnet


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 14, 26])
    ap.add_argument(
        "--memory-format", choices=["contiguous", "channels_last"], default="channels_last",
        help="layout of the taps (training uses channels_last)",
    )  # fmt: skip
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(
        f"device {device}, batch {args.batch}, taps {args.memory_format}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print(
        f"{'network':<10} {'taps':>4} {'items':>5} | {'loop fwd':>9} {'batched':>8} {'ratio':>6} | {'loop f+b':>9} {'batched':>8} {'ratio':>6}"
    )
    for depth in args.depths:
        model = cifar_resnet(depth).to(device)
        with torch.no_grad():
            _, taps = model(torch.randn(args.batch, 3, 32, 32, device=device), return_taps=True)
        fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
        taps = [t.detach().contiguous(memory_format=fmt).requires_grad_(True) for t in taps]
        pairs = make_pairs("dense", model.tap_stages)

        def fwd(fn, taps=taps, pairs=pairs):
            with torch.no_grad():
                fn(taps, pairs)

        def fwd_bwd(fn, taps=taps, pairs=pairs):
            loss = sum(g.square().sum() for g in fn(taps, pairs))
            loss.backward()
            for t in taps:
                t.grad = None

        row = {}
        for mode, run in (("fwd", fwd), ("fb", fwd_bwd)):
            for fn in (flows_loop, dense_flows):  # warm-up
                run(fn)
            times = {flows_loop: [], dense_flows: []}
            for _ in range(args.repeats):
                for fn in (flows_loop, dense_flows):
                    times[fn].append(timed(lambda fn=fn, run=run: run(fn), device))
            row[mode] = (statistics.median(times[flows_loop]), statistics.median(times[dense_flows]))
        (lf, bf), (lb, bb) = row["fwd"], row["fb"]
        print(
            f"ResNet-{depth:<3} {len(taps):>4} {len(pairs):>5} | {lf * 1e3:>7.1f}ms {bf * 1e3:>6.1f}ms {lf / bf:>5.2f}x"
            f" | {lb * 1e3:>7.1f}ms {bb * 1e3:>6.1f}ms {lb / bb:>5.2f}x"
        )


if __name__ == "__main__":
    main()
