"""On the GPU: start (or resume) an adv-dense run with mixed precision and die abruptly (os._exit,
as a SIGKILL would) right after epoch KILL_AFTER is saved.

python tests/scripts/gpu_killed_run.py OUT KILL_AFTER bf16|fp16   (tests/test_gpu.py)
"""

import os
import sys

import torch

from dfkd_lib.train import config_for, train

out, kill_after, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if dtype == "fp16":  # the engine takes float16 (with a gradient scaler) where bfloat16 is missing
    torch.cuda.is_bf16_supported = lambda *a, **k: False


def die(rec, run):
    if rec["epoch"] == kill_after:
        os._exit(137)


cfg = config_for(
    "adv-dense", teacher="resnet26_cifar10", student="resnet8", dataset="synthetic", synthetic_per_class=40,
    epochs=3, batch_size=50, device="cuda", amp=True, deterministic=True, out_dir=out, resume=True,
)  # fmt: skip
train(cfg, progress=False, verbose=False, callback=die)
