"""Run under torchrun: train on generated data with DDP (gloo) and save this rank's weights, its
logged history and the loss terms of every step it took (to check the logged means against).

torchrun --nproc_per_node=2 tests/scripts/ddp_run.py OUT TEACHER [METHOD]   (default adv-dense)
"""

import os
import sys

import torch

from dfkd_lib.train import Run, config_for, train

steps = []  # this rank's steps: batch size, loss terms, correct and labelled counts
_step = Run.train_step


def recording_step(self, x, y, flags):
    values, logits = _step(self, x, y, flags)
    mask = y >= 0
    steps.append({"epoch": self.where[0] + 1, "n": len(x), "correct": int((logits.argmax(1)[mask] == y[mask]).sum()),
                  "labelled": int(mask.sum()), **{k: float(v) for k, v in values.items()}})  # fmt: skip
    return values, logits


Run.train_step = recording_step

out = sys.argv[1]
teacher = sys.argv[2]
method = sys.argv[3] if len(sys.argv) > 3 else "adv-dense"
cfg = config_for(
    method, teacher=teacher, student="resnet8", dataset="synthetic", synthetic_per_class=40, epochs=2,
    batch_size=32, device="cpu", out_dir=os.path.join(out, "run"),
)  # fmt: skip
res = train(cfg, progress=False, verbose=False)
rank = int(os.environ["RANK"])
disc = res.discriminators.state_dict() if res.discriminators is not None else {}
torch.save({"student": res.student.state_dict(), "disc": disc, "history": res.history, "steps": steps},
           os.path.join(out, f"rank{rank}.pt"))  # fmt: skip
