"""Healthy control: an MLP with heavy dropout (p=0.6), so the training loss stays ABOVE the validation loss.

Dropout is active in model.train() and off in model.eval(), so the training loss (measured with
60% of the hidden units dropped) is higher than the validation loss for the whole run. Both fall:
this is a run that learns well and must not be diagnosed with anything.

    python tests/scripts/dynamics/heavy_dropout.py --epochs 8
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Ten Gaussian clusters in 32 dimensions, overlapping a little."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 32, generator=g)  # the same classes for train and validation
    g.manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = centers[y] + 1.5 * torch.randn(n, 32, generator=g)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.6)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(2048, seed=1), batch_size=64, shuffle=True)
    val_loader = DataLoader(make_data(512, seed=2), batch_size=256)
    model = nn.Sequential(
        nn.Linear(32, 256), nn.ReLU(), nn.Dropout(args.dropout),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(args.dropout),
        nn.Linear(256, 10),
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()

        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x)
                val_loss += criterion(logits, y).item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
        n = len(val_loader.dataset)
        train_loss = total / len(train_loader)
        print(f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss / n:.4f}  val acc {correct / n:.3f}")


if __name__ == "__main__":
    main()
