"""A CNN whose FC ReLU layer is partly dead from initialization (60% of its units get bias -10),
and which learns well anyway.

Healthy: the dead fraction is fixed from step 1 to the end (dead from init, not dying), and the
40% of live units are plenty for the task; accuracy goes high. A senior engineer would mention
the wasted units at most; the run is fine.
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
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 100), nn.ReLU(), nn.Linear(100, 10),
    )
    with torch.no_grad():
        model[7].bias[:60] = -10.0  # a bad init for some units: they never fire
    x, y = make_data(1024, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(5):
        perm = torch.randperm(len(x))
        correct = 0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            loss.backward()
            optimizer.step()
            correct += (logits.argmax(1) == y[idx]).sum().item()
        print(f"epoch {epoch}: loss {loss.item():.4f} train acc {correct / len(x):.3f}")


if __name__ == "__main__":
    main()
