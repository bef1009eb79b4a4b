"""A multi-label task with BCEWithLogitsLoss: each sample carries any subset of 6 tags, each tag
decided by its own feature; pos_weight balances the rare tags.

Healthy: raw logits into BCEWithLogitsLoss (no sigmoid before it); the loss starts near ln 2 per
tag and falls as each tag is learned.
"""

import torch
import torch.nn as nn


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2000, 20)
    thresholds = torch.tensor([0.0, 0.5, 1.0, 1.2, 0.3, 0.8])
    y = (x[:, :6] + 0.3 * x[:, 6:12] > thresholds).float()
    pos_weight = (len(y) - y.sum(0)) / y.sum(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 6))
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(6):
        perm = torch.randperm(2000)
        total = 0.0
        for i in range(0, 2000, 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f}")


if __name__ == "__main__":
    main()
