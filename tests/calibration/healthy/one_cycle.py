"""OneCycleLR on a small CNN: the learning rate warms up to max_lr=0.05 and anneals to ~0.

Healthy: the textbook super-convergence schedule; the loss falls while the lr rises and keeps
falling as it anneals.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_batch(g: torch.Generator, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes: a bright square in one quadrant of a noisy 16x16 image."""
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8:r * 8 + 8, c * 8:c * 8 + 8] += 1.0
    return x, y


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 4),
    )
    steps = 150
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps)
    for step in range(steps):
        x, y = make_batch(g)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 30 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
