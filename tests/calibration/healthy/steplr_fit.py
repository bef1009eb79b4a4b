"""A plain fit with StepLR: SGD with momentum and weight decay on a small CNN, the lr cut 10x every
2 epochs (no torch.compile).

Healthy: the classic ImageNet-style schedule in miniature; each lr cut gives the loss another
step down.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    x = torch.randn(n, 3, 12, 12, generator=g) * 0.8
    for i, label in enumerate(y.tolist()):
        x[i, label % 3, :, label * 2:label * 2 + 3] += 1.0
    return TensorDataset(x, y)


def main() -> None:
    torch.manual_seed(0)
    loader = DataLoader(make_data(768, 1), batch_size=32, shuffle=True)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 5),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    for epoch in range(6):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        print(f"epoch {epoch}: loss {total / len(loader):.4f} lr {scheduler.get_last_lr()[0]:.4g}")


if __name__ == "__main__":
    main()
