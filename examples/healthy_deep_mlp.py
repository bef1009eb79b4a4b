"""The healthy twin of vanishing_gradients.py: the same depth, but ReLU, BatchNorm and Kaiming
initialization keep the gradient at the same scale through every layer.

    python examples/healthy_deep_mlp.py --epochs 3
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 20, generator=g)
    y = ((x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 0).long())
    return TensorDataset(x, y)


def block(d_in: int, d_out: int) -> list[nn.Module]:
    linear = nn.Linear(d_in, d_out)
    nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
    return [linear, nn.BatchNorm1d(d_out), nn.ReLU()]


def build_model(depth: int = 10, width: int = 64) -> nn.Module:
    layers = block(20, width)
    for _ in range(depth - 2):
        layers += block(width, width)
    layers.append(nn.Linear(width, 3))
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(args.depth)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4f}")


if __name__ == "__main__":
    main()
