"""Overfitting: a CNN far too big for 128 noisy training images, trained for 30 epochs.

What is wrong: the training set is tiny (128 images, 40% of the labels are wrong) and the model
has ~70k parameters with no regularization (no weight decay, no dropout, no augmentation). After a
few epochs it starts memorizing the training images, label noise included: the training loss keeps
falling towards 0 while the validation loss bottoms out around epoch 5 and then climbs (+54% by
epoch 29), and the validation accuracy drops from 0.85 to 0.71.

    python examples/overfitting.py            # 30 epochs, a few seconds on CPU
    python examples/overfitting.py --epochs 6 # stopping early avoids most of it
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, label_noise: float, seed: int) -> TensorDataset:
    """Four classes, each a faint square in one quadrant of a noisy 16x16 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 0.4
    flip = torch.rand(n, generator=g) < label_noise
    y[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=g)
    return TensorDataset(x, y)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(128, label_noise=0.4, seed=1), batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(make_data(256, label_noise=0.0, seed=2), batch_size=128)

    model = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        train_loss = total / len(train_loader)

        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x)
                val_loss += criterion(logits, y).item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
        n = len(val_loader.dataset)
        print(f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss / n:.4f}  val acc {correct / n:.3f}")


if __name__ == "__main__":
    main()
