"""Run under torchrun: the cross-entropy of rank 1 alone becomes infinite at its third step.

Both ranks must stop with NonFiniteLossError (rank 0 told by rank 1), not hang in a collective.
"""

import os
import sys

import torch

import dfkd_lib.losses as L
from dfkd_lib.train import config_for, train

if int(os.environ["RANK"]) == 1:
    calls, plain = [0], L.cross_entropy

    def blows_up(logits, labels, ignore_index=-1):
        calls[0] += 1
        return plain(logits, labels, ignore_index) + (torch.inf if calls[0] >= 3 else 0.0)

    L.cross_entropy = blows_up
cfg = config_for(
    "scratch", student="resnet8", dataset="synthetic", synthetic_per_class=40, epochs=2, batch_size=32,
    device="cpu", out_dir=os.path.join(sys.argv[1], "run"),
)  # fmt: skip
train(cfg, progress=False, verbose=False)
