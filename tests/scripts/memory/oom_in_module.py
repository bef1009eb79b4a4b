"""Trains three steps, then a module's forward asks the CPU allocator for 128 TiB: a real
allocator out-of-memory error that takes no RAM (the allocation fails before any is used)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Expand(nn.Module):
    armed = False

    def forward(self, x):
        if self.armed:
            x = x + torch.empty(2**45, device=x.device)[: x.numel()].view_as(x)
        return x


torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), Expand(), nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(5):
    model[2].armed = step == 3
    x, y = torch.randn(4, 8), torch.randint(0, 2, (4,))
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
