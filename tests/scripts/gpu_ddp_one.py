"""Under torchrun with one process on a GPU: NCCL, DistributedDataParallel around a ResNet-8, and the
engine started inside the process group. Writes OUT/ddp.json (tests/test_gpu.py reads it).

torchrun --nproc_per_node=1 tests/scripts/gpu_ddp_one.py OUT
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dfkd_lib import cifar_resnet
from dfkd_lib.train import config_for, train

out = sys.argv[1]
dist.init_process_group("nccl")
local = int(os.environ.get("LOCAL_RANK", "0"))
torch.cuda.set_device(local)
device = torch.device("cuda", local)

t = torch.tensor([3.0], device=device)
dist.all_reduce(t)  # the sum over one rank

# the same three SGD steps with and without DDP, from the same weights, on the same batches
torch.manual_seed(0)
bare = cifar_resnet(8).to(device)
wrapped = cifar_resnet(8).to(device)
wrapped.load_state_dict(bare.state_dict())
ddp = torch.nn.parallel.DistributedDataParallel(wrapped, device_ids=[local])
opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (bare, ddp)]
torch.backends.cudnn.deterministic = True
for _ in range(3):
    x = torch.randn(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    for model, opt in zip((bare, ddp), opts):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
diff = max(float((a - b).abs().max()) for a, b in zip(bare.state_dict().values(), wrapped.state_dict().values()))

# the engine in the same process group (one process: it trains as a single process would)
cfg = config_for("kd", teacher="resnet26_cifar10", student="resnet8", dataset="synthetic", synthetic_per_class=20,
                 epochs=1, batch_size=50, device="cuda")  # fmt: skip
res = train(cfg, progress=False, verbose=False)
result = {
    "backend": dist.get_backend(), "world_size": dist.get_world_size(), "all_reduce": float(t),
    "max_weight_difference": diff, "engine_epochs": len(res.history),
    "engine_device": str(next(res.student.parameters()).device),
}  # fmt: skip
with open(os.path.join(out, "ddp.json"), "w") as f:
    json.dump(result, f)
dist.destroy_process_group()
