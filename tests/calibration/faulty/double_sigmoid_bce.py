"""FAULTY: a binary classifier that ends in nn.Sigmoid, trained with nn.BCEWithLogitsLoss, which
applies the sigmoid itself (`--functional`: torch.sigmoid in the forward instead of a module).

What is wrong: the loss sees sigmoid(sigmoid(logit)), always in [0.5, 0.73]: it can never predict
a label 0 (its loss there stays above ln 2 = 0.69), so the training loss stalls at 0.59 after 3 epochs
while the same model on raw logits (`--fixed`) reaches 0.23.
"""

import argparse

import torch
import torch.nn as nn


class Net(nn.Module):
    """The same layers, with torch.sigmoid in the forward instead of an nn.Sigmoid module."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true", help="raw logits into BCEWithLogitsLoss")
    parser.add_argument("--functional", action="store_true", help="torch.sigmoid in the forward, no module")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(2048, 16)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float().unsqueeze(1)
    if args.fixed:
        model: nn.Module = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    elif args.functional:
        model = Net()
    else:
        model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(3):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f}")


if __name__ == "__main__":
    main()
