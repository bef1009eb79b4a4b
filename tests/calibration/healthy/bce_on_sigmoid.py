"""A binary classifier that ends in nn.Sigmoid, trained with nn.BCELoss on its probabilities.

Healthy: BCELoss expects probabilities, so the sigmoid is applied once; the loss falls from
ln 2 towards 0.1. The twin of faulty/double_sigmoid_bce.py (same model, BCEWithLogitsLoss).
"""

import torch
import torch.nn as nn


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2048, 16)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float().unsqueeze(1)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())
    criterion = nn.BCELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(3):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f}")


if __name__ == "__main__":
    main()
