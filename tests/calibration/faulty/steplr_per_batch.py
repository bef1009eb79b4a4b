"""A per-epoch schedule stepped once per batch: StepLR(step_size=2) meant "every 2 epochs" (or
CosineAnnealingLR(T_max=6) meant "over 6 epochs"), called inside the batch loop.

Faulty (scheduler_misuse): StepLR cuts the lr 10x every 2 batches, so it is ~0 within the first
epoch; the cosine restarts every 12 batches. `--fixed` steps it once per epoch.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--scheduler", choices=["step", "cosine"], default="step")
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(640, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if args.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
    for epoch in range(6):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            if not args.fixed:
                scheduler.step()  # the bug: a per-epoch schedule stepped per batch
            total += loss.item()
        if args.fixed:
            scheduler.step()
        print(f"epoch {epoch}: loss {total / len(loader):.4f} lr {scheduler.get_last_lr()[0]:.3g}")


if __name__ == "__main__":
    main()
