"""A validation loop done right: each epoch, model.eval() and torch.no_grad() over a held-out
loader, accuracy and loss logged, then model.train() again.

Healthy: BatchNorm and Dropout switch modes, no graph is built during validation, and the
validation loss tracks the training loss down.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 12, 12, generator=g)
    for i, label in enumerate(y.tolist()):
        x[i, 0, label * 3:label * 3 + 3, 4:8] += 0.6
    return TensorDataset(x, y)


def main() -> None:
    torch.manual_seed(0)
    train_loader = DataLoader(make_data(640, 1), batch_size=32, shuffle=True)
    val_loader = DataLoader(make_data(256, 2), batch_size=64)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 36, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for epoch in range(4):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x)
                val_loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
        print(f"epoch {epoch}: train {loss.item():.4f} val {val_loss / 256:.4f} acc {correct / 256:.3f}")


if __name__ == "__main__":
    main()
