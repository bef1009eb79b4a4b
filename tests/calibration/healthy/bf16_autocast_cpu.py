"""bf16 autocast on CPU: a CNN whose forward runs under torch.autocast("cpu", dtype=torch.bfloat16).

Healthy: bf16 has float32's range, so no GradScaler is needed; the loss is computed in float32
by autocast's policy and the network trains to high accuracy.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes: class c brightens channel c % 3 by an amount that grows with c // 3."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g)
    x[torch.arange(n), y % 3] += 1.0 + 0.7 * (y // 3).float().view(-1, 1, 1)
    return x, y


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data(1024, seed=1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(5):
        perm = torch.randperm(len(x))
        correct = 0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x[idx])
                loss = F.cross_entropy(logits, y[idx])
            loss.backward()
            optimizer.step()
            correct += (logits.argmax(1) == y[idx]).sum().item()
        print(f"epoch {epoch}: loss {loss.item():.4f} train acc {correct / len(x):.3f}")


if __name__ == "__main__":
    main()
