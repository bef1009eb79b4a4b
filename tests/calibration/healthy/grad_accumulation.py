"""Gradient accumulation: four micro-batches of 16 per optimizer step, each loss divided by 4.

Healthy: gradients are meant to add up across the micro-batches, and zero_grad() is called
once per optimizer step; the effective batch is 64.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(4, 16) * 1.5
    y = torch.randint(0, 4, (2048,))
    x = centers[y] + torch.randn(2048, 16)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    accumulate = 4
    for epoch in range(4):
        perm = torch.randperm(len(x))
        optimizer.zero_grad()
        total = 0.0
        for k, i in enumerate(range(0, len(x), 16)):
            idx = perm[i:i + 16]
            loss = F.cross_entropy(model(x[idx]), y[idx]) / accumulate
            loss.backward()
            total += loss.item()
            if (k + 1) % accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
        print(f"epoch {epoch}: loss {total * accumulate / (len(x) // 16):.4f}")


if __name__ == "__main__":
    main()
