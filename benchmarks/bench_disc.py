"""The discriminators' share of a training step: one discriminator step and one student step.

Times, on the same random flows, three ways of running the per-item discriminators:

* the library's ``FlowDiscriminators`` (one MLP per item), letting the student's backward pass
  also compute gradients for the discriminators (which must then be dropped);
* the same with the discriminators frozen (``requires_grad_(False)``) for the student's term,
  as ``dfkd_lib.train`` does;
* an alternative kept only here: the MLPs of all items of one matrix shape stacked and run with
  one batched product (``torch.baddbmm``), also frozen.

    python benchmarks/bench_disc.py [--rounds 8] [--pairs 26:8 56:20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import Tensor, nn

from dfkd_lib import losses as L
from dfkd_lib.discriminators import FlowDiscriminators
from dfkd_lib.flow import make_flow_plan
from dfkd_lib.models import cifar_resnet


class StackedDiscriminators(nn.Module):
    """The same per-item MLPs, with the weights of equal-shaped items stacked ``(k, in, out)``."""

    def __init__(self, shapes, hidden=(256, 128)):
        super().__init__()
        groups: dict[tuple[int, int], list[int]] = {}
        for k, s in enumerate(shapes):
            groups.setdefault(tuple(s), []).append(k)
        self.groups = list(groups.values())
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.depth = len(hidden) + 1
        for ks in self.groups:
            m, n = shapes[ks[0]]
            widths = [m * n, *hidden, 1]
            for a, b in zip(widths[:-1], widths[1:]):
                bound = 1 / math.sqrt(a)
                self.weights.append(nn.Parameter(torch.empty(len(ks), a, b).uniform_(-bound, bound)))
                self.biases.append(nn.Parameter(torch.empty(len(ks), 1, b).uniform_(-bound, bound)))

    def forward(self, flows: list[Tensor]) -> list[Tensor]:
        out: list[Tensor | None] = [None] * len(flows)
        for g, ks in enumerate(self.groups):
            x = torch.stack([flows[k] for k in ks]).flatten(2)
            for j in range(self.depth):
                i = g * self.depth + j
                x = torch.baddbmm(self.biases[i], x, self.weights[i])
                if j < self.depth - 1:
                    x = nn.functional.leaky_relu(x, 0.2)
            for k, z in zip(ks, x.squeeze(2)):
                out[k] = z
        return out  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--pairs", nargs="+", default=["26:8", "56:20"], help="teacher:student depths")
    ap.add_argument("--d-hidden", type=int, nargs="+", default=[256, 128])
    args = ap.parse_args()
    hidden = tuple(args.d_hidden)
    print(f"cpu, batch {args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"discriminators {hidden}, median of {args.rounds - 2} rounds (2 warm-up)")  # fmt: skip
    for pair in args.pairs:
        t_depth, s_depth = (int(v) for v in pair.split(":"))
        torch.manual_seed(0)
        plan = make_flow_plan(cifar_resnet(t_depth), cifar_resnet(s_depth), "dense")
        g_t = [torch.rand(args.batch, m, n) for m, n in plan.shapes]
        g_s = [torch.rand(args.batch, m, n, requires_grad=True) for m, n in plan.shapes]
        variants = {
            "one MLP per item, D gradients in the student step": (FlowDiscriminators(plan.shapes, hidden), False),
            "one MLP per item, D frozen (the library)": (FlowDiscriminators(plan.shapes, hidden), True),
            "stacked MLPs (baddbmm), D frozen": (StackedDiscriminators(plan.shapes, hidden), True),
        }
        opts = {k: torch.optim.Adam(d.parameters(), lr=2e-4) for k, (d, _) in variants.items()}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, (d, freeze) in variants.items():
                t = time.perf_counter()
                loss = L.discriminator_loss(d(g_t), d([g.detach() for g in g_s]))
                opts[k].zero_grad()
                loss.backward()
                opts[k].step()
                d.requires_grad_(not freeze)
                adv = L.generator_loss(d(g_s))
                d.requires_grad_(True)
                adv.backward()
                d.zero_grad(set_to_none=True)
                times[k].append(time.perf_counter() - t)
        print(f"\nResNet-{t_depth} -> ResNet-{s_depth}: {len(plan)} items of {len(set(plan.shapes))} shapes")
        base = statistics.median(times[next(iter(times))][2:])
        for k, v in times.items():
            med = statistics.median(v[2:])
            print(f"  {k:<52} {med * 1e3:8.1f} ms  {med / base:5.2f}x")


if __name__ == "__main__":
    main()
