"""Healthy control: SGD with StepLR (lr x0.1 every 3 epochs), so the loss comes down in steps.

Within each stage the loss levels off at the noise floor of that learning rate, and drops again
when the learning rate is cut (epochs 3 and 6). Those short flat stretches are normal for a step
schedule, not a plateau: the run is healthy.

    python tests/scripts/dynamics/step_schedule.py --epochs 9
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Ten overlapping Gaussian clusters in 32 dimensions."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 32, generator=g)
    g.manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = centers[y] + 2.0 * torch.randn(n, 32, generator=g)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--step-size", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(2048, seed=1), batch_size=64, shuffle=True)
    val_loader = DataLoader(make_data(512, seed=2), batch_size=512)
    model = nn.Sequential(nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=0.1)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()

        model.eval()
        with torch.no_grad():
            x, y = next(iter(val_loader))
            logits = model(x)
            val_loss = criterion(logits, y).item()
            val_acc = (logits.argmax(1) == y).float().mean().item()
        train_loss = total / len(train_loader)
        print(f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  val acc {val_acc:.3f}")


if __name__ == "__main__":
    main()
