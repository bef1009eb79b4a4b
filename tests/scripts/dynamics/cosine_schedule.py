"""Healthy control: SGD with a cosine learning-rate schedule that decays to ~0 by the last epoch.

The loss falls quickly while the learning rate is high; in the last epochs the learning rate is
close to 0 (0.1 -> 0.0024 at epoch 9), so the loss barely changes any more. That flat tail is the
schedule annealing, not a plateau: the run is healthy.

    python tests/scripts/dynamics/cosine_schedule.py --epochs 10
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Four classes, each a faint square in one quadrant of a noisy 16x16 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 0.25
    return TensorDataset(x, y)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(16 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(1024, seed=0), batch_size=64, shuffle=True)
    val_loader = DataLoader(make_data(256, seed=1), batch_size=128)
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()

        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x)
                val_loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
        n = len(val_loader.dataset)
        print(
            f"epoch {epoch}: lr {lr:.4f}  train loss {total / len(train_loader):.4f}  "
            f"val loss {val_loss / n:.4f}  val acc {correct / n:.3f}"
        )


if __name__ == "__main__":
    main()
