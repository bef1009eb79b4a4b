"""Shared by the DDP test scripts: a tiny classifier trained with DistributedDataParallel on gloo (CPU).

Each rank draws its own batches (seeded by rank); `hook(rank, step, x)` may change a rank's batch
or fail at a step. The process group's timeout is short so that a rank whose peer died does not
hang in a collective.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

STEPS = 8


def train(hook=None, steps: int = STEPS) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=20))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    data = torch.Generator().manual_seed(1 + rank)
    for step in range(steps):
        x = torch.randn(16, 8, generator=data)
        y = torch.randint(0, 3, (16,), generator=data)
        if hook is not None:
            x = hook(rank, step, x)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    if rank == 0:
        print(f"trained {steps} steps on {world} ranks (pid {os.getpid()})", flush=True)
    dist.destroy_process_group()
