"""Metric learning: an embedding net trained with TripletMarginLoss on in-batch triplets.

Healthy: the triplet loss is a hinge; it falls towards zero as classes separate by the margin, and
many batches reach exactly zero late in training (all triplets satisfied). That is success.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(5, 32)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    criterion = nn.TripletMarginLoss(margin=0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for step in range(300):
        y = torch.randint(0, 5, (64,))
        other = (y + torch.randint(1, 5, (64,))) % 5
        anchor = centers[y] + torch.randn(64, 32) * 0.8
        positive = centers[y] + torch.randn(64, 32) * 0.8
        negative = centers[other] + torch.randn(64, 32) * 0.8
        optimizer.zero_grad()
        loss = criterion(*(F.normalize(net(t), dim=1) for t in (anchor, positive, negative)))
        loss.backward()
        optimizer.step()
        if step % 60 == 0 or step == 299:
            print(f"step {step}: triplet loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
