"""A custom model with nested submodules and functional ops, trained with a loss chosen on the
command line; the losses it computed are written to --out so the test can compare them with
what torchdoctor recorded.

    python losses.py --loss functional|module|mse --out losses.json
"""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.norm = nn.LayerNorm(width)  # defined last, called first: forward order != definition order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Encoder(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(width) for _ in range(2)])
        self.stem = nn.Linear(10, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return x


class Net(nn.Module):
    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.head = nn.Linear(16, outputs)
        self.encoder = Encoder(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(self.encoder(x), 0.1, self.training))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", choices=["functional", "module", "mse"], default="functional")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Net(1 if args.loss == "mse" else 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(args.steps):
        x = torch.randn(8, 10)
        optimizer.zero_grad()
        out = model(x)
        if args.loss == "functional":
            loss = F.cross_entropy(out, torch.randint(0, 3, (8,)))
        elif args.loss == "module":
            loss = criterion(out, torch.randint(0, 3, (8,)))
        else:
            loss = F.mse_loss(out, x[:, :1] * 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with open(args.out, "w") as f:
        json.dump(losses, f)


if __name__ == "__main__":
    main()
