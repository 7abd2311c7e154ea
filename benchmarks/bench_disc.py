"""The discriminators' share of a training step, as the engine runs them and with fewer operations.

On a GPU these small networks are bound by the operations a step dispatches, not by its
arithmetic (``results/README.md``: 15 to 25 microseconds per operation on an H200, and an
``adv-dense`` step 4.2 times a ``kd`` step). This script times the adversarial part of a step of
the current recipe (``config_for("adv-dense")``: spectral-norm discriminators, the R1 penalty,
unit-norm inputs) two ways, on the same flows, interleaved round by round, and counts the ATen
operations each dispatches:

* **engine**: what :mod:`dfkd_lib.train` does, a discriminator step (teacher flows and student
  flows through the discriminators one after the other, the R1 penalty item by item) and the
  student's adversarial term, with its backward pass;
* **fewer ops**: the same losses with the real and fake flows through the discriminators in one
  batch, the R1 penalty's gradients in one call, and the student's term with the discriminators
  in eval mode, so that spectral norm runs no power iteration for it.

The second is not the engine's: spectral norm's power iteration then runs once per discriminator
step instead of twice, and not during the student's term, which changes the runs' numbers. It is
kept here, measured, for when the 60-epoch protocol (run on the engine as it is) is complete.

    python benchmarks/bench_disc.py [--rounds 8] [--pairs 26:8 56:20] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dfkd_lib import losses as L
from dfkd_lib.data import get_loaders, make_synthetic
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import Run, config_for


class CountOps(TorchDispatchMode):
    """The number of ATen operations dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def engine(run: Run, g_t: list[torch.Tensor], g_s: list[torch.Tensor]) -> None:
    """The engine's discriminator step, then the student's adversarial term and its backward pass."""
    run.discriminator_step(g_t, g_s)
    run.adversarial_term(g_s).backward()


def fewer_ops(run: Run, g_t: list[torch.Tensor], g_s: list[torch.Tensor]) -> None:
    """The same losses with fewer operations (see the module's docstring for what differs)."""
    cfg, disc, n = run.cfg, run.disc, len(g_t[0])
    real_in = run.disc_inputs([g.detach() for g in g_t])
    fake_in = run.disc_inputs([g.detach() for g in g_s])
    if cfg.d_r1 > 0:
        real_in = [g.requires_grad_(True) for g in real_in]
    both = disc([torch.cat([r, f]) for r, f in zip(real_in, fake_in)])
    real, fake = [z[:n] for z in both], [z[n:] for z in both]
    d_loss = L.discriminator_loss(real, fake, cfg.gan_loss)
    if cfg.d_r1 > 0:  # each logit depends on its own item only: one call gives every item's gradient
        grads = torch.autograd.grad(sum(r.sum() for r in real), real_in, create_graph=True)
        d_loss = d_loss + cfg.d_r1 / 2 * sum(g.pow(2).flatten(1).sum(1).mean() for g in grads)
    run.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    run.opt_d.step()
    disc.eval().requires_grad_(False)  # eval: spectral norm uses its vectors as they are
    adv = cfg.lambda_adv * L.generator_loss(disc(run.disc_inputs(g_s)), cfg.gan_loss)
    disc.train().requires_grad_(True)
    adv.backward()


VARIANTS = {"engine": engine, "fewer ops": fewer_ops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds (after two warm-up rounds)")
    ap.add_argument("--pairs", nargs="+", default=["26:8", "56:20"], help="teacher:student depths")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--d-hidden", type=int, nargs="+", default=None, help="discriminator widths (default: the recipe's)"
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    data = make_synthetic(10, train_per_class=args.batch // 10 + 1, test_per_class=2)
    print(f"{device}, batch {args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.rounds} rounds (2 warm-up); ops counted on this device")  # fmt: skip
    for pair in args.pairs:
        t_depth, s_depth = (int(v) for v in pair.split(":"))
        torch.manual_seed(0)
        loaders = get_loaders(data, batch_size=args.batch, val_size=0, device=device)
        x, _ = next(iter(loaders.train))
        teacher = cifar_resnet(t_depth).to(device).eval()
        extra = {"d_hidden": tuple(args.d_hidden)} if args.d_hidden else {}
        runs = {}
        for name in VARIANTS:
            torch.manual_seed(0)  # the same discriminators for both
            cfg = config_for("adv-dense", teacher="given", student=f"resnet{s_depth}", device=str(device), epochs=2,
                             **extra)  # fmt: skip
            runs[name] = Run(cfg, loaders, teacher, progress=False)
            runs[name].calibrate()  # as train does: the flow weight and each item's scale
        with torch.no_grad():
            t_taps = teacher(x, return_taps=True)[1]
        student = runs["engine"].student
        s_taps = student(x, return_taps=True)[1]
        g_t, g_s = runs["engine"]._flows(t_taps, s_taps)
        g_t = [g.detach() for g in g_t]
        g_s = [g.detach().requires_grad_(True) for g in g_s]  # the student's flows, as if from its graph
        times: dict[str, list[float]] = {k: [] for k in VARIANTS}
        for k in range(args.rounds + 2):
            for name, step in VARIANTS.items():
                sync()
                t = time.perf_counter()
                step(runs[name], g_t, g_s)
                sync()
                if k >= 2:
                    times[name].append(time.perf_counter() - t)
                for g in g_s:
                    g.grad = None
        ops = {}
        for name, step in VARIANTS.items():
            with CountOps() as counter:
                step(runs[name], g_t, g_s)
            ops[name] = counter.n
        plan = runs["engine"].plan
        print(f"\nResNet-{t_depth} -> ResNet-{s_depth}: {len(plan)} flow items, discriminators "
              f"{runs['engine'].cfg.d_hidden}, spectral norm {runs['engine'].cfg.spectral_norm}, "
              f"R1 {runs['engine'].cfg.d_r1}")  # fmt: skip
        base = statistics.median(times["engine"])
        for name in VARIANTS:
            med = statistics.median(times[name])
            print(
                f"  {name:<10} {med * 1e3:8.2f} ms  {med / base:5.2f}x  {ops[name]:6d} ops  {ops[name] / ops['engine']:5.2f}x"
            )


if __name__ == "__main__":
    main()
