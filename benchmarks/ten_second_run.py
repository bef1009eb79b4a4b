"""A training script of about ten seconds on two CPU cores, for benchmarks/whole_run.py: the
PyTorch CIFAR-10 tutorial's network on synthetic 32x32 images from a DataLoader, SGD with
momentum, a validation pass after each epoch, the loss printed as it goes.

    python benchmarks/ten_second_run.py [--epochs 4] [--steps N]

`--steps N` stops after N training steps (and one validation pass): a process that is start-up
and the report, nearly all, for what those cost on their own.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def data(n: int, seed: int) -> TensorDataset:
    """Ten classes, each a colour shift of the whole image, plus noise: learnable, not trivial."""
    shift = torch.randn(10, 3, 1, 1, generator=torch.Generator().manual_seed(10)) * 0.15  # the same classes in both
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g) + shift[y], y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many training steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    train = DataLoader(data(8192, 0), batch_size=32, shuffle=True)
    val = DataLoader(data(1024, 1), batch_size=256)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    limit = float("inf") if args.steps is None else args.steps
    steps = 0
    for epoch in range(args.epochs):
        model.train()
        for i, (x, y) in enumerate(train):
            if steps >= limit:
                break
            steps += 1
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if i % 100 == 99:
                print(f"epoch {epoch} step {i + 1}: loss {loss.item():.3f}")
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += int((model(x).argmax(1) == y).sum())
        print(f"epoch {epoch}: validation accuracy {correct / len(val.dataset):.3f}")
        if steps >= limit:
            break


if __name__ == "__main__":
    main()
