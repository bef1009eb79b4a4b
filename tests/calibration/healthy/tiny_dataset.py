"""A tiny dataset: 64 samples, 100 epochs of full-batch-ish training (batch 16).

Healthy: small data sets are trained for many epochs; the loss goes towards zero as the model
fits them, which is what a run on 64 samples is for (a sanity "overfit one batch" check).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 10)
    w = torch.randn(10, 4)
    y = (x @ w).argmax(dim=1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(100):
        perm = torch.randperm(64)
        for i in range(0, 64, 16):
            idx = perm[i:i + 16]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        if epoch % 20 == 0 or epoch == 99:
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            print(f"epoch {epoch}: loss {loss.item():.4f} acc {acc:.2f}")


if __name__ == "__main__":
    main()
