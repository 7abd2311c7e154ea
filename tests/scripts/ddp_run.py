"""Run under torchrun: train on generated data with DDP (gloo) and save this rank's weights.

torchrun --nproc_per_node=2 tests/scripts/ddp_run.py OUT TEACHER [METHOD]   (default adv-dense)
"""

import os
import sys

import torch

from dfkd_lib.train import config_for, train

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
torch.save({"student": res.student.state_dict(), "disc": disc}, os.path.join(out, f"rank{rank}.pt"))
