"""MSE regression: an MLP fits y = sin(3x1) + x2^2 + noise, with Adam.

Healthy: the MSE falls from the target's variance to near the noise floor (0.01).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    x = torch.rand(2000, 2) * 2 - 1
    y = (torch.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * torch.randn(2000)).unsqueeze(1)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(10):
        perm = torch.randperm(2000)
        total = 0.0
        for i in range(0, 2000, 50):
            idx = perm[i:i + 50]
            optimizer.zero_grad()
            loss = F.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: mse {total / 40:.4f}")


if __name__ == "__main__":
    main()
