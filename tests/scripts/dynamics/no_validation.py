"""Healthy control: a plain training loop that never validates; the loss falls steadily.

    python tests/scripts/dynamics/no_validation.py --epochs 6
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int) -> TensorDataset:
    """Ten Gaussian clusters in 32 dimensions."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = centers[y] + 2.0 * torch.randn(n, 32, generator=g)
    return TensorDataset(x, y)


class MLP(nn.Module):
    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(2048), batch_size=64, shuffle=True)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        running = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()
        print(f"epoch {epoch}: loss {running / len(loader):.4f}")


if __name__ == "__main__":
    main()
