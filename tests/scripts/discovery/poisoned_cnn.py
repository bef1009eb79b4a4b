"""A CNN with a `features` Sequential and a custom block with functional code. At --poison-step
one thing goes non-finite: a leaf's weight (--poison features.3), or the custom block's own
functional code (--poison block: it takes the log of a negative number)."""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaleBlock(nn.Module):
    """Custom module: a conv plus functional ops in its forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.broken = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.broken:
            y = torch.log(y - y.max() - 1)  # always negative: NaN made by this forward's own code
        return F.relu(y) + x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.block = ScaleBlock(8)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.block(self.features(x)), 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--poison", default="")
    parser.add_argument("--poison-step", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(4):
        if step == args.poison_step and args.poison == "block":
            model.block.broken = True
        elif step == args.poison_step and args.poison:
            with torch.no_grad():
                model.get_submodule(args.poison).weight[0].fill_(float("nan"))
        x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
