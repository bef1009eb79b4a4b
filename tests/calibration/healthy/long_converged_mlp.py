"""A long converged run: 1500 steps of a small MLP on an easy two-moons-like task.

Healthy: the loss falls in the first few hundred steps, then sits near its floor for the rest
of the run. Sitting at a low floor is convergence, not a plateau.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g) * math.pi
    x = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    x[y == 1] = torch.stack([1 - torch.cos(t[y == 1]), 0.5 - torch.sin(t[y == 1])], dim=1)
    return x + torch.randn(n, 2, generator=g) * 0.1, y


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(1500):
        x, y = moons(64, g)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == 1499:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
