"""DDP, 2 ranks, trained by calling `model.module(x)`: no gradient is all-reduced (ddp_out_of_sync).

`--fixed` calls the DDP wrapper, `model(x)`. Each rank draws its own batches, so the ranks' models
drift apart at the first step when the wrapper is bypassed. `--fixed --drift` calls the wrapper but
changes a weight outside the optimizer on rank 1 alone at step 2 (parameters that differ across ranks).
"""

import argparse
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

parser = argparse.ArgumentParser()
parser.add_argument("--fixed", action="store_true")
parser.add_argument("--drift", action="store_true")
parser.add_argument("--steps", type=int, default=8)
args = parser.parse_args()

dist.init_process_group("gloo", timeout=timedelta(seconds=20))
rank = dist.get_rank()
torch.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
data = torch.Generator().manual_seed(1 + rank)
for step in range(args.steps):
    x = torch.randn(16, 8, generator=data)
    y = torch.randint(0, 3, (16,), generator=data)
    optimizer.zero_grad()
    if args.fixed:
        output = model(x)
    else:
        output = model.module(x)
    loss = loss_fn(output, y)
    loss.backward()
    optimizer.step()
    if args.drift and rank == 1 and step == 2:
        with torch.no_grad():
            model.module[0].weight.mul_(1.5)
dist.destroy_process_group()
