"""A binary classifier with a hand-written cross-entropy on sigmoid probabilities. Once the model
grows confident, sigmoid(z) rounds to exactly 1.0 in float32, log(1 - p) is -inf, and the loss goes
NaN/Inf although the model's output is perfectly finite. F.binary_cross_entropy_with_logits
computes the same loss stably.

    python examples/nan_custom_loss.py --epochs 3
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    """Two well separated clusters, features in raw units (tens)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g).float()
    x = torch.randn(n, 6, generator=g) * 5 + y.unsqueeze(1) * 30
    return TensorDataset(x, y)


def bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    for epoch in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            p = torch.sigmoid(model(x).squeeze(1))
            loss = bce(p, y)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
