"""Saturated tanh units: a tanh MLP whose first layer is initialized with weights ten times too large.

What is wrong: the first layer's weights are initialized ten times too large, so its
pre-activations are in the tens and tanh outputs sit at -1 or +1 for almost every input. There
tanh's derivative is ~0: the gradient that reaches the layers below is nearly nothing.

    python examples/saturated_tanh.py            # init scaled x10
    python examples/saturated_tanh.py --fixed    # PyTorch's default init: outputs in tanh's steep range
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long() + 2 * (x[:, 4:8].sum(dim=1) > 0).long()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fixed", action="store_true", help="keep the default initialization")
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
    if not args.fixed:
        with torch.no_grad():
            model[0].weight.mul_(10.0)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.3f}")


if __name__ == "__main__":
    main()
