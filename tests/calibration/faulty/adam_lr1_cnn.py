"""FAULTY: Adam at lr=1.0 on a small CNN (Adam's usual lr is 1e-3).

What is wrong: Adam's first update moves every weight by about lr = 1.0, far beyond the weights'
own scale; the loss goes from 2.3 to orders of magnitude higher within the first steps and then
swings wildly, never getting back to its start.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g)
    x[torch.arange(n), y % 3] += 1.0 + 0.7 * (y // 3).float().view(-1, 1, 1)
    return x, y


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data(2048, 1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    for epoch in range(4):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4g}")


if __name__ == "__main__":
    main()
