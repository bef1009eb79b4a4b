"""Fine-tuning with frozen BatchNorm statistics: after each validation pass the loop calls
model.train() and then puts every BatchNorm layer back in eval() (its running statistics kept).
The head has Dropout, which trains as usual.

Healthy: eval() on the BatchNorm layers alone is deliberate; the model itself is in train().
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.7
    for i, label in enumerate(y.tolist()):
        x[i, label] += 0.8
    return TensorDataset(x, y)


def main() -> None:
    torch.manual_seed(0)
    train = DataLoader(make_data(480, 1), batch_size=32, shuffle=True)
    val = DataLoader(make_data(192, 2), batch_size=64)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(64, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(4):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # frozen statistics, deliberately
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in val) / 192
        print(f"epoch {epoch}: val loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
