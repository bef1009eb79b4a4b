"""Divergence: Adam with a learning rate 10x too high; the loss climbs epoch after epoch but stays finite.

What is wrong: lr=0.1 is far too large for Adam on this MLP (Adam's default is 0.001). Every step
moves each weight by about lr, so the logits grow without bound: the network gets ever more
confidently wrong and the training loss rises from ~2.3 (chance) to 10 in the first epoch and to
~34 by epoch 9, without ever becoming NaN or Inf, so nothing crashes and the run "finishes".
The fix is a smaller learning rate: --lr 0.01 trains (loss 1.7 -> 0.33).

    python examples/divergence.py             # lr 0.1: the loss trends up
    python examples/divergence.py --lr 0.01   # fixed
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Ten overlapping Gaussian clusters in 32 dimensions."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = centers[y] + 3.0 * torch.randn(n, 32, generator=g)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(1024, seed=0), batch_size=args.batch_size, shuffle=True)
    model = nn.Sequential(
        nn.Linear(32, 128), nn.LeakyReLU(0.1),
        nn.Linear(128, 64), nn.LeakyReLU(0.1),
        nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        total, correct, seen = 0.0, 0, 0
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
            seen += len(y)
        print(f"epoch {epoch}: loss {total / seen:.4f}  acc {correct / seen:.3f}")


if __name__ == "__main__":
    main()
