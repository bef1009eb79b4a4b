"""Heavy augmentation in the loop: random flips, random shifts and strong Gaussian noise on
every batch of a small CNN.

Healthy: augmentation makes the training loss noisy and slower to fall, by design; it still
comes down clearly.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes: a horizontal bar, a vertical bar, a centred blob."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    x[y == 0, 0, 7:9, :] += 1.5
    x[y == 1, 0, :, 7:9] += 1.5
    x[y == 2, 0, 5:11, 5:11] += 1.0
    return x, y


def augment(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0]) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    shift = int(torch.randint(-2, 3, ()).item())
    x = torch.roll(x, shifts=shift, dims=-2)
    return x + torch.randn_like(x) * 0.5


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data(1024, seed=1)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(4):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(augment(x[idx])), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f}")


if __name__ == "__main__":
    main()
