"""An MLP with Dropout and BatchNorm, validated after every epoch with model.eval(), and
model.train() never called again: from the second epoch on it trains in eval() mode.

Faulty (train_mode_missing): dropout is off and BatchNorm uses its frozen running statistics for
every step after the first validation. `--fixed` calls model.train() at the start of each epoch.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:10].sum(1) > 0).long()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    train = DataLoader(make_data(640, 1), batch_size=32, shuffle=True)
    val = DataLoader(make_data(256, 2), batch_size=64)
    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        if args.fixed:
            model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
        print(f"epoch {epoch}: val accuracy {correct / 256:.3f}")


if __name__ == "__main__":
    main()
