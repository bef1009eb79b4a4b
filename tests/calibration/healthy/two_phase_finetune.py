"""Two-phase fine-tune: pre-train a small CNN on four classes, then freeze its backbone and train a
new head on three NEW classes with a NEW optimizer.

Healthy: both phases learn. The loss jumps when phase two starts (a fresh head on new labels
starts at chance, ln 3), which is the start of a new phase, not a divergence.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_data(n: int, classes: int, offset: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class is a bright bar at row band (label + offset), plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        row = (label + offset) * 2
        x[i, 0, row:row + 2, :] += 1.5
    return x, y


def train(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          epochs: int, name: str) -> None:
    for epoch in range(epochs):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"{name} epoch {epoch}: loss {total / (len(x) // 32):.4f}")


def main() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((4, 1)), nn.Flatten(),
    )
    model = nn.Sequential(backbone, nn.Linear(128, 4))
    x, y = make_data(512, 4, 0, seed=1)
    train(model, torch.optim.Adam(model.parameters(), lr=3e-3), x, y, epochs=4, name="pretrain")

    # Phase two: new classes, frozen backbone, a new head and its own optimizer.
    for p in backbone.parameters():
        p.requires_grad = False
    model = nn.Sequential(backbone, nn.Linear(128, 3))
    head = model[1]
    x2, y2 = make_data(384, 3, 4, seed=2)
    train(model, torch.optim.Adam(head.parameters(), lr=1e-3), x2, y2, epochs=5, name="finetune")


if __name__ == "__main__":
    main()
