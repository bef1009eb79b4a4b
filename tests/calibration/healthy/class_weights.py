"""Class weights on an imbalanced three-class task (80% / 15% / 5%).

Healthy: the standard remedy for imbalance, CrossEntropyLoss(weight=inverse frequency); the
weighted loss starts above ln 3 for the rare classes and comes down as all three are learned.
"""

import torch
import torch.nn as nn


def main() -> None:
    torch.manual_seed(0)
    n = 2400
    y = torch.multinomial(torch.tensor([0.80, 0.15, 0.05]), n, replacement=True)
    centers = torch.tensor([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5]])
    x = torch.cat([centers[y] + torch.randn(n, 2) * 0.7, torch.randn(n, 6)], dim=1)
    counts = torch.bincount(y, minlength=3).float()
    weight = counts.sum() / (3 * counts)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))
    criterion = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(8):
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: weighted loss {total / (n // 64):.4f}")


if __name__ == "__main__":
    main()
