"""Golden values of every recipe that the method refactor must not change.

``python tests/scripts/golden_recipes.py --write`` ran once on the engine before the refactor
(commit 1a81a30) and wrote ``tests/golden/recipes.json``; ``tests/test_methods.py`` reruns the
same short runs and compares. Each run: a ResNet-14 teacher trained one epoch on generated data,
then two epochs of the method for a ResNet-8, batch 50, one thread, seed 0. The recipes are the
first version's (``recipe=1``): the golden values were made with them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dfkd_lib.train import config_for, train

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "recipes.json"
METHODS = ("scratch", "kd", "at", "dense", "adv", "adv-dense")  # fsp changed on purpose (equal budgets)
KEYS = ("loss_ce", "loss_kd", "loss_at", "loss_flow", "loss_adv", "loss_disc", "d_acc_real", "d_acc_fake",
        "train_acc", "val_acc", "test_acc")  # fmt: skip


def runs(recipe: int = 1) -> dict[str, list[dict[str, float]]]:
    torch.set_num_threads(1)
    base = dict(dataset="synthetic", synthetic_per_class=20, batch_size=50, device="cpu")
    teacher = train(config_for("scratch", student="resnet14", epochs=1, **base), progress=False, verbose=False).student
    out = {}
    for method in METHODS:
        teacher_ = None if method == "scratch" else "given"
        cfg = config_for(method, recipe=recipe, student="resnet8", epochs=2, teacher=teacher_, **base)
        hist = train(cfg, teacher=None if method == "scratch" else teacher, progress=False, verbose=False).history
        out[method] = [{k: rec[k] for k in KEYS if k in rec} for rec in hist]
    return out


if __name__ == "__main__":
    result = runs()
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
