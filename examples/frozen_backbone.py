"""A backbone that was meant to fine-tune but never trains: the optimizer was built on the head alone.

What is wrong: `torch.optim.Adam(model.head.parameters())` while the backbone still requires grad.
Every backward computes the backbone's gradients, but no optimizer ever applies them: the conv
layers stay at their random initialization and the run pays for their gradients for nothing.
`--fixed` is the intentional version: the backbone is frozen on purpose with
`requires_grad_(False)` (a linear probe on fixed features), so backward skips it.

    torchdoctor run examples/frozen_backbone.py           # frozen_parameters, where: backbone
    torchdoctor run examples/frozen_backbone.py --fixed   # the head trains on a frozen backbone: clean
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    """Four classes of noisy 8x8 images, told apart by their tint (which channels are brighter)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    tints = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    x = torch.randn(n, 3, 8, 8, generator=g) + tints[y][:, :, None, None] - 0.25
    return TensorDataset(x, y)


class Classifier(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fixed", action="store_true", help="freeze the backbone on purpose")
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    model = Classifier()
    if args.fixed:
        model.backbone.requires_grad_(False)  # a linear probe: only the head trains, and backward knows it
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.head.parameters(), lr=3e-2)  # the head only, in both versions
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
