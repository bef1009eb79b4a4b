"""A CNN with a hand-written L2 (root-mean-square) pooling layer. Some frames in the dataset are
blank; for them every feature map is exactly zero, sqrt(0) is fine in the forward pass but its
derivative 1 / (2 sqrt(0)) is infinite, so backward produces NaN gradients for every layer before
the pooling, while the loss itself stays finite.

    python examples/nonfinite_gradient.py --epochs 2
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class L2Pool(nn.Module):
    """Root-mean-square pooling over the spatial dimensions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((x**2).mean(dim=(2, 3)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.GELU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.GELU(),
        )
        self.pool = L2Pool()
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def make_data(n: int = 320, blank: tuple[int, ...] = (170,)) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 12, 12, generator=g) * (y.view(n, 1, 1, 1) + 1).float()
    for i in blank:  # dropped frames from the camera
        x[i] = 0.0
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(make_data(), batch_size=32)  # the blank frame 170 is in batch 5
    for epoch in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
