"""Start a run and die abruptly (os._exit, as a SIGKILL would) right after epoch KILL_AFTER is saved."""

import os
import sys

from dfkd_lib.train import config_for, train

out, teacher, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])


def die(rec, run):
    if rec["epoch"] == kill_after:
        os._exit(137)


cfg = config_for(
    "adv-dense", teacher=teacher, student="resnet8", dataset="synthetic", synthetic_per_class=30, epochs=3,
    batch_size=50, device="cpu", out_dir=out, resume=True,
)  # fmt: skip
train(cfg, progress=False, verbose=False, callback=die)
