"""A CNN regressor trained with a learning rate too high for it: the gradient norm climbs by
orders of magnitude over a few steps, then the loss overflows to Inf/NaN.

    python examples/exploding_gradients.py --epochs 4
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    """Images whose target is ten times their mean brightness."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 16, 16, generator=g)
    y = x.mean(dim=(1, 2, 3)).unsqueeze(1) * 10
    return TensorDataset(x, y)


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.1),
        nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 32), nn.LeakyReLU(0.1),
        nn.Linear(32, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.004)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    for epoch in range(args.epochs):
        running = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()
        print(f"epoch {epoch}: mean loss {running / len(loader):.4g}")


if __name__ == "__main__":
    main()
