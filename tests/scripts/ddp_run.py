"""Run under torchrun: train on generated data with DDP (gloo) and save this rank's weights."""

import os
import sys

import torch

from dfkd_lib.train import config_for, train

out = sys.argv[1]
teacher = sys.argv[2]
cfg = config_for(
    "adv-dense", teacher=teacher, student="resnet8", dataset="synthetic", synthetic_per_class=40, epochs=2,
    batch_size=32, device="cpu", out_dir=os.path.join(out, "run"),
)  # fmt: skip
res = train(cfg, progress=False, verbose=False)
rank = int(os.environ["RANK"])
torch.save(
    {"student": res.student.state_dict(), "disc": res.discriminators.state_dict()}, os.path.join(out, f"rank{rank}.pt")
)
