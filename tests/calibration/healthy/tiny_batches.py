"""Batches of 1 to 4: per-sample SGD with a batch size drawn from 1-4 each step.

Healthy: tiny batches (memory-bound fine-tunes, online learning) make the loss very noisy step
to step, but its average falls steadily.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 2.0
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    running = 0.0
    for step in range(400):
        batch = int(torch.randint(1, 5, ()).item())
        y = torch.randint(0, 3, (batch,))
        x = centers[y] + torch.randn(batch, 8)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step % 50 == 49:
            print(f"step {step + 1}: mean loss {running / 50:.4f}")
            running = 0.0


if __name__ == "__main__":
    main()
